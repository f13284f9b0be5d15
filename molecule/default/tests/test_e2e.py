"""End-to-end acceptance test (issue #5): a user gets a real desktop from the deployed stack.

Runs in molecule verify on every converged container, from the controller:
HTTPS to the container's IP (Apache on 443) for everything the admin and the
user do, real display clients on the controller (remote-viewer under Xvfb,
vncdotool, headless Chromium), network namespaces on the docker bridge as
other workstations, and testinfra (``host``) to look inside the container
(virsh, iptables, the saved image). Nothing writes to the product's database.

The tests form one story and run in file order; each needs the ones before it
(a failed step skips the rest of its story with the reason).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from e2e import admin as admin_mod
from e2e import api as api_mod
from e2e import images, netns, saveimage, spice, vnc, xdisplay
from e2e.target import Target, record_timing

BASE_NAME = "e2e-base"
DESKTOP_BASE = "debian-desktop"  # rvd_demo_image, registered by the rvd role
USER_NAME = "e2e-user"
USER_PASSWORD = "e2e-user-password-7Q"
OTHER_IP = "172.17.250.2/16"  # "someone else" on the bridge: no rule for them
ISO = "ipxe.iso"
SAVE_FORMATS = {v: k for k, v in saveimage.FORMATS.items()}
# The server's certificate is the apache role's self-signed default.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


class Story:
    """State shared by the steps of one host's story; a failed step stops the rest."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.failed: str | None = None
        self.data: dict[str, Any] = {}

    def need(self, *keys: str) -> list[Any]:
        if self.failed:
            pytest.skip(f"an earlier step failed: {self.failed}")
        missing = [k for k in keys if k not in self.data]
        if missing:
            pytest.skip(f"needs {missing} from an earlier step")
        return [self.data[k] for k in keys]


@pytest.fixture(scope="module")
def target(host) -> Target:
    return Target.from_host(host)


@pytest.fixture(scope="module")
def story(target) -> Story:
    return Story(target)


@pytest.fixture(autouse=True)
def _stop_story_on_failure(request, story):
    """A failed step stops the story (the call report is counted before teardown)."""
    before = request.session.testsfailed
    yield
    if request.session.testsfailed > before and story.failed is None:
        story.failed = request.node.name


@pytest.fixture(scope="module")
def admin(target) -> api_mod.Api:
    client = api_mod.Api(target.ip)
    resp = client.call("GET", f"{api_mod.PREFIX}/openapi.json", ok=(200, 404, 502, 503))
    if resp.status_code == 404:
        pytest.skip(f"rvd_front on {target.name} serves no /api/v1 (issue #3 not deployed)")
    assert resp.status_code == 200, (
        f"rvd_front behind Apache on {target.name} answers {resp.status_code}: "
        "see `journalctl -u rvd_front` in the container")
    return admin_mod.admin_api(target)  # automation: a bearer token (+ TOTP where required)


@pytest.fixture(scope="module")
def user(target, admin) -> api_mod.Api:
    try:
        admin.create_user(USER_NAME, USER_PASSWORD)
    except api_mod.ApiError as exc:
        if exc.status != 409:  # already there from an earlier verify run
            raise
    return api_mod.Api(target.ip).login(USER_NAME, USER_PASSWORD)  # a session + CSRF token


