"""The wiring of a broker and two hypervisor nodes (issue 16, roles): services, the shared
MariaDB over TLS with one account per node, libvirt TLS with the broker's CA, the cluster
firewall and the ``node:`` section. Run from the controller against the three containers."""

from __future__ import annotations

import shlex

import pytest
from cluster import broker, nodes
from e2e import netns

# A reserved address on docker's bridge that no container uses: "someone else on the LAN".
OUTSIDER = "172.17.250.7/16"
SQL_PROBE = """
import sys, yaml, sqlalchemy as sa
url = sys.argv[1] if len(sys.argv) > 1 else yaml.safe_load(open('/etc/ravada.conf'))['database']['url']
engine = sa.create_engine(url)
with engine.connect() as c:
    print(c.execute(sa.text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).fetchone()[1])
    print(c.execute(sa.text('SELECT CURRENT_USER()')).scalar())
    if len(sys.argv) > 2:
        c.execute(sa.text(sys.argv[2]))
"""


def _sql(member, *args: str):
    cmd = "/opt/ravada/venv/bin/python -c " + shlex.quote(SQL_PROBE) + "".join(
        " " + shlex.quote(a) for a in args)
    return member.sh(cmd, check=False)


@pytest.mark.parametrize("node", nodes, ids=lambda n: n.name)
def test_node_runs_the_backend_only(node):
    assert node.sh("systemctl is-active rvd_back").stdout.strip() == "active"
    for unit in ("rvd_front", "rvd_console", "apache2", "mariadb"):
        out = node.sh(f"systemctl list-unit-files {unit}.service --no-legend", check=False)
        assert unit not in out.stdout, f"{node.name} has {unit}"
    for unit in ("rvd_back", "rvd_front", "rvd_console", "mariadb", "apache2"):
        assert broker.sh(f"systemctl is-active {unit}").stdout.strip() == "active"


def test_every_host_has_its_node_section():
    sections = {}
    for member in (broker, *nodes):
        node = member.config()["node"]
        assert node["name"] == member.name
        assert node["cluster_address"] == member.ip
        assert node["display_address"] == member.ip
        assert node["libvirt_uri"] == f"qemu+tls://{member.ip}/system"
        assert node["enabled"] is True and node["heartbeat_timeout"] == 15
        sections[member.name] = node
    assert len({s["name"] for s in sections.values()}) == 3


@pytest.mark.parametrize("node", nodes, ids=lambda n: n.name)
def test_node_reaches_the_broker_database_over_tls_with_its_own_account(node):
    url = node.config()["database"]["url"]
    assert f"ravada_{node.name}:" in url and f"@{broker.ip}:3306/" in url
    assert "ssl_ca=/etc/ravada/db-ca.pem" in url
    out = _sql(node)
    assert out.returncode == 0, out.stderr
    cipher, user = out.stdout.split()
    assert cipher, "the connection is not encrypted"
    assert user == f"ravada_{node.name}@{node.ip}"
    # Without TLS the account is refused (REQUIRE SSL).
    plain = _sql(node, url.replace("ssl_ca=/etc/ravada/db-ca.pem&", "ssl_disabled=True&"))
    assert plain.returncode != 0 and "Access denied" in plain.stderr, plain.stderr
    # Data rights only: the schema is the broker's.
    ddl = _sql(node, url, "CREATE TABLE node_probe (i INT)")
    assert ddl.returncode != 0 and "denied" in ddl.stderr, ddl.stderr


def test_a_node_account_works_from_its_own_address_only():
    stolen = nodes[0].config()["database"]["url"]
    out = _sql(nodes[1], stolen)
    assert out.returncode != 0 and "Access denied" in out.stderr, out.stderr


@pytest.mark.parametrize("node", nodes, ids=lambda n: n.name)
def test_libvirt_tls_between_members_with_roots_client_certificate(node):
    for other in (broker, *nodes):
        if other.name == node.name:
            continue
        out = node.sh(f"virsh -c qemu+tls://{other.ip}/system uri")
        assert out.stdout.strip() == f"qemu+tls://{other.ip}/system"
    # Only the CA, no client certificate: libvirtd refuses.
    node.sh("mkdir -p /tmp/nocert && cp /etc/pki/CA/cacert.pem /tmp/nocert/cacert.pem")
    bare = node.sh(f"virsh -c 'qemu+tls://{broker.ip}/system?pkipath=/tmp/nocert' uri",
                   check=False)
    assert bare.returncode != 0, bare.stdout


@pytest.mark.parametrize("node", nodes, ids=lambda n: n.name)
def test_node_certificates_come_from_the_brokers_ca(node):
    ca = broker.sh("cat /etc/ravada/spice-ca.pem").stdout
    assert node.sh("cat /etc/ravada/spice-ca.pem").stdout == ca
    assert node.sh("cat /etc/pki/CA/cacert.pem").stdout == ca
    assert node.sh("cat /etc/ravada/db-ca.pem").stdout == ca
    for cert in ("/etc/pki/libvirt-spice/server-cert.pem", "/etc/pki/libvirt/servercert.pem",
                 "/etc/pki/libvirt/clientcert.pem"):
        out = node.sh(f"openssl verify -CAfile /etc/ravada/spice-ca.pem {cert}")
        assert out.stdout.strip().endswith("OK"), out.stdout
    # The CA key stays on the broker.
    assert node.sh("test -e /etc/pki/ravada-spice-ca/ca-key.pem", check=False).returncode != 0


def test_cluster_ports_reach_members_only():
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()"
    for node in nodes:
        for port in (3306, 16514):
            out = node.sh(f"python3 -c {shlex.quote(probe)} {broker.ip} {port}", check=False)
            assert out.returncode == 0, f"{node.name} -> broker:{port}: {out.stderr}"
    with netns.BridgeNamespace("n", OUTSIDER) as other:
        for member, port in ((broker, 3306), (broker, 16514), (nodes[0], 16514),
                             (nodes[1], 16514)):
            assert other.connect(member.ip, port) == "timeout", f"{member.name}:{port}"


def test_node_display_range_admits_the_broker_not_others():
    # Nothing listens on 6999: the broker gets "refused" (its packets pass the firewall),
    # anybody else has them dropped.
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], 6999), 3)\n"
             "except ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')")
    for node in nodes:
        out = broker.sh(f"python3 -c {shlex.quote(probe)} {node.ip}")
        assert out.stdout.strip() == "refused", node.name
    with netns.BridgeNamespace("d", OUTSIDER) as other:
        for node in nodes:
            assert other.connect(node.ip, 6999) == "timeout", node.name
