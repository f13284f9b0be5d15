"""Privilege separation on a converged host (issue 9, items 1, 4 and 5; testinfra).

The web account (``ravada``) reads the configuration but cannot change it; root's
ISO directory and the private screenshots; the units' sandbox and their
``systemd-analyze security`` exposure; Apache's 413 for an oversize body;
``/metrics`` and ``/healthz`` seen from the controller (outside) and from the host.
"""

from __future__ import annotations

import re

import pytest
import requests
from e2e.target import Target

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

AS_RAVADA = "setpriv --reuid=ravada --regid=ravada --init-groups"
WEB_UNITS = ("rvd_front", "rvd_console")
# Highest accepted `systemd-analyze security` exposure (0 best, 10 worst); measured on
# Debian 12 and 13 they are well below (docs/configuration.md has the figures).
MAX_EXPOSURE = {"rvd_front": 2.0, "rvd_console": 2.0, "rvd_back": 3.5}
WEB_SANDBOX = {
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
    "ReadWritePaths": "/var/lib/ravada", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}
BACK_SANDBOX = {
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "NoNewPrivileges": "yes", "ProtectKernelModules": "yes", "RestrictNamespaces": "yes",
    "CapabilityBoundingSet": "cap_chown cap_dac_override cap_fowner cap_net_admin cap_net_raw",
}


def _show(host, unit: str, keys: list[str]) -> dict[str, str]:
    """``systemctl show`` values; lists (capabilities, address families) sorted."""
    out = host.check_output(f"systemctl show {unit} -p {','.join(keys)}")
    shown = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for key in ("CapabilityBoundingSet", "RestrictAddressFamilies"):
        if key in shown:
            shown[key] = " ".join(sorted(shown[key].split()))
    return shown


def test_config_is_root_owned_and_readable_by_ravada(host):
    conf = host.file("/etc/ravada.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "ravada", 0o640)
    assert host.run(f"{AS_RAVADA} test -r /etc/ravada.conf").rc == 0
    assert host.run(f"{AS_RAVADA} test -w /etc/ravada.conf").rc != 0


def test_iso_dir_is_roots_and_holds_no_links(host):
    isos = host.file("/var/lib/ravada/isos")
    assert (isos.user, isos.group, isos.mode) == ("root", "root", 0o755)
    ipxe = host.file("/var/lib/ravada/isos/ipxe.iso")
    assert ipxe.is_file and not ipxe.is_symlink and ipxe.user == "root"
    assert host.run(f"{AS_RAVADA} touch /var/lib/ravada/isos/x.iso").rc != 0


def test_iso_staging_dir_is_the_web_accounts_alone(host):
    """Uploads are staged where the web account writes; only rvd_back fills the ISO dir."""
    staging = host.file("/var/lib/ravada/iso-staging")
    assert staging.is_directory and not staging.is_symlink
    assert (staging.user, staging.group, staging.mode) == ("ravada", "ravada", 0o700)
    assert host.run(f"{AS_RAVADA} sh -c 'touch /var/lib/ravada/iso-staging/probe && "
                    "rm /var/lib/ravada/iso-staging/probe'").rc == 0
    conf = host.check_output("grep -E '^ *iso_staging_dir:' /etc/ravada.conf")
    assert conf.split(":", 1)[1].strip() == "/var/lib/ravada/iso-staging"


def test_screenshots_are_private(host):
    shots = host.file("/var/lib/ravada/screenshots")
    assert (shots.user, shots.group, shots.mode) == ("root", "ravada", 0o2750)
    for png in host.check_output("find /var/lib/ravada/screenshots -type f").split():
        f = host.file(png)
        assert (f.group, f.mode) == ("ravada", 0o640), png


@pytest.mark.parametrize("unit", WEB_UNITS)
def test_web_units_are_sandboxed(host, unit):
    shown = _show(host, unit, [*WEB_SANDBOX, "User", "ExecStart", "PrivateUsers"])
    assert shown["User"] == "ravada"
    assert {k: shown.get(k) for k in WEB_SANDBOX} == WEB_SANDBOX
    assert shown["PrivateUsers"] == "yes"
    assert "--config-required" in shown["ExecStart"]


def test_back_unit_is_sandboxed(host):
    shown = _show(host, "rvd_back", [*BACK_SANDBOX, "ExecStart", "ReadWritePaths"])
    assert {k: shown.get(k) for k in BACK_SANDBOX} == BACK_SANDBOX
    assert "--config-required" in shown["ExecStart"]
    assert "/var/lib/ravada" in shown["ReadWritePaths"].split()


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_systemd_analyze_exposure(host, unit):
    out = host.check_output(f"systemd-analyze security --no-pager {unit}.service")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert m, out[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE[unit], out


@pytest.mark.parametrize("prog", ["rvd_back", "rvd_front", "rvd_console"])
def test_daemons_refuse_an_empty_config(host, prog):
    result = host.run(f"/opt/ravada/venv/bin/{prog} --config-required --config /dev/null")
    assert result.rc != 0
    assert "/dev/null: the file is empty" in result.stderr


def test_apache_answers_413_for_an_oversize_body(host):
    code = ("import ssl,urllib.request,urllib.error;"
            "c=ssl._create_unverified_context();"
            "r=urllib.request.Request('https://127.0.0.1/api/v1/session',data=b'x'*1153434,"
            "headers={'Content-Type':'application/json'});\n"
            "try: urllib.request.urlopen(r,context=c,timeout=30)\n"
            "except urllib.error.HTTPError as e: print(e.code)")
    result = host.run(f"python3 -c \"{code}\"")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "413"


def test_metrics_from_the_host(host):
    out = host.check_output("python3 -c \"import ssl,urllib.request;"
                            "c=ssl._create_unverified_context();"
                            "print(urllib.request.urlopen('https://127.0.0.1/metrics',"
                            "context=c,timeout=20).read().decode())\"")
    assert "ravada_machines" in out


@pytest.fixture(scope="module")
def outside(host) -> Target:
    return Target.from_host(host)


def test_metrics_and_healthz_from_outside(outside):
    base = f"https://{outside.ip}"
    r = requests.get(f"{base}/metrics", verify=False, timeout=20)
    assert r.status_code == 403 and "ravada_" not in r.text
    # A forged X-Forwarded-For does not make the controller a loopback client.
    r = requests.get(f"{base}/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                     verify=False, timeout=20)
    assert r.status_code == 403
    h = requests.get(f"{base}/healthz", verify=False, timeout=20)
    assert h.status_code in (200, 503) and set(h.json()) == {"status"}
    token = outside.var("rvd_front_metrics_token")
    assert token, "the molecule inventory sets rvd_front_metrics_token"
    r = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"},
                     verify=False, timeout=20)
    assert r.status_code == 200 and "ravada_machines" in r.text
    r = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}x"},
                     verify=False, timeout=20)
    assert r.status_code == 403
