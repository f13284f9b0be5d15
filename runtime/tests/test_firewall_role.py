"""The role's static rules plus the runtime chain, with real traffic in network namespaces.

Proves: a stranger cannot reach a display over IPv6 (qemu listening on "::"), a viewer
over IPv6 and one over IPv4 are both let in, and a live connection survives the end of
its opening (ESTABLISHED is accepted ahead of the DROP).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import (  # noqa: F401 (fixtures)
    NetNS,
    add_address,
    can_connect,
    client_netns_fixture,
    netns_fixture,
    veth_link,
)
from role_firewall import apply_role

from ravada.firewall import Firewall

SERVER4, SERVER6 = "10.99.0.1", "fd00:99::1"
VIEWER4, STRANGER4 = "10.99.0.2", "10.99.0.3"
VIEWER6, STRANGER6 = "fd00:99::2", "fd00:99::3"
PORT = 5905

pytestmark = pytest.mark.netns


@pytest.fixture
def lan(netns: NetNS, client_netns: NetNS, tmp_path: Path) -> Iterator[Firewall]:
    """Server with the role's rules and a dual-stack listener on "::"; clients on a veth."""
    server_if, client_if = veth_link(netns, SERVER4, client_netns, [VIEWER4, STRANGER4])
    add_address(netns, server_if, f"{SERVER6}/64")
    for ip in (VIEWER6, STRANGER6):
        add_address(client_netns, client_if, f"{ip}/64")
    apply_role(netns, tmp_path)
    fw = Firewall(command_prefix=netns.prefix)
    fw.ensure_chain()
    yield fw


@pytest.fixture
def listener(netns: NetNS) -> Iterator[socket.socket]:
    """What qemu does with ``listen: "::"``: one socket for IPv6 and IPv4."""
    sock = netns.socket(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", PORT))
    sock.listen(16)
    with sock:
        yield sock


def test_ipv6_stranger_is_dropped_and_both_families_are_let_in(
        lan: Firewall, listener: socket.socket, client_netns: NetNS) -> None:
    assert not can_connect(client_netns, STRANGER6, SERVER6, PORT)  # open before the role
    assert not can_connect(client_netns, VIEWER6, SERVER6, PORT)
    assert not can_connect(client_netns, VIEWER4, SERVER4, PORT)
    lan.allow("m1", [PORT], [VIEWER4])
    lan.allow("m1", [PORT], [VIEWER4, VIEWER6])  # the same user arrives over IPv6
    assert can_connect(client_netns, VIEWER6, SERVER6, PORT)
    assert can_connect(client_netns, VIEWER4, SERVER4, PORT)  # IPv4 opening kept
    assert not can_connect(client_netns, STRANGER6, SERVER6, PORT)
    assert not can_connect(client_netns, STRANGER4, SERVER4, PORT)
    lan.close("m1")
    assert not can_connect(client_netns, VIEWER6, SERVER6, PORT)
    assert not can_connect(client_netns, VIEWER4, SERVER4, PORT)


def _session(client_netns: NetNS, listener: socket.socket, source: str,
             server: str) -> tuple[socket.socket, socket.socket]:
    """A connected pair (client side, server side) from ``source``."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    client = client_netns.socket(family)
    client.settimeout(3)
    client.bind((source, 0))
    client.connect((server, PORT))
    conn, _ = listener.accept()
    conn.settimeout(3)
    return client, conn


def _talks(client: socket.socket, conn: socket.socket) -> bool:
    try:
        client.sendall(b"ping")
        return conn.recv(4) == b"ping"
    except OSError:  # TimeoutError: the firewall dropped the packets
        return False


@pytest.mark.parametrize(("viewer", "newer", "server"), [
    (VIEWER4, STRANGER4, SERVER4), (VIEWER6, STRANGER6, SERVER6)], ids=["ipv4", "ipv6"])
def test_a_live_session_survives_the_end_of_its_opening(
        lan: Firewall, listener: socket.socket, client_netns: NetNS, viewer: str, newer: str,
        server: str) -> None:
    listener.settimeout(3)
    lan.allow("m1", [PORT], [viewer])
    client, conn = _session(client_netns, listener, viewer, server)
    with client, conn:
        assert _talks(client, conn)
        lan.allow("m1", [PORT], [newer])  # pushed out (the cap), e.g. an admin took over
        assert _talks(client, conn), "the open session froze when its opening ended"
        assert not can_connect(client_netns, viewer, server, PORT)  # but no new connection
        assert can_connect(client_netns, newer, server, PORT)


def test_nodes_rules_admit_the_broker_and_cluster_members_only(
        netns: NetNS, client_netns: NetNS, tmp_path: Path) -> None:
    """On a node: the broker's console proxy reaches display ports without an opening, and
    only cluster members reach the cluster ports (libvirt TLS, MariaDB on the broker)."""
    veth_link(netns, SERVER4, client_netns, [VIEWER4, STRANGER4])
    apply_role(netns, tmp_path, ipv6=False, display_proxies=(VIEWER4,),
               cluster_ports=(16514,), cluster_sources=(VIEWER4,))
    Firewall(command_prefix=netns.prefix).ensure_chain()
    listeners = []
    for port in (PORT, 16514):
        sock = netns.socket(socket.AF_INET)
        sock.bind((SERVER4, port))
        sock.listen(4)
        listeners.append(sock)
    try:
        assert can_connect(client_netns, VIEWER4, SERVER4, PORT)  # the broker, no opening
        assert not can_connect(client_netns, STRANGER4, SERVER4, PORT)
        assert can_connect(client_netns, VIEWER4, SERVER4, 16514)
        assert not can_connect(client_netns, STRANGER4, SERVER4, 16514)
    finally:
        for sock in listeners:
            sock.close()
