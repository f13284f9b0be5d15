"""A real OpenID provider on loopback for the tests: npm's ``oidc-provider`` (versions
pinned by tests/oidc/package-lock.json) run by Debian's ``nodejs``.

``ensure_modules()`` runs ``npm ci`` from the lock once (``make test-runtime`` does the
same first); when node_modules already matches the lock nothing touches the network.
``start()`` runs tests/oidc/provider.mjs on a free loopback port with a confidential
client registered for the given redirect URIs and the users of :data:`USERS`.
``login()`` walks a browser's way through the code flow with ``requests`` and stops at
the redirect back to Ravada, so tests can replay, alter or drop that last step.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

HERE = Path(__file__).resolve().parent / "oidc"
NODE = shutil.which("node") or shutil.which("nodejs") or ""
NPM = shutil.which("npm") or ""
CLIENT_ID = "ravada"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
# sub -> password and claims (the provider names the account by its sub)
USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-pw", "claims": {"preferred_username": "alice",
                                                 "groups": ["/students"]}},
    "bob": {"password": "bob-pw", "claims": {"preferred_username": "bob",
                                             "groups": ["teachers", "ravada-admins"]}},
    "carol": {"password": "carol-pw", "claims": {"preferred_username": "carol", "groups": []}},
    "dave": {"password": "dave-pw", "claims": {"preferred_username": "dave"}},
    "erin": {"password": "erin-pw", "claims": {"preferred_username": "erin",
                                               "groups": ["students"]}},
    "frank": {"password": "frank-pw", "claims": {"preferred_username": "frank smith"}},
    "gina": {"password": "gina-pw", "claims": {"preferred_username": "gina"}},
    "henry": {"password": "henry-pw", "claims": {"preferred_username": "henry"}},
    "olga": {"password": "olga-pw", "claims": {"preferred_username": "olga",
                                               "groups": ["vdi-students"]}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_modules() -> None:
    """``npm ci`` from the lock unless node_modules already matches it (offline then)."""
    lock = HERE / "package-lock.json"
    stamp = HERE / "node_modules" / ".package-lock.json"  # written by npm
    with open(HERE / ".npm-install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
            return
        subprocess.run([NPM, "ci", "--prefer-offline", "--no-audit", "--no-fund"], cwd=HERE,
                       check=True, timeout=600, capture_output=True)


@dataclass
class Provider:
    issuer: str
    proc: subprocess.Popen[str]
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set_mode(self, mode: str) -> None:
        """none, tamper (payload altered after signing) or expired (re-signed, exp past)."""
        requests.post(self.issuer + "/__test/mode", data={"mode": mode}, timeout=5)

    def set_claims(self, sub: str, claims: dict[str, Any]) -> None:
        requests.post(self.issuer + "/__test/claims", json={"sub": sub, "claims": claims},
                      timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(workdir: Path, front_urls: list[str], host: str = "127.0.0.1",
          port: int | None = None, tls: tuple[Path, Path] | None = None,
          client_secret: str = CLIENT_SECRET, kid: str = "") -> Provider:
    """The provider with the ``ravada`` client allowed back to each front URL.

    ``tls`` (certificate, key): https (the molecule e2e test); else plain http on loopback.
    """
    ensure_modules()
    port = port or free_port()
    issuer = f"{'https' if tls else 'http'}://{host}:{port}"
    users = json.loads(json.dumps(USERS))
    conf = {
        "port": port, "host": host, "issuer": issuer, "users": users, "kid": kid,
        "tls": {"cert": str(tls[0]), "key": str(tls[1])} if tls else None,
        "clients": [{
            "client_id": CLIENT_ID, "client_secret": client_secret,
            "redirect_uris": [u + "/login/oidc/callback" for u in front_urls],
            "post_logout_redirect_uris": [u + "/login" for u in front_urls],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }],
    }
    path = workdir / f"provider-{port}.json"
    path.write_text(json.dumps(conf))
    proc = subprocess.Popen([NODE, str(HERE / "provider.mjs"), str(path)], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("ready "):
            return Provider(issuer=issuer, proc=proc, users=users)
    proc.kill()
    raise RuntimeError("oidc provider did not start: " + "".join(seen)[-2000:])


def oidc_config(issuer: str, **over: Any) -> dict[str, Any]:
    """The ``auth.oidc`` section for the test provider (Keycloak-like claim names)."""
    return {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "scopes": ["openid", "profile", "groups"], "groups_claim": "groups",
            "admin_group": "ravada-admins", "label": "Test IdP", **over}


def login(http: requests.Session, front_url: str, user: str, password: str | None = None,
          path: str = "/login/oidc") -> str:
    """Start at Ravada, sign in at the provider; the callback URL Ravada would get next."""
    resp = http.get(front_url + path, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text[:500]
    url = resp.headers["Location"]
    resp = http.get(url, timeout=10)  # -> the provider's sign-in form
    action = re.search(r'<form id="kc-form-login" method="post" action="([^"]+)"', resp.text)
    assert action, resp.text[:500]
    pw = password if password is not None else USERS[user]["password"]
    resp = http.post(urljoin(resp.url, action.group(1)), allow_redirects=False, timeout=10,
                     data={"username": user, "password": pw})
    for _ in range(5):
        assert resp.status_code in (302, 303), resp.text[:500]
        url = urljoin(resp.url, resp.headers["Location"])
        if url.startswith(front_url):
            return url
        resp = http.get(url, allow_redirects=False, timeout=10)
    raise AssertionError(f"the provider never sent the browser back: {url}")
