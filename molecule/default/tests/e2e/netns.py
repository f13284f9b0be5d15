"""Extra client addresses on the docker bridge, made from network namespaces.

A :class:`BridgeNamespace` is a network namespace with one veth whose peer is a
port of the docker bridge (``docker0``), so a process in it talks to the
containers from its own IP address, exactly like a second workstation on the
LAN. The firewall test uses one as "some other user" and one as the admin
workstation.

Always use it as a context manager: the namespace and its veth pair are removed
on exit, even when the test fails. :func:`remove_stale` removes what a killed
run left behind (only names with this module's prefix).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Self

PREFIX = "rvde2e"
_CONNECT_SNIPPET = (
    "import socket, sys\n"
    "host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
    "try:\n"
    "    socket.create_connection((host, port), timeout=timeout).close()\n"
    "except ConnectionRefusedError:\n"
    "    print('refused')\n"
    "except OSError as exc:\n"
    "    print('timeout' if isinstance(exc, TimeoutError) else f'error {exc}')\n"
    "else:\n"
    "    print('open')\n"
)


class NetnsError(RuntimeError):
    """A namespace could not be made or used."""


def _ip(*args: str) -> None:
    """Run ``ip`` with *args*; raise :class:`NetnsError` with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def remove_stale() -> list[str]:
    """Delete namespaces (and their veths) left by an earlier, killed run of this helper."""
    removed = []
    for name in _netns_names():
        if name.startswith(PREFIX):
            subprocess.run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=False).stdout
    for line in links.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev.startswith(PREFIX):
            subprocess.run(["ip", "link", "del", dev], check=False)
    return removed


@dataclass
class BridgeNamespace:
    """A network namespace holding *address* (CIDR) on *bridge*.

    ``tag`` makes the names unique (a few characters: interface names are at
    most 15 characters long).
    """

    tag: str
    address: str
    bridge: str = "docker0"
    name: str = field(init=False)
    _host_if: str = field(init=False)
    _ns_if: str = field(init=False)

    def __post_init__(self) -> None:
        suffix = f"{self.tag}{os.getpid() % 10000}"
        self.name = f"{PREFIX}-{suffix}"
        self._host_if = f"{PREFIX}h{suffix}"[:15]
        self._ns_if = f"{PREFIX}n{suffix}"[:15]
        if "/" not in self.address:
            raise NetnsError(f"address {self.address!r} needs a prefix length (e.g. /16)")

    @property
    def ip(self) -> str:
        """The bare IP address (no prefix length)."""
        return self.address.split("/")[0]

    def create(self) -> BridgeNamespace:
        """Make the namespace; on any failure, remove what was made and raise."""
        try:
            _ip("link", "show", self.bridge)
            _ip("netns", "add", self.name)
            _ip("link", "add", self._host_if, "type", "veth", "peer", "name", self._ns_if,
                "netns", self.name)
            _ip("link", "set", self._host_if, "master", self.bridge)
            _ip("link", "set", self._host_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            _ip("-n", self.name, "addr", "add", self.address, "dev", self._ns_if)
            _ip("-n", self.name, "link", "set", self._ns_if, "up")
        except NetnsError:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        """Remove the namespace and both ends of the veth (idempotent)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True, check=False)

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def run(self, *cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run *cmd* inside the namespace and return the completed process."""
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def connect(self, host: str, port: int, timeout: float = 2.0) -> str:
        """Try a TCP connection from this namespace: ``open``, ``refused`` or ``timeout``."""
        proc = self.run(sys.executable, "-c", _CONNECT_SNIPPET, host, str(port), str(timeout),
                        timeout=timeout + 10)
        if proc.returncode != 0:
            raise NetnsError(f"connect probe failed in {self.name}: {proc.stderr.strip()}")
        return proc.stdout.strip()


def connect(host: str, port: int, timeout: float = 2.0) -> str:
    """The same probe from the controller's own address: ``open``, ``refused`` or ``timeout``."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc}"
    return "open"
