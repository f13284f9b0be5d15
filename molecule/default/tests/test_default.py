"""What a converged Ravada server must look like (molecule verify, testinfra).

Runs on every host of the molecule inventory through the ansible connection.
"""

from __future__ import annotations

import re

import pytest

SERVICES = ["libvirtd", "mariadb", "apache2", "rvd_back", "rvd_front", "rvd_console",
            "ravada-firewall"]
PORT_MIN, PORT_MAX = 5900, 7000
ADMIN_WORKSTATION = "172.17.250.3"


@pytest.mark.parametrize("name", SERVICES)
def test_service_active_and_enabled(host, name):
    service = host.service(name)
    assert service.is_running, host.run(f"systemctl status {name} --no-pager -l").stdout
    assert service.is_enabled


def test_front_listens_on_loopback(host):
    assert host.socket("tcp://127.0.0.1:8081").is_listening
    assert not host.socket("tcp://0.0.0.0:8081").is_listening


def test_console_proxy_listens_on_loopback(host):
    assert host.socket("tcp://127.0.0.1:8082").is_listening


def test_apache_listens_on_443_and_80(host):
    assert host.socket("tcp://0.0.0.0:443").is_listening or host.socket("tcp://:::443").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening or host.socket("tcp://:::80").is_listening


def test_apache_configtest(host):
    result = host.run("apache2ctl configtest")
    assert result.rc == 0, result.stderr
    assert "Syntax OK" in result.stderr


def test_https_reaches_the_front(host):
    # Through Apache, as a browser would (self-signed certificate).
    result = host.run("python3 -c \"import ssl,urllib.request;"
                      "c=ssl._create_unverified_context();"
                      "r=urllib.request.urlopen('https://127.0.0.1/',context=c,timeout=20);"
                      "print(r.status)\"")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "200"


def test_http_redirects_to_https(host):
    result = host.run("python3 -c \"import http.client;"
                      "c=http.client.HTTPConnection('127.0.0.1',80,timeout=10);"
                      "c.request('GET','/login');r=c.getresponse();"
                      "print(r.status, r.getheader('Location'))\"")
    assert result.rc == 0, result.stderr
    status, location = result.stdout.split()
    assert status == "301"
    assert location.startswith("https://")


@pytest.mark.parametrize(("key", "value"), [
    ("save_image_format", '"bzip2"'),
    ("remote_display_port_min", str(PORT_MIN)),
    ("remote_display_port_max", str(PORT_MAX)),
    ("vnc_listen", '"0.0.0.0"'),
    ("spice_listen", '"0.0.0.0"'),
    ("spice_tls", "1"),
    ("spice_tls_x509_cert_dir", '"/etc/pki/libvirt-spice"'),
])
def test_qemu_conf(host, key, value):
    content = host.file("/etc/libvirt/qemu.conf").content_string
    lines = re.findall(rf"^{key}\s*=\s*(.*)$", content, re.MULTILINE)
    assert lines == [value]


def test_kvm_usable_by_qemu_user(host):
    kvm = host.file("/dev/kvm")
    assert kvm.group == "kvm"
    assert kvm.mode == 0o660
    assert "kvm" in host.user("libvirt-qemu").groups
    result = host.run("setpriv --reuid=libvirt-qemu --regid=kvm --init-groups "
                      "test -r /dev/kvm -a -w /dev/kvm")
    assert result.rc == 0, result.stderr


def test_storage_pool_active_and_autostarted(host):
    info = host.check_output("virsh -c qemu:///system pool-info default")
    assert re.search(r"State:\s+running", info)
    assert re.search(r"Autostart:\s+yes", info)


def _static_rules(host, binary="iptables"):
    return host.check_output(f"{binary} -w -S RAVADA-STATIC").splitlines()


