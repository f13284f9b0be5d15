"""Single sign-on against a REAL OpenID provider (npm oidc-provider on Debian's nodejs).

The real rvd_front is served by werkzeug on loopback; tests/oidc_provider.py walks the
code flow as a browser does (the provider's own password form) with ``requests``. No
hand-made token stands in for the provider: the tampered and expired ID tokens are the
provider's own answers, altered in its token endpoint (tests/oidc/provider.mjs).
The full login and logout are also driven through Debian's chromium (Playwright).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import oidc_provider as op
import pytest
import requests
from sqlalchemy import select
from test_browser_front import ARGS, CHROMIUM
from test_front_support import PASSWORD, add_machine, add_user
from werkzeug.serving import make_server

from ravada import config as rconfig
from ravada.auth import groups
from ravada.db import Database, User
from ravada.db.migrate import upgrade
from ravada.front import create_app

pytestmark = [
    pytest.mark.oidc,
    pytest.mark.skipif(not op.NODE or not op.NPM, reason="nodejs and npm are not installed"),
]


@dataclass
class Site:
    url: str
    db: Database
    provider: op.Provider
    admin_id: int

    def user(self, name: str) -> User | None:
        with self.db.sessionmaker() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is not None:
                s.expunge(u)
            return u

    def whoami(self, http: requests.Session) -> dict[str, Any] | None:
        resp = http.get(self.url + "/api/v1/session", timeout=10)
        return resp.json()["user"] if resp.status_code == 200 else None


def front_config(tmp: Path, db_url: str, issuer: str, **oidc: Any) -> rconfig.Config:
    return rconfig.from_dict(config_dict(tmp, db_url, issuer, **oidc))


def config_dict(tmp: Path, db_url: str, issuer: str, **oidc: Any) -> dict[str, Any]:
    return {
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default"},
        "queue": {"socket": str(tmp / "queue.sock")},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp / "front.key"), "iso_dir": str(tmp / "isos")},
        "auth": {"oidc": op.oidc_config(issuer, **oidc)},
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("oidc")
    db = Database(f"sqlite:///{tmp / 'ravada.db'}")
    upgrade(db.engine)
    port = op.free_port()
    url = f"http://127.0.0.1:{port}"
    provider = op.start(tmp, [url])
    server = make_server("127.0.0.1", port, create_app(front_config(tmp, db.url,
                                                                    provider.issuer), db),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(url, db, provider, add_user(db, "admin", admin=True))
    finally:
        server.shutdown()
        thread.join(5)
        provider.stop()
        db.dispose()


def _login(site: Site, user: str) -> requests.Session:
    http = requests.Session()
    resp = http.get(op.login(http, site.url, user), allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text[:800]
    return http


def _message(resp: requests.Response) -> str:
    found = re.search(r'role="alert">([^<]*)<', resp.text)
    assert found, resp.text[:800]
    return found.group(1).replace("&#39;", "'")


def test_code_flow_with_pkce_creates_the_user(site: Site) -> None:
    http = requests.Session()
    page = http.get(site.url + "/login?next=/account", timeout=10).text
    assert "Log in with Test IdP" in page and 'name="password"' in page
    start = http.get(site.url + "/login/oidc?next=/account", allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    assert start.headers["Location"].startswith(site.provider.issuer + "/auth?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["response_type"] == ["code"] and query["client_id"] == [op.CLIENT_ID]
    assert len(query["state"][0]) >= 20 and len(query["nonce"][0]) >= 20
    assert query["redirect_uri"] == [site.url + "/login/oidc/callback"]
    assert site.user("alice") is None

    callback = op.login(http, site.url, "alice", path="/login/oidc?next=/account")
    assert "code=" in callback and "state=" in callback
    resp = http.get(callback, allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account")
    assert site.whoami(http) == {"id": site.user("alice").id, "name": "alice",
                                 "is_admin": False}
    row = site.user("alice")
    assert row.auth_backend == "oidc" and row.password_hash == ""
    assert row.directory_groups == ["students"]  # Keycloak's "/students" path, slash gone
    # a wrong password at the provider never comes back to Ravada
    form = requests.Session()
    with pytest.raises(AssertionError):
        op.login(form, site.url, "carol", password="wrong")


def test_groups_from_claims_give_access_to_a_base(site: Site) -> None:
    lab = add_machine(site.db, "oidc-lab", site.admin_id, is_base=True, is_public=True)
    alice, carol = _login(site, "alice"), _login(site, "carol")
    with site.db.session() as s:
        groups.set_base_access(s, lab, [groups.get_group(s, "students").id])

    def listed(http: requests.Session) -> set[str]:
        return {b["name"] for b in http.get(site.url + "/api/v1/bases", timeout=10).json()}

    assert "oidc-lab" in listed(alice)
    assert "oidc-lab" not in listed(carol)
    csrf = carol.get(site.url + "/api/v1/session", timeout=10).json()["csrf_token"]
    forged = carol.post(f"{site.url}/api/v1/bases/{lab}/start", timeout=10,
                        headers={"X-CSRFToken": csrf})
    assert forged.status_code == 404


def test_admin_flag_and_groups_follow_the_claims_at_every_login(site: Site) -> None:
    bob = _login(site, "bob")
    assert site.whoami(bob)["is_admin"] is True
    assert bob.get(site.url + "/admin/users", timeout=10).status_code == 200
    assert site.user("bob").directory_groups == ["ravada-admins", "teachers"]
    site.provider.set_claims("bob", {"preferred_username": "bob", "groups": ["teachers"]})
    try:
        again = _login(site, "bob")
        assert site.whoami(again)["is_admin"] is False
        assert site.user("bob").directory_groups == ["teachers"]
        assert again.get(site.url + "/admin/users", timeout=10).status_code == 403
    finally:
        site.provider.set_claims("bob", op.USERS["bob"]["claims"])


@pytest.mark.parametrize("mode", ["tamper", "expired"])
def test_a_tampered_or_expired_id_token_is_refused(site: Site, mode: str) -> None:
    http = requests.Session()
    callback = op.login(http, site.url, "erin")
    site.provider.set_mode(mode)
    try:
        resp = http.get(callback, allow_redirects=False, timeout=10)
    finally:
        site.provider.set_mode("none")
    assert resp.status_code == 401
    assert "ID token failed verification" in _message(resp)
    assert site.whoami(http) is None and site.user("erin") is None and site.user("admin")


def test_a_wrong_state_is_refused(site: Site) -> None:
    http = requests.Session()
    callback = op.login(http, site.url, "erin")
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = "x" * len(query["state"])
    resp = http.get(urlunsplit(parts._replace(query=urlencode(query))), allow_redirects=False,
                    timeout=10)
    assert resp.status_code == 400
    assert "state does not match" in _message(resp)
    assert site.whoami(http) is None and site.user("erin") is None
    # the same answer in another browser (no state in its session) is refused too
    other = requests.Session()
    resp = other.get(callback, allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and site.whoami(other) is None


def test_a_replayed_code_is_refused(site: Site) -> None:
    http = requests.Session()
    callback = op.login(http, site.url, "erin")
    before = requests.Session()
    before.cookies.update(http.cookies)  # the session cookie that still holds the state
    assert http.get(callback, allow_redirects=False, timeout=10).status_code == 302
    assert site.whoami(http)["name"] == "erin"
    resp = before.get(callback, allow_redirects=False, timeout=10)
    assert resp.status_code == 400
    assert "already used or has expired" in _message(resp)
    assert site.whoami(before) is None


def test_a_name_taken_by_a_local_account_is_refused(site: Site) -> None:
    add_user(site.db, "dave")
    http = requests.Session()
    resp = http.get(op.login(http, site.url, "dave"), allow_redirects=False, timeout=10)
    assert resp.status_code == 409
    assert "an administrator must link it" in _message(resp)
    assert site.whoami(http) is None and site.user("dave").auth_backend == "local"


def test_an_unusable_user_name_claim_is_refused(site: Site) -> None:
    http = requests.Session()
    resp = http.get(op.login(http, site.url, "frank"), allow_redirects=False, timeout=10)
    assert resp.status_code == 403
    assert "is not usable here" in _message(resp)
    assert site.whoami(http) is None and site.user("frank smith") is None


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_browser_login_and_logout(site: Site) -> None:
    """A person's way: the button, the provider's form, the desktops page, logout."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context()
            # nothing leaves the machine (the provider and the front are on loopback)
            context.route("**/*", lambda route: route.continue_()
                          if urlsplit(route.request.url).hostname == "127.0.0.1"
                          else route.abort())
            page = context.new_page()
            page.goto(site.url + "/")
            assert "/login" in page.url
            page.click("text=Log in with Test IdP")
            page.wait_for_url(site.provider.issuer + "/interaction/**")
            page.fill("#username", "erin")
            page.fill("#password", op.USERS["erin"]["password"])
            page.click("#kc-login")
            page.wait_for_url(site.url + "/")
            assert page.locator("h1").inner_text() == "Desktops"
            assert page.locator("header a[title=Account]").inner_text() == "erin"
            assert site.user("erin").auth_backend == "oidc"

            page.click("form[action='/logout'] button")
            page.wait_for_url(site.provider.issuer + "/session/end**")
            page.click("button[name=logout]")
            page.wait_for_url(site.url + "/login")
            assert page.locator("a.sso").inner_text() == "Log in with Test IdP"
            page.goto(site.url + "/")
            assert "/login" in page.url  # the session here ended
            page.click("text=Log in with Test IdP")  # and the provider's: its form again
            page.wait_for_selector("#kc-form-login")
        finally:
            browser.close()


