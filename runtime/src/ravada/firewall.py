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
from collections.abc import Callable, Iterable, Sequence
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
        self._v6_error: str | None = None

    # -- public API -----------------------------------------------------------------

    def ensure_chain(self) -> None:
        """Create the chain if missing and hook it once at the top of INPUT (idempotent).

        Done for IPv4 and, when ip6tables works here, for IPv6 (else IPv6 clients
        get a FirewallError from :meth:`open`).
        """
        if not self.enabled:
            return
        with _LOCK:
            self._ready.clear()
            self._v6_error = None
            self._ensure_all()

    def open(self, machine: str, ports: list[int], client_ip: str) -> None:
        """Allow ``client_ip`` (only) to reach ``ports`` of ``machine``, in one atomic batch.

        Rules for those ports from any other IP are removed; an existing rule is kept
        as is (never duplicated). Rules left in the other address family's chain (a
        viewer who moved between IPv4 and IPv6) are removed in a batch of their own.
        """
        check_machine(machine)
        addr = check_ip(client_ip)
        wanted_ports = self._check_ports(ports)
        if not self.enabled:
            return
        fam = addr.version
        wanted = {Rule(machine, p, str(addr)) for p in wanted_ports}
        with _LOCK:
            self._ensure_all()
            self._ensure(fam)
            for other in self._ready - {fam}:
                # A viewer that moved between IPv4 and IPv6: drop the old family's rules.
                self._retry(lambda o=other: self._delete_where(
                    o, lambda r: r.port in wanted_ports))
            self._retry(lambda: self._open_once(fam, wanted, wanted_ports))

    def close(self, machine: str) -> None:
        """Remove every rule of ``machine``."""
        check_machine(machine)
        if not self.enabled:
            return
        with _LOCK:
            self._ensure_all()
            for fam in self._families():
                self._retry(lambda f=fam: self._delete_where(f, lambda r: r.machine == machine))

    def rules(self) -> list[Rule]:
        """The rules now in the chain (IPv4 and IPv6), parsed from ``iptables -S``."""
        if not self.enabled:
            return []
        with _LOCK:
            self._ensure_all()
            found: list[Rule] = []
            for fam in self._families():
                found += [r for _, r in self._list(fam) if r is not None]
            return found

    def reconcile(self, desired: Iterable[Rule]) -> None:
        """Make the chain hold exactly ``desired`` (one atomic batch per address family).

        Stale rules (stopped machines, old viewers, anything not ours) are dropped and
        missing ones added; nothing is written when the chain already matches.
        """
        by_fam: dict[int, list[Rule]] = {4: [], 6: []}
        for rule in desired:
            check_machine(rule.machine)
            addr = check_ip(rule.client_ip)
            self._check_ports([rule.port])
            norm = Rule(rule.machine, rule.port, str(addr))
            if norm not in by_fam[addr.version]:
                by_fam[addr.version].append(norm)
        if not self.enabled:
            return
        with _LOCK:
            self._ready.clear()  # re-check the chains and hooks: reconcile runs at startup
            self._v6_error = None
            self._ensure_all()
            if by_fam[6]:
                self._ensure(6)  # raises when IPv6 is unavailable here
            for fam in self._families():
                want = sorted(by_fam[fam], key=lambda r: (r.port, r.machine, r.client_ip))
                current = self._list(fam)
                if [r for _, r in current] == want:
                    continue
                batch = [f"-F {self.chain}", *(self._spec("-A", r) for r in want)]
                self._restore(fam, batch)

    # -- internals --------------------------------------------------------------------

    def _check_ports(self, ports: Iterable[int]) -> set[int]:
        ports = list(ports)
        if not ports:
            raise ValueError("no display ports to open")
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, int):
                raise ValueError(f"display port {port!r} is not an integer")
            if not self.port_min <= port <= self.port_max:
                raise ValueError(f"display port {port} is outside the firewall range "
                                 f"{self.port_min}-{self.port_max}")
        return set(ports)

    def _families(self) -> list[int]:
        return sorted(self._ready)

    def _ensure_all(self) -> None:
        """IPv4 must work; IPv6 is tried once and skipped (with a warning) when unavailable."""
        self._ensure(4)
        if 6 in self._ready or self._v6_error is not None:
            return
        try:
            self._ensure(6)
        except FirewallError as exc:
            self._v6_error = str(exc)
            log.warning("IPv6 display firewall unavailable: %s", exc)

    def _ensure(self, fam: int) -> None:
        """Create the chain and the single INPUT hook for one family (caller holds the lock)."""
        if fam in self._ready:
            return
        hook = f"-A INPUT -j {self.chain}"
        lines = self._run([self._bin[fam], "-w", "-S"]).splitlines()
        batch = []
        if f"-N {self.chain}" not in lines:
            batch.append(f"-N {self.chain}")
        input_rules = [ln for ln in lines if ln.startswith("-A INPUT ")]
        hooks = input_rules.count(hook)
        if hooks != 1 or input_rules[0] != hook:
            if hooks:
                log.info("moving the %s hook to the top of INPUT (found %d)", self.chain, hooks)
            batch += [f"-D INPUT -j {self.chain}"] * hooks
            batch.append(f"-I INPUT 1 -j {self.chain}")
        if batch:
            self._restore(fam, batch)
        self._ready.add(fam)

    def _list(self, fam: int) -> list[tuple[str, Rule | None]]:
        """The chain's rules as (``-S`` line, parsed Rule or None when not ours)."""
        out = self._run([self._bin[fam], "-w", "-S", self.chain])
        prefix = f"-A {self.chain} "
        return [(ln, self._parse(ln)) for ln in out.splitlines() if ln.startswith(prefix)]

    def _parse(self, line: str) -> Rule | None:
        try:
            tokens = shlex.split(line)
        except ValueError:
            return None
        opts = dict(zip(tokens[::2], tokens[1::2], strict=False))
        comment, source = opts.get("--comment", ""), opts.get("-s", "")
        if (opts.get("-j") != "ACCEPT" or opts.get("-p") != "tcp"
                or not comment.startswith(COMMENT_PREFIX) or not source):
            return None
        try:
            net = ipaddress.ip_network(source, strict=True)
            port = int(opts.get("--dport", ""))
        except ValueError:
            return None
        if net.num_addresses != 1:
            return None
        return Rule(comment[len(COMMENT_PREFIX):], port, str(net.network_address))

    def _spec(self, action: str, rule: Rule) -> str:
        bits = 32 if ipaddress.ip_address(rule.client_ip).version == 4 else 128
        return (f"{action} {self.chain} -s {rule.client_ip}/{bits} -p tcp -m tcp "
                f"--dport {rule.port} -m comment --comment {COMMENT_PREFIX}{rule.machine} "
                "-j ACCEPT")

    def _open_once(self, fam: int, wanted: set[Rule], ports: set[int]) -> None:
        batch, kept = [], set()
        for line, rule in self._list(fam):
            if rule is None or rule.port not in ports:
                continue
            if rule in wanted and rule not in kept:
                kept.add(rule)
            else:
                batch.append("-D" + line[2:])
        batch += [self._spec("-A", r) for r in sorted(wanted - kept, key=lambda r: r.port)]
        if batch:
            self._restore(fam, batch)

    def _delete_where(self, fam: int, match: Callable[[Rule], bool]) -> None:
        batch = ["-D" + line[2:] for line, rule in self._list(fam) if rule and match(rule)]
        if batch:
            self._restore(fam, batch)

    def _retry(self, step: Callable[[], None]) -> None:
        """Run a read-then-write step; once more if the chain changed under us."""
        try:
            step()
        except FirewallError as exc:
            # Another process changed the chain, or someone flushed/deleted it: check the
            # chain and hook again, then re-read and retry once.
            log.info("firewall batch failed, re-reading the chain: %s", exc)
            self._ready.clear()
            self._ensure_all()
            step()

    def _restore(self, fam: int, batch: list[str]) -> None:
        text = "*filter\n" + "\n".join(batch) + "\nCOMMIT\n"
        log.debug("iptables-restore (IPv%d):\n%s", fam, text)
        self._run([_sibling(self._bin[fam], "-restore"), "-w", "--noflush"], stdin=text)

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
