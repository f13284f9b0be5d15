"""Two-factor login on the platform that requires it for admins (molecule.yml host_vars).

The admin was enrolled by ``e2e/admin.py`` (the first test module that needed the admin);
here the password alone is refused, a code computed from the enrolled secret logs in,
and the same code is refused the second time.
"""

from __future__ import annotations

import pytest
from e2e import admin as admin_mod
from e2e import api as api_mod
from e2e.target import Target

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def test_admin_logs_in_with_a_code_from_the_enrolled_secret(host):
    target = Target.from_host(host)
    if not admin_mod.needs_code(target):
        pytest.skip(f"rvd_totp_required_for is none on {target.name} (debian13 requires it)")
    assert "required_for: admins" in target.run("cat /etc/ravada.conf").stdout
    admin_mod.admin_api(target)  # enrolled (once per scenario)
    name, password = target.var("rvd_admin_user"), target.var("rvd_admin_password")
    creds = {"name": name, "password": password}
    alone = api_mod.Api(target.ip).call("POST", api_mod.PREFIX + "/session", ok=(401,),
                                        json=creds)
    assert alone.json()["reason"] == "totp_required"
    code = admin_mod.fresh_code(target)
    session = api_mod.Api(target.ip).login(name, password, code=code)
    me = next(u for u in session.get("/users") if u["name"] == name)  # an admin call
    assert me["totp_enabled"] is True
    again = api_mod.Api(target.ip).call("POST", api_mod.PREFIX + "/session", ok=(401,),
                                        json={**creds, "code": code})
    assert again.json()["reason"] == "totp_invalid"