def test_logout_ends_the_provider_session_too(site: Site) -> None:
    http = _login(site, "alice")
    csrf = http.get(site.url + "/api/v1/session", timeout=10).json()["csrf_token"]
    resp = http.post(site.url + "/logout", data={"csrf_token": csrf}, allow_redirects=False,
                     timeout=10)
    assert resp.status_code == 302
    end = resp.headers["Location"]
    query = parse_qs(urlsplit(end).query)
    assert end.startswith(site.provider.issuer + "/session/end?")
    assert query["post_logout_redirect_uri"] == [site.url + "/login"]
    assert query["id_token_hint"][0].count(".") == 2
    assert site.whoami(http) is None
    confirm = http.get(end, timeout=10)
    action = re.search(r'<form id="op.logoutForm" method="post" action="([^"]+)"', confirm.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
    assert action and xsrf, confirm.text[:800]
    resp = http.post(requests.compat.urljoin(confirm.url, action.group(1)), timeout=10,
                     data={"xsrf": xsrf.group(1), "logout": "yes"}, allow_redirects=False)
    for _ in range(3):
        if not resp.headers.get("Location", "").startswith(site.provider.issuer):
            break
        resp = http.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    assert resp.headers["Location"] == site.url + "/login"
    # the provider asks for the password again: its session ended as well
    start = http.get(site.url + "/login/oidc", allow_redirects=False, timeout=10)
    page = http.get(start.headers["Location"], timeout=10)
    assert 'id="kc-form-login"' in page.text


def test_provider_down_gives_a_clear_page(tmp_path: Path, sqlite_db: Database) -> None:
    closed = f"http://127.0.0.1:{op.free_port()}"
    app = create_app(front_config(tmp_path, sqlite_db.url, closed), sqlite_db)
    client = app.test_client()
    resp = client.get("/login/oidc")
    assert resp.status_code == 503
    body = resp.get_data(as_text=True)
    assert "cannot be reached right now" in body and 'name="password"' in body
    add_user(sqlite_db, "local-admin", admin=True, password="correct horse battery")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)
    resp = client.post("/login", data={"name": "local-admin", "csrf_token": csrf,
                                       "password": "correct horse battery"})
    assert resp.status_code == 302  # local accounts still log in


