"""A real Active Directory for the tests: Samba's AD DC (Debian's ``samba``), provisioned offline.

``samba-tool domain provision`` writes a fresh domain (EXAMPLE.ORG) into a temp
dir; users and groups are added offline through Samba's own Python bindings
(Debian's /usr/bin/python3); then ``samba`` runs in the foreground inside its
own network namespace (so its fixed LDAP ports 389/636 clash with nothing),
reached from the tests over a veth pair on a private /30. Its TLS certificate
comes from a test CA and names the namespace's address.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from directory import make_ca, make_server_cert

REALM, DOMAIN = "EXAMPLE.ORG", "EXAMPLE"
BASE_DN = "DC=example,DC=org"
ADMIN_PW = "Adm1n-Pass-word!"
# sAMAccountName -> (password, direct groups); lab-a is itself a member of vdi-users.
PEOPLE: dict[str, tuple[str, list[str]]] = {
    "adalice": ("Al1ce-Dir-Pw!", ["lab-a"]),
    "adbob": ("B0b-Dir-Pw!x", []),
    "adcarol": ("Car0l-Dir-Pw!", ["VDI Admins"]),
}
NESTED = {"vdi-users": ["lab-a"]}  # group -> groups inside it

_LOAD = r"""
import sys
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm(); lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], session_info=system_session(), lp=lp)
people, nested = eval(sys.argv[3]), eval(sys.argv[4])
groups = sorted({g for _, gs in people.values() for g in gs} | set(nested))
for g in groups:
    db.newgroup(g)
for name, (pw, _) in people.items():
    db.newuser(name, pw)  # userPrincipalName: name@example.org
for name, (_, gs) in people.items():
    for g in gs:
        db.add_remove_group_members(g, [name], add_members_operation=True)
for g, inner in nested.items():
    db.add_remove_group_members(g, inner, add_members_operation=True)
"""


def samba_missing() -> str | None:
    """Why a Samba AD DC cannot run here (None: it can)."""
    for tool in ("samba", "samba-tool", "ip"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            return f"{tool} is not installed (apt-get install samba iproute2)"
    if os.geteuid() != 0:
        return "the Samba AD DC and its network namespace need root"
    return None


def _run(*argv: str, timeout: float = 300) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv[:3])}...: {r.stdout[-1500:]} {r.stderr[-1500:]}")


@dataclass
class SambaAD:
    root: Path
    ns: str = ""
    ip: str = ""
    ca_file: Path = Path()
    proc: subprocess.Popen[bytes] | None = None
    people: dict[str, tuple[str, list[str]]] = field(default_factory=lambda: dict(PEOPLE))

    @property
    def uri(self) -> str:
        return f"ldaps://{self.ip}"

    @property
    def users_dn(self) -> str:
        return f"CN=Users,{BASE_DN}"

    def start(self) -> SambaAD:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.ns, host_if, ns_if = f"rvdad{tag}", f"vadh{tag}", f"vadn{tag}"
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        third = next(n for n in random.sample(range(1, 255), 254) if f"10.253.{n}." not in used)
        self.ip, host_ip = f"10.253.{third}.2", f"10.253.{third}.1"
        pki = self.root / "pki"
        pki.mkdir(parents=True)
        ca = make_ca(pki, "ad-test-ca")
        self.ca_file = ca[0]
        crt, key = make_server_cert(pki, ca, f"IP:{self.ip}")
        key.chmod(0o600)
        target = self.root / "dc"
        _run("samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={DOMAIN}",
             "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", "--host-name=dc1",
             f"--adminpass={ADMIN_PW}", f"--targetdir={target}",
             f"--option=interfaces = {self.ip}/30", "--option=bind interfaces only = yes",
             "--option=server services = ldap", "--option=tls enabled = yes",
             f"--option=tls keyfile = {key}", f"--option=tls certfile = {crt}",
             f"--option=tls cafile = {ca[0]}", f"--option=pid directory = {target}",
             f"--option=log file = {target}/log.%m", timeout=600)
        conf = target / "etc" / "smb.conf"
        _run("/usr/bin/python3", "-c", _LOAD, str(conf), str(target / "private" / "sam.ldb"),
             repr(self.people), repr(NESTED))
        _run("ip", "netns", "add", self.ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", self.ns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        inside = ["ip", "netns", "exec", self.ns]
        _run(*inside, "ip", "addr", "add", f"{self.ip}/30", "dev", ns_if)
        _run(*inside, "ip", "link", "set", ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        log = open(self.root / "samba.log", "wb")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen([*inside, "samba", "-i", "-M", "single", "-s", str(conf)],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("samba exited: " + (self.root / "samba.log").read_text())
            try:
                socket.create_connection((self.ip, 636), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("samba's LDAP did not answer within 120 s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
