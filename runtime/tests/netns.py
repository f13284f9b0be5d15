"""Private network namespaces for firewall tests: real iptables, never the host's rules.

``NetNS.create()`` makes a named namespace (``ip netns add``), ``ns.prefix`` is the
command prefix that runs a program inside it, and ``ns.socket()`` makes a socket
that lives in it (created from a short-lived thread that joined the namespace
with setns(2), so tests need no subprocess per connection). Test modules import
the fixtures ``netns_fixture`` and ``client_netns_fixture`` (named ``netns`` and
``client_netns``); they skip with the reason when not root or ``ip netns`` fails.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence

import pytest
from strict import unavailable

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "firewall tests need root (ip netns, iptables)"
    if not shutil.which("ip"):
        return "`ip` (iproute2) is not installed"
    if not shutil.which("iptables") or not shutil.which("iptables-restore"):
        return "iptables is not installed"
    return None


class NetNS:
    """One named network namespace, deleted by :meth:`delete`."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls, tag: str = "t") -> NetNS:
        name = f"ravada-test-{tag}-{uuid.uuid4().hex[:8]}"
        proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"ip netns add {name}: {proc.stderr.strip()}")
        ns = cls(name)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    @property
    def prefix(self) -> tuple[str, ...]:
        """Prepend to a command to run it inside this namespace."""
        return ("ip", "netns", "exec", self.name)

    def run(self, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        """Run ``argv`` inside the namespace; return stdout (raise with stderr on failure)."""
        proc = subprocess.run([*self.prefix, *argv], input=stdin, capture_output=True,
                              text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {proc.stderr.strip()}")
        return proc.stdout

    def iptables_s(self, chain: str | None = None, binary: str = "iptables") -> list[str]:
        """``iptables -S [chain]`` lines inside the namespace."""
        return self.run(binary, "-w", "-S", *([chain] if chain else [])).splitlines()

    def socket(self, family: int = socket.AF_INET,
               kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that belongs to this namespace."""
        result: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                fd = os.open(f"{NETNS_DIR}/{self.name}", os.O_RDONLY)
                try:
                    if _libc().setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({self.name}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                result.append(socket.socket(family, kind))
            except BaseException as exc:  # handed to the caller's thread
                result.append(exc)

        # The thread stays in the namespace until it ends; the socket keeps it for good.
        thread = threading.Thread(target=make, daemon=True)
        thread.start()
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


def veth_link(server: NetNS, server_ip: str, client: NetNS, client_ips: Sequence[str],
              prefixlen: int = 24) -> tuple[str, str]:
    """Connect two namespaces by a veth pair; the client side gets every ``client_ips``.

    Returns the (server, client) interface names.
    """
    tag = uuid.uuid4().hex[:6]
    a, b = f"rvs{tag}", f"rvc{tag}"
    subprocess.run(["ip", "link", "add", a, "netns", server.name, "type", "veth",
                    "peer", "name", b, "netns", client.name], check=True, capture_output=True)
    server.run("ip", "addr", "add", f"{server_ip}/{prefixlen}", "dev", a)
    server.run("ip", "link", "set", a, "up")
    for ip in client_ips:
        # nodad: the address is usable at once (matters for IPv6)
        client.run("ip", "addr", "add", f"{ip}/{prefixlen}", "dev", b, "nodad")
    client.run("ip", "link", "set", b, "up")
    return a, b


def add_address(ns: NetNS, dev: str, cidr: str) -> None:
    """One more address on ``dev`` (``nodad``: usable at once, which matters for IPv6)."""
    ns.run("ip", "addr", "add", cidr, "dev", dev, "nodad")


def can_connect(ns: NetNS, source: str, dest: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection from ``source`` (an address in ``ns``) to dest:port succeeds."""
    family = socket.AF_INET6 if ":" in dest else socket.AF_INET
    with ns.socket(family) as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        try:
            s.connect((dest, port))
        except (TimeoutError, ConnectionRefusedError, OSError):
            return False
        return True


@pytest.fixture(name="netns")
def netns_fixture() -> Iterator[NetNS]:
    """A fresh, empty network namespace (skips with the reason where none can be made)."""
    reason = unavailable_reason()
    if reason:
        unavailable(reason)
    try:
        ns = NetNS.create("fw")
    except OSError as exc:
        unavailable(f"cannot create a network namespace: {exc}")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture(name="client_netns")
def client_netns_fixture(netns: NetNS) -> Iterator[NetNS]:
    """A second namespace (the clients' side), for real traffic tests."""
    ns = NetNS.create("cl")
    try:
        yield ns
    finally:
        ns.delete()
