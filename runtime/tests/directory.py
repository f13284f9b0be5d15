"""Real directory servers for the identity tests: Debian's slapd (and Samba's AD DC).

``Slapd`` writes a slapd.conf into a temp dir, makes a test CA and a server
certificate (plus a rogue CA that signed nothing the server uses), starts slapd
in the foreground on free loopback ports and loads users and groups through the
rootdn. Nothing here mocks LDAP: the tests talk to the real server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret-pw"
SERVICE_DN = f"cn=ravada,ou=services,{SUFFIX}"
SERVICE_PW = "service-secret-pw"
USERS = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
# uid -> (password, groupOfNames memberships, posixGroup memberships)
PEOPLE: dict[str, tuple[str, list[str], list[str]]] = {
    "alice": ("alice-dir-pw-1", ["students"], ["labusers"]),
    "bob": ("bob-dir-pw-22", ["teachers"], []),
    "carol": ("carol-dir-pw-333", ["rvdadmins"], []),
    "dave": ("dave-dir-pw-4444", [], []),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (cert, key) in ``d``."""
    key, crt = d / f"{name}.key", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", str(key), "-out", str(crt), cwd=d)
    return crt, key


def make_server_cert(d: Path, ca: tuple[Path, Path], sans: str) -> tuple[Path, Path]:
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.pem", d / "ext.cnf"
    ext.write_text(f"subjectAltName={sans}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(csr), cwd=d)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt), cwd=d)
    key.chmod(0o644)
    return crt, key


SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {d}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {crt}
TLSCertificateKeyFile {key}
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{service}" read by users read by * none
database mdb
maxsize 67108864
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {d}/db
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
"""


@dataclass
class Slapd:
    """A running slapd with ldap:// (StartTLS) and ldaps:// on loopback."""

    root: Path
    ldap_port: int = 0
    ldaps_port: int = 0
    ca_file: Path = Path()
    rogue_ca_file: Path = Path()
    proc: subprocess.Popen[bytes] | None = None
    people: dict[str, tuple[str, list[str], list[str]]] = field(default_factory=dict)

    @property
    def ldap_uri(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def mismatched_uri(self) -> str:
        """The same server under an address its certificate does not name."""
        return f"ldaps://127.0.0.2:{self.ldaps_port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self) -> Slapd:
        if not shutil.which("slapd", path="/usr/sbin:/usr/bin"):
            raise RuntimeError("Debian's slapd is not installed (apt-get install slapd)")
        d = self.root
        (d / "db").mkdir(parents=True)
        ca = make_ca(d, "test-ca")
        self.rogue_ca_file = make_ca(d, "rogue-ca")[0]
        self.ca_file = ca[0]
        crt, key = make_server_cert(d, ca, "IP:127.0.0.1")
        conf = d / "slapd.conf"
        conf.write_text(SLAPD_CONF.format(d=d, ca=ca[0], crt=crt, key=key, suffix=SUFFIX,
                                          rootdn=ROOT_DN, rootpw=ROOT_PW, service=SERVICE_DN))
        self.ldap_port, self.ldaps_port = free_port(), free_port()
        urls = (f"ldap://127.0.0.1:{self.ldap_port}/ ldaps://127.0.0.1:{self.ldaps_port}/ "
                f"ldaps://127.0.0.2:{self.ldaps_port}/")
        log = open(d / "slapd.log", "wb")  # noqa: SIM115 - kept open for the process
        # -d 256 (stats): one line per connection and operation, read by the tests
        self.proc = subprocess.Popen(["/usr/sbin/slapd", "-f", str(conf), "-h", urls, "-d", "256"],
                                     stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        self._load()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("slapd exited: " + (self.root / "slapd.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.ldap_port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("slapd did not listen within 30 s") from None
                time.sleep(0.05)

    def admin(self):  # type: ignore[no-untyped-def]
        """A rootdn connection (plain LDAP on loopback: test data only)."""
        import ldap

        conn = ldap.initialize(f"ldap://127.0.0.1:{self.ldap_port}")
        conn.simple_bind_s(ROOT_DN, ROOT_PW)
        return conn

    def _load(self) -> None:
        conn = self.admin()
        try:
            add = conn.add_s
            add(SUFFIX, [("objectClass", [b"dcObject", b"organization"]), ("dc", [b"example"]),
                         ("o", [b"Example"])])
            for ou in ("people", "groups", "services"):
                add(f"ou={ou},{SUFFIX}", [("objectClass", [b"organizationalUnit"]),
                                          ("ou", [ou.encode()])])
            add(SERVICE_DN, [("objectClass", [b"organizationalRole", b"simpleSecurityObject"]),
                             ("cn", [b"ravada"]), ("userPassword", [SERVICE_PW.encode()])])
            for i, (uid, (pw, _, _)) in enumerate(PEOPLE.items()):
                self.add_user(uid, pw, 10000 + i)
            names = sorted({g for _, gs, _ in PEOPLE.values() for g in gs})
            for name in names:
                members = [f"uid={u},{USERS}".encode() for u, (_, gs, _) in PEOPLE.items()
                           if name in gs]
                self.add_group(name, members)
            add(f"cn=labusers,{GROUPS}", [
                ("objectClass", [b"posixGroup"]), ("cn", [b"labusers"]),
                ("gidNumber", [b"5000"]),
                ("memberUid", [u.encode() for u, (_, _, ps) in PEOPLE.items()
                               if "labusers" in ps])])
        finally:
            conn.unbind_s()
        self.people = dict(PEOPLE)

    def add_user(self, uid: str, password: str, number: int = 20000) -> None:
        conn = self.admin()
        try:
            conn.add_s(f"uid={uid},{USERS}", [
                ("objectClass", [b"inetOrgPerson", b"posixAccount"]),
                ("uid", [uid.encode()]), ("cn", [uid.encode()]), ("sn", [uid.encode()]),
                ("uidNumber", [str(number).encode()]), ("gidNumber", [b"5000"]),
                ("homeDirectory", [f"/home/{uid}".encode()]),
                ("userPassword", [password.encode()])])
        finally:
            conn.unbind_s()

    def add_group(self, name: str, members: list[bytes]) -> None:
        conn = self.admin()
        try:
            # a placeholder member: groupOfNames may not become empty when a test removes one
            placeholder = f"cn=placeholder,{SUFFIX}".encode()
            conn.add_s(f"cn={name},{GROUPS}", [("objectClass", [b"groupOfNames"]),
                                                ("cn", [name.encode()]),
                                                ("member", [*members, placeholder])])
        finally:
            conn.unbind_s()

    def set_member(self, group: str, uid: str, present: bool) -> None:
        """Add or remove ``uid`` from a groupOfNames group."""
        import ldap

        conn = self.admin()
        try:
            op = ldap.MOD_ADD if present else ldap.MOD_DELETE
            conn.modify_s(f"cn={group},{GROUPS}", [(op, "member", [f"uid={uid},{USERS}".encode()])])
        finally:
            conn.unbind_s()

    def log(self) -> str:
        return (self.root / "slapd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