def test_provider_down_between_redirect_and_callback(tmp_path: Path,
                                                     sqlite_db: Database) -> None:
    port = op.free_port()
    url = f"http://127.0.0.1:{port}"
    provider = op.start(tmp_path, [url])
    server = make_server("127.0.0.1", port, create_app(
        front_config(tmp_path, sqlite_db.url, provider.issuer), sqlite_db), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        http = requests.Session()
        callback = op.login(http, url, "alice")
        provider.stop()
        resp = http.get(callback, allow_redirects=False, timeout=30)
        assert resp.status_code == 503
        assert "cannot be reached right now" in _message(resp)
    finally:
        provider.stop()
        server.shutdown()
        thread.join(5)


def test_a_provider_with_new_keys_under_the_same_key_id(tmp_path: Path,
                                                        sqlite_db: Database) -> None:
    """The provider replaced its signing key but kept the key id: the front fetches the
    JWKS again and the next login works (found by the molecule e2e: a restarted provider)."""
    port = op.free_port()
    url = f"http://127.0.0.1:{port}"
    provider = op.start(tmp_path, [url], kid="fixed")
    server = make_server("127.0.0.1", port, create_app(
        front_config(tmp_path, sqlite_db.url, provider.issuer), sqlite_db), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _login(Site(url, sqlite_db, provider, 0), "alice")
        provider.stop()
        provider = op.start(tmp_path, [url], port=int(provider.issuer.rsplit(":", 1)[1]),
                            kid="fixed")
        http = _login(Site(url, sqlite_db, provider, 0), "alice")
        assert http.get(url + "/api/v1/session", timeout=10).json()["user"]["name"] == "alice"
    finally:
        provider.stop()
        server.shutdown()
        thread.join(5)


def test_local_login_can_be_hidden(tmp_path: Path, sqlite_db: Database) -> None:
    app = create_app(front_config(tmp_path, sqlite_db.url, "https://id.example.org/realms/x",
                                  local_login=False), sqlite_db)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "Log in with Test IdP" in page and 'name="password"' not in page
    assert 'name="password"' in client.get("/login?local=1").get_data(as_text=True)
    # without auth.oidc there is no button and no route
    conf = config_dict(tmp_path, sqlite_db.url, "")
    del conf["auth"]
    plain = create_app(rconfig.from_dict(conf), sqlite_db).test_client()
    assert "Log in with" not in plain.get("/login").get_data(as_text=True)
    assert plain.get("/login/oidc").status_code == 404


@pytest.mark.parametrize("over, key", [
    ({"issuer": "http://id.example.org"}, "auth.oidc.issuer: must be https://"),
    ({"issuer": "ftp://id.example.org"}, "auth.oidc.issuer: expected https://"),
    ({"issuer": "https://id.example.org/?x=1"}, "auth.oidc.issuer: no query"),
    ({"client_id": ""}, "auth.oidc.client_id:"),
    ({"client_secret": ""}, "auth.oidc.client_secret:"),
    ({"scopes": ["profile"]}, "auth.oidc.scopes: must include openid"),
    ({"scopes": ["openid", "a b"]}, "auth.oidc.scopes[1]:"),
    ({"username_claim": ""}, "auth.oidc.username_claim:"),
    ({"groups_claim": "", "admin_group": "admins"}, "auth.oidc.admin_group:"),
    ({"label": ""}, "auth.oidc.label:"),
    ({"ca_file": "/nonexistent.pem"}, "auth.oidc.ca_file: no such file"),
    ({"timeout": 0}, "auth.oidc.timeout:"),
    ({"local_login": "no"}, "auth.oidc.local_login: expected true or false"),
    ({"client_secret_x": "a"}, "auth.oidc.client_secret_x"),
])
def test_config_errors_name_the_key(tmp_path: Path, over: dict[str, Any], key: str) -> None:
    conf = config_dict(tmp_path, "sqlite://", "https://id.example.org/realms/ravada")
    rconfig.from_dict(conf)  # the good one passes
    conf["auth"]["oidc"].update(over)
    with pytest.raises(rconfig.ConfigError) as err:
        rconfig.from_dict(conf)
    assert str(err.value).startswith(key), str(err.value)


def test_an_enrolled_second_factor_is_asked_after_the_provider(site: Site) -> None:
    """TOTP (ravada.front.totp) follows a provider login as it follows a password."""
    import time

    import pyotp

    http = _login(site, "carol")
    csrf = http.get(site.url + "/api/v1/session", timeout=10).json()["csrf_token"]
    secret = http.post(site.url + "/api/v1/totp", headers={"X-CSRFToken": csrf},
                       timeout=10).json()["secret"]
    first = pyotp.TOTP(secret).at(int(time.time()) - 30)
    assert http.post(site.url + "/api/v1/totp/confirm", json={"code": first},
                     headers={"X-CSRFToken": csrf}, timeout=10).status_code == 200
    again = requests.Session()
    resp = again.get(op.login(again, site.url, "carol"), allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/code")
    assert site.whoami(again) is None  # the provider alone signs nobody in
    page = again.get(site.url + "/login/code", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = again.post(site.url + "/login/code", data={"code": pyotp.TOTP(secret).now(),
                                                      "csrf_token": token},
                      allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and site.whoami(again)["name"] == "carol"
    # the provider's ID token came along: logout still ends the provider's session
    csrf = again.get(site.url + "/api/v1/session", timeout=10).json()["csrf_token"]
    out = again.post(site.url + "/logout", data={"csrf_token": csrf}, allow_redirects=False,
                     timeout=10)
    assert out.headers["Location"].startswith(site.provider.issuer + "/session/end?")
    with site.db.session() as s:  # leave carol as the other tests expect him
        s.execute(User.__table__.update().where(User.name == "carol").values(
            totp_secret=None, totp_enabled_at=None, totp_last_step=None))


def test_an_admin_links_a_local_account_to_single_sign_on(site: Site) -> None:
    gina = add_user(site.db, "gina")
    desk = add_machine(site.db, "gina-desk", gina)
    http = requests.Session()
    assert http.get(op.login(http, site.url, "gina"), allow_redirects=False,
                    timeout=10).status_code == 409
    admin = requests.Session()
    resp = admin.post(site.url + "/api/v1/session", json={"name": "admin", "password": PASSWORD},
                      timeout=10)
    csrf = {"X-CSRFToken": resp.json()["csrf_token"]}
    for bad in ({"auth_backend": "ldap"}, {"auth_backend": "oidc", "password": "x" * 12}):
        resp = admin.patch(f"{site.url}/api/v1/users/{gina}", json=bad, headers=csrf,
                           timeout=10)
        assert resp.status_code == 400 and resp.json()["detail"].startswith("auth_backend:")
    resp = admin.patch(f"{site.url}/api/v1/users/{gina}", json={"auth_backend": "oidc"},
                       headers=csrf, timeout=10)
    assert resp.status_code == 200 and resp.json()["auth_backend"] == "oidc", resp.text
    # the local password no longer works; the provider account now gets the same row
    resp = requests.post(site.url + "/api/v1/session", timeout=10,
                         json={"name": "gina", "password": PASSWORD})
    assert resp.status_code == 401
    linked = _login(site, "gina")
    assert site.whoami(linked)["id"] == gina
    row = site.user("gina")
    assert (row.auth_backend, row.oidc_subject, row.password_hash) == ("oidc", "gina", "")
    names = {m["name"] for m in linked.get(site.url + "/api/v1/machines", timeout=10).json()}
    assert "gina-desk" in names and desk


def test_a_renamed_provider_account_takes_no_other_row(site: Site) -> None:
    _login(site, "alice")  # binds the row alice to the provider account alice
    assert site.user("alice").oidc_subject == "alice"
    site.provider.set_claims("henry", {"preferred_username": "alice", "groups": ["x"]})
    site.provider.set_claims("alice", {"preferred_username": "alice2"})
    try:
        http = requests.Session()
        resp = http.get(op.login(http, site.url, "henry"), allow_redirects=False, timeout=10)
        assert resp.status_code == 409
        assert "belongs to another Test IdP account" in _message(resp)
        assert site.whoami(http) is None
        http = requests.Session()
        resp = http.get(op.login(http, site.url, "alice"), allow_redirects=False, timeout=10)
        assert resp.status_code == 409
        assert "already linked to the account alice" in _message(resp)
        assert site.user("alice2") is None
        row = site.user("alice")
        assert row.oidc_subject == "alice" and row.directory_groups == ["students"]
    finally:
        site.provider.set_claims("henry", op.USERS["henry"]["claims"])
        site.provider.set_claims("alice", op.USERS["alice"]["claims"])
