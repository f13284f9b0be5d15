"""The per-viewer display firewall: one iptables chain (and its ip6tables twin) of ACCEPTs.

rvd_back allows a machine's display ports to the addresses of its current viewers
(:meth:`Firewall.allow`; the backend decides who, see ``back/access.py``) and closes
them when the machine stops. The static part (ESTABLISHED accept, DROP for the rest of
the display range, for IPv4 and IPv6) belongs to the firewall role; this class also
hooks the chain at the top of INPUT so it works without the role.

A change is ONE ``iptables-restore -w --noflush`` process for the address family it
touches: the batch re-declares the chain (which flushes it), writes every rule from
an in-memory mirror of the chain, and deletes and re-inserts the INPUT hook. The
batch is atomic, so packets never see a half-written chain; it fails as a whole
when the hook is missing (``-D`` of an absent rule), and then the chain is read
again (``iptables -S``), repaired and written once more. Reads happen at start-up,
in :meth:`reconcile`, :meth:`rules` and after a failure, never on the usual click.
The chain is rvd_back's alone: a rule added to it by hand is dropped at the next change.
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


# One line of the chain as ``iptables -S`` prints it, with its Rule when it is ours.
Entry = tuple[str, Rule | None]


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


def normalize_ip(client_ip: str) -> str:
    """The canonical text of a client address (``::ffff:a.b.c.d`` -> ``a.b.c.d``)."""
    return str(check_ip(client_ip))


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
        self._mirror: dict[int, list[Entry]] = {}  # family -> the chain as last read/written
        self._v6_error: str | None = None
        self.restores = 0  # iptables-restore processes run (for tests and the benchmark)

    # -- public API -----------------------------------------------------------------

    def ensure_chain(self) -> None:
        """Create the chain if missing and hook it once at the top of INPUT (idempotent).

        Done for IPv4 and, when ip6tables works here, for IPv6 (else IPv6 clients
        get a FirewallError). Re-reads the chains into the mirror.
        """
        if not self.enabled:
            return
        with _LOCK:
            self._mirror.clear()
            self._v6_error = None
            self._ensure_all()

    def allow(self, machine: str, ports: Iterable[int], clients: Sequence[str]) -> None:
        """Make ``machine``'s rules exactly ``ports`` x ``clients`` (IPv4 and IPv6 alike).

        Rules of other machines are kept. One restore per address family whose rules
        change; the family of the newest client (the last one) is always written, which
        also checks the chain and the hook. ``clients=[]`` closes the machine.
        """
        check_machine(machine)
        wanted_ports = sorted(self._check_ports(ports))
        addrs: list[str] = []
        for client in clients:
            ip = normalize_ip(client)
            if ip not in addrs:
                addrs.append(ip)
        if not self.enabled:
            return
        by_fam = {4: [a for a in addrs if ":" not in a], 6: [a for a in addrs if ":" in a]}
        with _LOCK:
            self._ensure_all()
            if by_fam[6]:
                self._ensure(6)  # raises when IPv6 is unavailable here
            newest = 6 if addrs and ":" in addrs[-1] else 4
            for fam in self._families():
                rules = [Rule(machine, p, ip) for ip in by_fam[fam] for p in wanted_ports]

                def edit(entries: list[Entry], rules: list[Rule] = rules) -> list[Entry]:
                    kept = [e for e in entries if e[1] is None or e[1].machine != machine]
                    return kept + [(self._line(r), r) for r in rules]

                self._change(fam, edit, force=fam == newest and bool(addrs))

    def close(self, machine: str) -> None:
        """Remove every rule of ``machine`` (no process runs when it has none)."""
        check_machine(machine)
        if not self.enabled:
            return
        with _LOCK:
            self._ensure_all()
            for fam in self._families():
                self._change(fam, lambda es: [e for e in es
                                              if e[1] is None or e[1].machine != machine])

    def rules(self) -> list[Rule]:
        """The rules now in the chain (IPv4 and IPv6), read from ``iptables -S``."""
        if not self.enabled:
            return []
        with _LOCK:
            self._ensure_all()
            found: list[Rule] = []
            for fam in self._families():
                found += [r for _, r in self._read_chain(fam) if r is not None]
            return found

    def reconcile(self, desired: Iterable[Rule]) -> None:
        """Make the chain hold exactly ``desired`` (one atomic batch per address family).

        Stale rules (stopped machines, old viewers, anything not ours) are dropped and
        missing ones added; nothing is written when the chain already matches. The
        order of ``desired`` is kept (oldest viewer first).
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
            self._mirror.clear()  # re-read the chains and hooks: reconcile runs at startup
            self._v6_error = None
            self._ensure_all()
            if by_fam[6]:
                self._ensure(6)
            for fam in self._families():
                want = by_fam[fam]
                self._change(fam, lambda _es, want=want: [(self._line(r), r) for r in want])

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
        return sorted(self._mirror)

    def _ensure_all(self) -> None:
        """IPv4 must work; IPv6 is tried once and skipped (with a warning) when unavailable."""
        self._ensure(4)
        if 6 in self._mirror or self._v6_error is not None:
            return
        try:
            self._ensure(6)
        except FirewallError as exc:
            self._v6_error = str(exc)
            log.warning("IPv6 display firewall unavailable: %s", exc)

    def _ensure(self, fam: int) -> None:
        """Read one family, create the chain and the single INPUT hook, load the mirror."""
        if fam in self._mirror:
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
        prefix = f"-A {self.chain} "
        # Only our rules are kept: the chain is rvd_back's (admins use the role's
        # workstation list), and a foreign line might not even parse back.
        self._mirror[fam] = [(ln, rule) for ln in lines if ln.startswith(prefix)
                             for rule in [self._parse(ln)] if rule is not None]

    def _read_chain(self, fam: int) -> list[Entry]:
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

    def _line(self, rule: Rule) -> str:
        """The rule exactly as ``iptables -S`` prints it (so mirror and kernel compare)."""
        bits = 32 if ":" not in rule.client_ip else 128
        return (f"-A {self.chain} -s {rule.client_ip}/{bits} -p tcp -m tcp "
                f'--dport {rule.port} -m comment --comment "{COMMENT_PREFIX}{rule.machine}" '
                "-j ACCEPT")

    def _change(self, fam: int, edit: Callable[[list[Entry]], list[Entry]],
                force: bool = False) -> None:
        """Write ``edit(mirror)`` as the whole chain in one batch (caller holds the lock).

        Skipped when nothing changes unless ``force``. On failure (hook or chain gone,
        someone else's change) the family is read again and the batch rebuilt once.
        """
        for attempt in (1, 2):
            entries = self._mirror[fam]
            new = edit(list(entries))
            if new == entries and not force:
                return
            batch = [f":{self.chain} - [0:0]", *(line for line, _ in new),
                     f"-D INPUT -j {self.chain}", f"-I INPUT 1 -j {self.chain}"]
            try:
                self._restore(fam, batch)
            except FirewallError as exc:
                if attempt == 2:
                    raise
                log.info("firewall batch failed, re-reading the chain: %s", exc)
                del self._mirror[fam]
                self._ensure(fam)
                continue
            self._mirror[fam] = new
            return

    def _restore(self, fam: int, batch: list[str]) -> None:
        text = "*filter\n" + "\n".join(batch) + "\nCOMMIT\n"
        log.debug("iptables-restore (IPv%d):\n%s", fam, text)
        self.restores += 1
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
