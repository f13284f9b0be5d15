"""The per-user display firewall: one iptables chain of ACCEPT rules.

rvd_back opens a machine's display ports to the IP of the user who is viewing it
(only the latest viewer stays allowed) and closes them when the machine stops.
The static part (hook ``-j RAVADA`` at the top of INPUT, DROP for the rest of the
display range) belongs to the firewall role; :meth:`Firewall.ensure_chain` adds
the hook too, once, when it is missing.

Every change is one ``iptables-restore -w --noflush`` batch, so it is atomic and
takes xtables' lock; reads use ``iptables -w -S``. IPv6 clients go to ip6tables.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

COMMENT_PREFIX = "ravada:"
_MACHINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CHAIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,28}$")
_LOCK = threading.Lock()  # serializes this process's changes; `-w` covers other processes


class FirewallError(RuntimeError):
    """An iptables command failed; ``stderr`` holds what it said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(f"{message}: {stderr.strip()}" if stderr.strip() else message)
        self.stderr = stderr


@dataclass(frozen=True)
class Rule:
    """Display ``port`` of ``machine`` is open to ``client_ip``."""

    machine: str
    port: int
    client_ip: str


def check_machine(machine: str) -> str:
    """Return ``machine`` if it is safe inside a rule comment, else raise ValueError."""
    if not isinstance(machine, str) or not _MACHINE_RE.match(machine):
        raise ValueError(
            f"machine name {machine!r} is not usable in a firewall rule: "
            "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return machine


def check_ip(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse a client address (IPv4-mapped IPv6 becomes IPv4); ValueError on garbage."""
    if not isinstance(client_ip, str):
        raise ValueError(f"client IP must be a string, got {client_ip!r}")
    try:
        addr = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        raise ValueError(f"client IP {client_ip!r} is not an IPv4 or IPv6 address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"client IP {client_ip!r} is not a host address")
    return addr


def _sibling(binary: str, suffix: str = "", v6: bool = False) -> str:
    """``iptables`` → ``ip6tables`` / ``iptables-restore`` (keeps the directory)."""
    head, base = os.path.split(binary)
    if v6:
        base = base.replace("iptables", "ip6tables", 1)
    return os.path.join(head, base + suffix) if head else base + suffix


class Firewall:
    """The ``chain`` of per-viewer ACCEPT rules for display ports in [port_min, port_max].

    ``enabled=False`` makes every method a no-op. ``command_prefix`` is prepended to
    every command (tests use ``("ip", "netns", "exec", NAME)``).
    """

    def __init__(self, chain: str = "RAVADA", port_min: int = 5900, port_max: int = 7000,
                 enabled: bool = True, iptables: str = "iptables",
                 command_prefix: Sequence[str] = ()) -> None:
        if not _CHAIN_RE.match(chain) or chain in ("INPUT", "OUTPUT", "FORWARD"):
            raise ValueError(f"firewall chain {chain!r}: 1-28 letters, digits, '-' or '_'")
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"firewall ports: need 1 <= port_min <= port_max <= 65535, "
                             f"got {port_min}-{port_max}")
        self.chain, self.port_min, self.port_max = chain, port_min, port_max
        self.enabled = enabled
        self.prefix = tuple(command_prefix)
        self._bin = {4: iptables, 6: _sibling(iptables, v6=True)}
        self._ready: set[int] = set()

    # -- public API -----------------------------------------------------------------

    def ensure_chain(self) -> None:
        """Create the chain if missing and hook it once at the top of INPUT (idempotent)."""
        raise NotImplementedError

    def open(self, machine: str, ports: list[int], client_ip: str) -> None:
        """Allow ``client_ip`` (only) to reach ``ports`` of ``machine``, in one atomic batch.

        Rules for those ports from any other IP are removed; an existing rule is kept
        as is (never duplicated).
        """
        raise NotImplementedError

    def close(self, machine: str) -> None:
        """Remove every rule of ``machine``."""
        raise NotImplementedError

    def rules(self) -> list[Rule]:
        """The rules now in the chain (IPv4 and IPv6), parsed from ``iptables -S``."""
        raise NotImplementedError

    def reconcile(self, desired: Iterable[Rule]) -> None:
        """Make the chain hold exactly ``desired`` (one atomic batch per address family)."""
        raise NotImplementedError

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        cmd = [*self.prefix, *argv]
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                  timeout=30, check=False)
        except FileNotFoundError as exc:
            raise FirewallError(f"cannot run {cmd[0]}", str(exc)) from None
        except subprocess.TimeoutExpired:
            raise FirewallError(f"{shlex.join(argv)} timed out") from None
        if proc.returncode != 0:
            raise FirewallError(f"{shlex.join(argv)} failed (exit {proc.returncode})",
                                proc.stderr)
        return proc.stdout
