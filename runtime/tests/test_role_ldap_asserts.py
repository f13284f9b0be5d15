"""The rvd role refuses bad directory settings with an assert naming the variable.

Runs the role's ldap.yml (with the role's defaults) through ansible-playbook on
localhost in check mode: nothing on this machine changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: rvd
        tasks_from: ldap.yml
"""
GOOD: dict[str, Any] = {
    "rvd_auth_order": ["local", "ldap"], "rvd_ldap_uris": ["ldap://ldap.example.org"],
    "rvd_ldap_start_tls": True, "rvd_ldap_ca_file": __file__, "rvd_ldap_preset": "openldap",
    "rvd_ldap_user_base": "ou=people,dc=example,dc=org",
    "rvd_ldap_bind_dn": "cn=ravada,dc=example,dc=org", "rvd_ldap_bind_password": "x",
}


def play(tmp_path: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        ansible = Path(shutil.which("ansible-playbook") or "ansible-playbook")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({**GOOD, **extra}))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    return subprocess.run([str(ansible), "-i", "localhost,", "--check",
                           "-e", "ansible_python_interpreter=/usr/bin/python3", "-e",
                           f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("extra, variable", [
    ({"rvd_ldap_ca_file": ""}, "rvd_ldap_ca_file"),                     # StartTLS without CA
    ({"rvd_ldap_preset": "", "rvd_ldap_user_filter": "(uid=bob)"}, "rvd_ldap_user_filter"),
    ({"rvd_ldap_start_tls": False}, "rvd_ldap_start_tls"),              # ldap:// in clear
    ({"rvd_ldap_uris": ["ldaps://x"]}, "rvd_ldap_start_tls"),           # StartTLS on ldaps
    ({"rvd_ldap_uris": ["http://x"]}, "rvd_ldap_uris"),
    ({"rvd_ldap_bind_password": ""}, "rvd_ldap_bind_password"),
    ({"rvd_ldap_admin_group": "admins"}, "rvd_ldap_group_membership"),
    ({"rvd_auth_order": ["local", "kerberos"]}, "rvd_auth_order"),
])
def test_bad_combinations_fail_naming_the_variable(tmp_path: Path, extra: dict[str, Any],
                                                   variable: str) -> None:
    r = play(tmp_path, **extra)
    assert r.returncode != 0, r.stdout[-2000:]
    failed = [line for line in r.stdout.splitlines() if "msg" in line or "fatal" in line]
    assert any(variable + ":" in line for line in failed), r.stdout[-3000:]


def test_good_settings_pass_the_checks(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the role's apt task (check mode) needs root")
    # no CA to copy (its handler would restart services): verification off for this check
    r = play(tmp_path, rvd_ldap_ca_file="", rvd_ldap_tls_verify=False)
    assert r.returncode == 0, r.stdout[-3000:]