def _by_name(machines: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((m for m in machines if m["name"] == name), None)


def _domain_xml(target: Target, name: str) -> str:
    return target.run("virsh -q dumpxml %s", name).stdout


def _wrong(password: str) -> str:
    """A different password of the same length (VNC compares only 8 characters)."""
    return ("x" if password[0] != "x" else "y") + password[1:]


def _viewer_port(display: dict[str, Any]) -> int:
    """The SPICE port opened to viewers: the TLS one when SPICE-TLS is on."""
    spice_info = display.get("spice") or {}
    return int(spice_info.get("tls_port") or spice_info.get("port") or 0)


def _established(target: Target, port: int) -> list[str]:
    """Peers (``ip:port``) of the server's established TCP connections on local ``port``."""
    out = target.run("ss -Htn state established '( sport = :%s )'", str(port)).stdout
    return [line.split()[-1] for line in out.splitlines() if line.strip()]


def _wait_port(ip: str, port: int, timeout: float) -> float:
    """Seconds until ``ip:port`` accepts a TCP connection from the controller."""
    start = time.monotonic()
    xdisplay.wait_until(lambda: netns.connect(ip, port, timeout=1.0) == "open", timeout,
                        interval=0.05, what=f"{ip}:{port} accepting connections")
    return time.monotonic() - start


# ---------------------------------------------------------------------- 1. admin


def test_admin_makes_a_public_base_from_the_ipxe_iso(story, target, admin, user):
    """Admin: create from the ISO (with a blank disk), prepare as a base, publish — all via API."""
    # A clone left by an earlier verify run would turn the user's click into a plain start.
    for m in admin.machines():
        if m["name"] != BASE_NAME and m.get("owner") == USER_NAME:
            if m["state"] in ("running", "paused"):
                admin.done(admin.action(m["id"], "force_shutdown"))
            admin.done(admin.action(m["id"], "remove"))
    base = _by_name(admin.machines(), BASE_NAME)
    if base is None:
        assert ISO in admin.isos(), f"{ISO} missing from the ISO list (rvd_demo_iso)"
        rid = admin.create_machine(name=BASE_NAME, iso=ISO, memory_mb=256, vcpus=1, disk_gb=1)
        admin.done(rid)
        base = _by_name(admin.machines(), BASE_NAME)
        assert base is not None and base["iso"] == ISO
        assert "ipxe.iso" in _domain_xml(target, BASE_NAME)
    if not base["is_base"]:
        admin.done(admin.action(base["id"], "prepare_base"))
    admin.set_public(base["id"], True)
    base = admin.machine(base["id"])
    assert base["is_base"] and base["is_public"], base
    assert any(b["id"] == base["id"] for b in user.bases()), "the user does not see the base"
    story.data["base_id"] = base["id"]


def test_the_debian_desktop_is_offered_prepared_and_public(target, admin, user):
    """The role (rvd_demo_image) made the desktop image a public base with a guest agent."""
    base = _by_name(admin.machines(), DESKTOP_BASE)
    assert base is not None, f"no base {DESKTOP_BASE} (rvd_demo_image not deployed?)"
    assert base["is_base"] and base["is_public"], base
    assert base["description"] == "Debian desktop", base
    assert any(b["id"] == base["id"] for b in user.bases()), "the user does not see the desktop"
    xml = _domain_xml(target, DESKTOP_BASE)
    assert "org.qemu.guest_agent.0" in xml and ".base.qcow2" in xml, xml


# ---------------------------------------------------------------------- 2. user


def test_user_click_gives_a_running_kvm_desktop(story, target, user):
    """The user's "Start" → a running KVM guest with display info; time click → port open."""
    (base_id,) = story.need("base_id")
    t0 = time.monotonic()
    click = user.start_base(base_id)
    req = user.done(click["request_id"], timeout=180)
    t_done = time.monotonic() - t0
    result = req["result"]
    machine_id = click.get("machine_id") or result.get("machine_id")
    display = result.get("display") if isinstance(result.get("display"), dict) else result
    assert display.get("password") and _viewer_port(display), result
    port = _viewer_port(display)
    t_port = t_done + _wait_port(target.ip, port, timeout=60)
    machine = user.machine(machine_id)
    assert machine["state"] == "running", machine
    name = machine["name"]
    info = target.run("virsh dominfo %s", name).stdout
    assert "running" in info, info
    xml = _domain_xml(target, name)
    assert "<domain type='kvm'" in xml, xml[:300]
    if display["spice"].get("tls_port"):  # SPICE-TLS on: every channel on the TLS port
        assert f"tlsPort='{port}'" in xml, "display info port is not the domain's TLS port"
        assert "defaultMode='secure'" in xml, xml
        assert display["spice"]["port"] is None, display  # no plain SPICE port at all
    else:
        assert f"port='{port}'" in xml, "display info port is not the domain's spice port"
    command = req["command"]
    timing = {"command": command, "click_to_request_done_s": round(t_done, 3),
              "click_to_display_port_open_s": round(t_port, 3),
              "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    record_timing(target.name, timing)
    print(f"\n[{target.name}] click -> running desktop with an open display port: "
          f"{t_port:.2f} s (request done after {t_done:.2f} s, command {command})")
    story.data.update(machine_id=machine_id, name=name, display=display)


# ---------------------------------------------------------------------- 3. clients


def test_spice_vv_opens_in_remote_viewer(story, target, user, tmp_path):
    (machine_id,) = story.need("machine_id")
    vv_text = user.vv_file(machine_id)
    fields = spice.read_vv(vv_text)
    assert fields["type"] == "spice" and fields.get("password"), fields
    # The scenario deploys SPICE-TLS (spice_tls role): the .vv has the TLS port only, the
    # deployment's CA and every channel secure.
    assert fields.get("tls-port") and "port" not in fields, fields
    assert fields.get("ca", "").startswith("-----BEGIN CERTIFICATE-----"), fields
    assert fields.get("secure-channels") == "all", fields
    ca = target.run("cat /etc/ravada/spice-ca.pem").stdout.strip()
    assert fields["ca"].replace("\\n", "\n").strip() == ca
    port = int(fields["tls-port"])
    shot = target.artifact("spice")
    with xdisplay.Xvfb() as x:
        view = spice.view(x, vv_text, tmp_path, shot, timeout=45,
                          while_connected=lambda: _established(target, port))
    assert view.stats.bright_pixels >= spice.MIN_BRIGHT_PIXELS, view
    # On the server: remote-viewer's channels are established on the TLS port, from us.
    peers = view.while_connected or []
    assert any(p.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:") == target.controller_ip()
               for p in peers), f"no connection from the controller on port {port}: {peers}"
    print(f"\n[{target.name}] remote-viewer painted the guest in {view.seconds:.2f} s "
          f"over port {port} ({len(peers)} channels): {shot}")


def _vnc_client_prefix(target: Target) -> tuple[tuple[str, ...], Any]:
    """Where a VNC client may connect from: here with direct VNC, else an admin workstation."""
    if target.var("rvd_display_direct_vnc", False):
        return (), None
    admin_ip = target.var("ravada_e2e_admin_workstation") or target.var(
        "firewall_admin_workstations")[0]
    netns.remove_stale()
    ns = netns.BridgeNamespace("v", f"{admin_ip}/16").create()
    return ("ip", "netns", "exec", ns.name), ns


def test_vnc_one_time_password(story, target, user, tmp_path):
    (machine_id,) = story.need("machine_id")
    info = user.open_display(machine_id)
    port = int(info["vnc"]["port"])
    shot = target.artifact("vnc")
    password = info["vnc"].get("password") or info["password"]  # VNC allows 8 characters
    prefix, ns = _vnc_client_prefix(target)
    try:
        good = vnc.capture(target.ip, port, password, shot, prefix=prefix)
        assert good.ok, good
        stats = images.stats(shot)
        assert stats.is_picture(), stats
        wrong = vnc.capture(target.ip, port, _wrong(password), tmp_path / "wrong.png",
                            prefix=prefix)
        assert wrong.refused, wrong
    finally:
        if ns is not None:
            ns.delete()
    story.data["vnc_expiry"] = (info["expires"], password, port)


def test_vnc_password_refused_after_expiry(story, target, tmp_path):
    ((expires, password, port),) = story.need("vnc_expiry")
    when = datetime.fromisoformat(expires)
    lifetime = int(target.var("rvd_display_password_lifetime", 60))
    wait = (when - datetime.now(UTC)).total_seconds() + 1.5
    assert wait <= lifetime + 5, f"password expires in {wait:.0f}s, lifetime is {lifetime}s"
    if wait > 0:
        time.sleep(wait)  # one wait for a deadline the product announced, no polling
    prefix, ns = _vnc_client_prefix(target)
    try:
        late = vnc.capture(target.ip, port, password, tmp_path / "late.png", prefix=prefix)
    finally:
        if ns is not None:
            ns.delete()
    assert late.refused, f"expired password still accepted ({expires}): {late}"


def test_browser_console_shows_the_guest(story, target, tmp_path):
    """Log in on the web page, open the desktop's page, click "Open in browser"."""
    (machine_id,) = story.need("machine_id")
    from e2e import browser  # Playwright is imported only where it is used

    base = f"https://{target.ip}"
    with browser.chromium() as b:
        page = browser.new_page(b)
        page.goto(f"{base}/login")
        page.fill("input[name=name]", USER_NAME)
        page.fill("input[name=password]", USER_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        page.goto(f"{base}/machine/{machine_id}")
        page.click("#browser-link")
        page.wait_for_url(f"**/machine/{machine_id}/console", timeout=30_000)
        png = browser.wait_canvas_png(page, lambda d: images.stats(d).is_picture(), timeout=45)
        page.screenshot(path=str(target.artifact("browser")))
        status = page.text_content("#console-status") or ""
    stats = images.stats(png)
    assert stats.is_picture(), stats
    (tmp_path / "canvas.png").write_bytes(png)
    print(f"\n[{target.name}] browser console: {status!r}, canvas {stats.width}x{stats.height}")


# ---------------------------------------------------------------------- 4. firewall


def _ports(display: dict[str, Any]) -> list[int]:
    ports = [display["spice"]["port"], display["spice"].get("tls_port"), display["vnc"]["port"]]
    return [int(p) for p in ports if p]


def test_firewall_display_reachable_only_from_the_user_and_admin_workstations(story, target,
                                                                               user):
    (machine_id,) = story.need("machine_id")
    display = user.open_display(machine_id)
    ports = _ports(display)
    # the user's ports: SPICE-TLS only when it is on (no plain SPICE), VNC only when direct
    mine = {_viewer_port(display)}
    if target.var("rvd_display_direct_vnc", False):
        mine.add(int(display["vnc"]["port"]))
    user_ip = target.controller_ip()
    chain = target.run("iptables -S %s", target.var("rvd_firewall_chain", "RAVADA")).stdout
    assert user_ip in chain, f"no rule for the user's IP {user_ip}:\n{chain}"
    admin_ip = target.var("ravada_e2e_admin_workstation") or target.var(
        "firewall_admin_workstations")[0]
    netns.remove_stale()
    with netns.BridgeNamespace("o", OTHER_IP) as other, \
            netns.BridgeNamespace("a", f"{admin_ip}/16") as adm:
        # The namespaces do reach the server (HTTPS), so a closed display port is the firewall.
        assert other.connect(target.ip, 443) == "open"
        for port in ports:
            wanted = "open" if port in mine else "not open"
            got = netns.connect(target.ip, port)
            assert (got == "open") == (port in mine), f"user {user_ip} -> {port}: {got}, {wanted}"
            assert other.connect(target.ip, port) != "open", f"{other.ip} reached {port}"
            assert adm.connect(target.ip, port) == "open", f"admin {adm.ip} -> {port}"
    # the same DROP for IPv6 (ip6tables), right after the RELATED,ESTABLISHED accept
    static6 = target.run("ip6tables -S RAVADA-STATIC").stdout
    assert "--ctstate RELATED,ESTABLISHED -j ACCEPT" in static6.splitlines()[1], static6
    assert static6.splitlines()[-1].endswith("-j DROP"), static6
    story.data["ports"] = ports
    story.data["user_ip"] = user_ip


# ---------------------------------------------------------------------- 5. hibernate


def test_hibernate_saves_a_bzip2_image_and_resume_brings_the_same_guest(story, target, user):
    machine_id, name = story.need("machine_id", "name")
    uuid = target.run("virsh domuuid %s", name).stdout.strip()
    user.done(user.action(machine_id, "hibernate"))
    assert user.machine(machine_id)["state"] == "hibernated"
    path = f"/var/lib/libvirt/qemu/save/{name}.save"
    raw = target.run("head -c %s %s | base64 -w0", str(saveimage.HEADER_SIZE), path).stdout
    header = saveimage.parse(base64.b64decode(raw))
    wanted = target.var("libvirt_save_image_format", "bzip2")
    assert header.format_name == wanted, header
    assert header.compressed == SAVE_FORMATS[wanted] and header.was_running, header
    click = user.start_base(story.data["base_id"])
    req = user.done(click["request_id"], timeout=120)
    assert req["command"] in ("start", "resume"), req
    assert target.run("virsh domuuid %s", name).stdout.strip() == uuid
    assert "running" in target.run("virsh domstate %s", name).stdout
    display = req["result"].get("display") or req["result"]
    _wait_port(target.ip, _viewer_port(display), timeout=30)


def test_shutdown_removes_the_users_firewall_rules(story, target, user):
    machine_id, user_ip = story.need("machine_id", "user_ip")
    user.done(user.action(machine_id, "force_shutdown"))
    assert user.machine(machine_id)["state"] == "shutdown"
    chain = target.run("iptables -S %s", target.var("rvd_firewall_chain", "RAVADA")).stdout
    assert user_ip not in chain, f"rules for {user_ip} left after shutdown:\n{chain}"

