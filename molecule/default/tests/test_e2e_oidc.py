"""Single sign-on end to end (issue 13): a real OpenID provider, Apache, a browser.

The inventory (molecule.yml) points the rvd role at an issuer on the controller's address
on docker's bridge (``rvd_oidc_issuer``) and gives it the molecule test CA
(``rvd_oidc_ca_file``, made by prepare_ldap.yml). This test runs that provider there --
npm's oidc-provider on the controller's nodejs (runtime/tests/oidc_provider.py), over
https with a certificate from the same CA -- and drives Debian's chromium: the login
page's "Log in with <label>" button, the provider's form, back through Apache to
/login/oidc/callback (the deployed rvd_front exchanges the code and verifies the ID token
over https), the desktops page as the new user with the groups of the claim, and logout through the provider's end-session endpoint back to the login page.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e import admin as admin_mod
from e2e.browser import chromium, new_page
from e2e.target import Target

RUNTIME_TESTS = Path(__file__).resolve().parents[3] / "runtime" / "tests"
sys.path.insert(0, str(RUNTIME_TESTS))
import oidc_provider as op  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _certificate(ca_file: Path, ip: str, out: Path) -> tuple[Path, Path]:
    """A server certificate for ``ip`` signed by the molecule test CA (key beside it)."""
    key, csr, cert, san = (out / n for n in ("idp.key", "idp.csr", "idp.pem", "san.cnf"))
    san.write_text(f"subjectAltName=IP:{ip}\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
                    "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_file),
                    "-CAkey", str(ca_file.with_name("ca.key")), "-CAcreateserial",
                    "-days", "2", "-extfile", str(san), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def provider(host, tmp_path: Path) -> Iterator[tuple[Target, op.Provider]]:  # type: ignore[no-untyped-def]
    target = Target.from_host(host)
    issuer = target.var("rvd_oidc_issuer")
    assert issuer, "the inventory lacks rvd_oidc_issuer (molecule.yml)"
    parts = urlsplit(issuer)
    assert parts.hostname == target.controller_ip(), (issuer, target.controller_ip())
    cert, key = _certificate(Path(target.var("rvd_oidc_ca_file")), parts.hostname, tmp_path)
    idp = op.start(tmp_path, [f"https://{target.ip}"], host=parts.hostname, port=parts.port,
                   tls=(cert, key), client_secret=target.var("rvd_oidc_client_secret"))
    try:
        yield target, idp
    finally:
        idp.stop()


def test_single_sign_on_through_apache(provider) -> None:  # type: ignore[no-untyped-def]
    target, idp = provider
    site = f"https://{target.ip}"
    label = target.var("rvd_oidc_label")
    with chromium() as browser:
        page = new_page(browser)
        page.goto(site + "/")
        assert "/login" in page.url
        page.click(f"text=Log in with {label}")
        page.wait_for_url(idp.issuer + "/interaction/**")
        page.fill("#username", "olga")
        page.fill("#password", op.USERS["olga"]["password"])
        page.click("#kc-login")
        try:
            page.wait_for_url(site + "/", timeout=60000)
        except Exception:  # say where the browser ended up, and what that page says
            raise AssertionError(f"{page.url}: {page.inner_text('body')[:1500]}") from None
        assert page.locator("h1").inner_text() == "Desktops"
        assert page.locator("header a[title=Account]").inner_text() == "olga"
        assert page.locator("header a", has_text="Machines").count() == 0  # not an admin

        admin = admin_mod.admin_api(target)
        row = next(u for u in admin.get("/users") if u["name"] == "olga")
        assert row["auth_backend"] == "oidc" and row["is_admin"] is False
        assert row["directory_groups"] == ["vdi-students"]

        page.click("form[action='/logout'] button")
        page.wait_for_url(idp.issuer + "/session/end**")
        page.click("button[name=logout]")
        page.wait_for_url(site + "/login")
        page.goto(site + "/")
        assert "/login" in page.url