@pytest.mark.parametrize("binary", ["iptables", "ip6tables"])
def test_firewall_rule_order(host, binary):
    rules = [r for r in _static_rules(host, binary) if r.startswith("-A ")]
    ports = f"--dport {PORT_MIN}:{PORT_MAX}"
    assert all(ports in r for r in rules), rules
    targets = [r.split(" -j ")[-1] for r in rules]
    # a live session survives the end of its opening: established first, then rvd_back's chain
    assert "--ctstate RELATED,ESTABLISHED" in rules[0] and targets[0] == "ACCEPT"
    assert targets[1] == "RAVADA"
    assert targets[-1] == "DROP"
    loopback = next(i for i, r in enumerate(rules) if "-i lo" in r)
    assert 1 < loopback < len(rules) - 1 and targets[loopback] == "ACCEPT"
    if binary == "iptables":  # the (IPv4) admin workstation is in the IPv4 rules only
        admin = next(i for i, r in enumerate(rules) if f"-s {ADMIN_WORKSTATION}/32" in r)
        assert 1 < admin < len(rules) - 1 and targets[admin] == "ACCEPT"
    else:
        assert not any(ADMIN_WORKSTATION in r for r in rules)


@pytest.mark.parametrize("binary", ["iptables", "ip6tables"])
def test_firewall_hooked_once_into_input(host, binary):
    input_rules = host.check_output(f"{binary} -w -S INPUT").splitlines()
    assert input_rules.count("-A INPUT -j RAVADA-STATIC") == 1
    assert "-N RAVADA" in host.check_output(f"{binary} -w -S RAVADA")


def test_firewall_reapply_keeps_rules_and_others(host):
    before = host.check_output("iptables -w -S; ip6tables -w -S")
    host.check_output("systemctl restart ravada-firewall")
    after = host.check_output("iptables -w -S; ip6tables -w -S")
    assert sorted(before.splitlines()) == sorted(after.splitlines())


def test_ravada_conf(host):
    conf = host.file("/etc/ravada.conf")
    assert conf.mode == 0o640
    assert conf.user == "root"
    assert conf.group == "ravada"
    content = conf.content_string
    assert "mysql+pymysql://ravada:" in content
    assert "spice_tls: true" in content
    assert "port_min: 5900" in content


def test_state_directory(host):
    state = host.file("/var/lib/ravada")
    assert state.is_directory
    assert state.user == "ravada"
    assert host.file("/var/lib/ravada/isos/ipxe.iso").exists


@pytest.mark.parametrize("path", [
    "/etc/pki/libvirt-spice/ca-cert.pem",
    "/etc/pki/libvirt-spice/server-cert.pem",
    "/etc/pki/libvirt-spice/server-key.pem",
    "/etc/ravada/spice-ca.pem",
])
def test_spice_tls_files(host, path):
    assert host.file(path).exists


def test_spice_server_key_readable_by_qemu(host):
    result = host.run("setpriv --reuid=libvirt-qemu --regid=kvm --init-groups "
                      "test -r /etc/pki/libvirt-spice/server-key.pem")
    assert result.rc == 0


def test_spice_server_cert_signed_by_ca(host):
    result = host.run("openssl verify -CAfile /etc/pki/libvirt-spice/ca-cert.pem "
                      "/etc/pki/libvirt-spice/server-cert.pem")
    assert result.rc == 0, result.stdout + result.stderr


def test_spice_ca_readable_by_ravada(host):
    assert host.run("setpriv --reuid=ravada --regid=ravada --init-groups "
                    "test -r /etc/ravada/spice-ca.pem").rc == 0


def test_db_password_file_root_only(host):
    f = host.file("/etc/ravada/db.password")
    assert f.user == "root" and f.mode == 0o600


@pytest.mark.parametrize("cmd", ["rvd_back", "rvd_front", "rvd_console"])
def test_commands_linked(host, cmd):
    link = host.file(f"/usr/local/bin/{cmd}")
    assert link.is_symlink
    assert link.linked_to == f"/opt/ravada/venv/bin/{cmd}"


def test_venv_uses_debian_libvirt(host):
    out = host.check_output("/opt/ravada/venv/bin/python -c "
                            "'import libvirt, ravada; print(libvirt.__file__)'")
    assert out.startswith("/usr/lib/python3/dist-packages/")


def test_rvd_back_list(host):
    result = host.run("rvd_back --list")
    assert result.rc == 0, result.stderr


def test_admin_exists_once(host):
    # Re-running --add-user must not create a second admin nor fail the role.
    result = host.run("printf molecule-admin-pw | rvd_back --add-user admin --password-file /dev/stdin --admin")
    assert result.rc == 1
    assert "already exists" in result.stderr


def test_hibernate_compressor_installed(host):
    # libvirt refuses managedsave when the save_image_format's program is missing.
    assert host.exists("bzip2")
