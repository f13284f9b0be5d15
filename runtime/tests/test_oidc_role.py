"""The rvd role refuses bad single sign-on settings with an assert naming the variable,
and writes the auth.oidc section that rvd_front loads.

Runs the role's oidc.yml through ansible-playbook on localhost in check mode (nothing on
this machine changes), like test_role_ldap_asserts.py.
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
import yaml

import ravada.config as rconfig

REPO = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "rvd_oidc_issuer": "https://sso.example.org/realms/campus",
    "rvd_oidc_client_id": "ravada", "rvd_oidc_client_secret": "from-the-vault",
    "rvd_oidc_groups_claim": "groups", "rvd_oidc_admin_group": "vdi-admins",
    "rvd_oidc_label": "Campus account",
}


def play(tmp_path: Path, playbook: str, **variables: Any) -> subprocess.CompletedProcess[str]:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        ansible = Path(shutil.which("ansible-playbook") or "ansible-playbook")
    (tmp_path / "play.yml").write_text(playbook)
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    return subprocess.run([str(ansible), "-i", "localhost,", "--check",
                           "-e", "ansible_python_interpreter=/usr/bin/python3", "-e",
                           f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300)


PLAY = ("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: rvd\n        tasks_from: oidc.yml\n")


@pytest.mark.parametrize("extra, variable", [
    ({"rvd_oidc_issuer": "http://sso.example.org/realms/campus"}, "rvd_oidc_issuer"),
    ({"rvd_oidc_issuer": "https://sso.example.org/?x=1"}, "rvd_oidc_issuer"),
    ({"rvd_oidc_client_secret": ""}, "rvd_oidc_client_secret"),
    ({"rvd_oidc_scopes": ["profile"]}, "rvd_oidc_scopes"),
    ({"rvd_oidc_groups_claim": ""}, "rvd_oidc_admin_group"),
])
def test_bad_settings_fail_naming_the_variable(tmp_path: Path, extra: dict[str, Any],
                                               variable: str) -> None:
    r = play(tmp_path, PLAY, **{**GOOD, **extra})
    assert r.returncode != 0, r.stdout[-2000:]
    failed = [line for line in r.stdout.splitlines() if "msg" in line or "fatal" in line]
    assert any(variable + ":" in line for line in failed), r.stdout[-3000:]
    assert "from-the-vault" not in r.stdout


def test_the_role_writes_a_section_rvd_front_accepts(tmp_path: Path) -> None:
    """vars/main.yml's auth section, rendered by Ansible, passes the runtime's checks."""
    if os.geteuid() != 0:
        pytest.skip("the role's check-mode run needs root")
    out = tmp_path / "auth.yml"
    play_text = ("- hosts: localhost\n  connection: local\n  gather_facts: false\n"
                 f"  vars_files: ['{REPO}/roles/rvd/defaults/main.yml', "
                 f"'{REPO}/roles/rvd/vars/main.yml']\n  tasks:\n"
                 "    - ansible.builtin.copy:\n"
                 f"        dest: {out}\n        mode: '0600'\n"
                 "        content: '{{ {\"auth\": __rvd_config.auth} | to_nice_yaml }}'\n"
                 "      check_mode: false\n")
    r = play(tmp_path, play_text, **GOOD)
    assert r.returncode == 0, r.stdout[-3000:]
    section = yaml.safe_load(out.read_text())["auth"]
    assert section["oidc"]["client_secret"] == "from-the-vault"
    assert section["oidc"]["admin_group"] == "vdi-admins"
    cfg = rconfig.from_dict({"auth": section, "queue": {"socket": str(tmp_path / "q.sock")}})
    assert cfg.auth.oidc.issuer == GOOD["rvd_oidc_issuer"] and cfg.auth.oidc.local_login
