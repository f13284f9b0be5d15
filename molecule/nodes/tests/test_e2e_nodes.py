"""Hypervisor nodes end to end (issue 16): a broker and two nodes deployed by site.yml.

In order, as an operator and four users see it through the product (the API on the broker,
real libvirt/KVM in each container, real iptables, Chromium):

1. the three backends register and are up;
2. an admin makes a base from iPXE's ISO (a blank disk) and prepares it; the base reaches
   the two other hosts over libvirt TLS, byte for byte (sha256 of the volume on each host);
3. four users start desktops and they spread over the hosts by the rule (fewest running,
   then most free memory): every host gets one, none gets two more than another;
4. a desktop on a node: its display address and `.vv` name the node, its port opens to the
   user's address only;
5. the browser console (rvd_console on the broker) shows the guest of a node;
6. rvd_back stopped on a node: after the heartbeat timeout the node is down, its desktops
   show `unknown` and a new desktop lands elsewhere; restarted, its machines are reconciled
   (states from libvirt, its firewall chain rebuilt).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from cluster import broker, nodes
from e2e import api as api_mod
from e2e import images, netns, xdisplay

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ADMIN = ("admin", "molecule-admin-pw")
BASE = "nodes-ipxe"
ISO = "ipxe.iso"
USERS = [(f"nodeuser{i}", f"node-user-pw-{i}-{i}") for i in range(1, 6)]
OUTSIDER = "172.17.250.8/16"
MEMBERS = (broker, *nodes)
DATA: dict[str, Any] = {}


def _wait(pred, timeout: float, what: str, interval: float = 1.0) -> Any:
    return xdisplay.wait_until(pred, timeout, interval=interval, what=what)


@pytest.fixture(scope="module")
def admin() -> api_mod.Api:
    return api_mod.Api(broker.ip).login_token(*ADMIN)


def _user(admin: api_mod.Api, name: str, password: str) -> api_mod.Api:
    try:
        admin.create_user(name, password)
    except api_mod.ApiError as exc:
        if exc.status != 409:
            raise
    return api_mod.Api(broker.ip).login(name, password)


def _nodes(admin: api_mod.Api) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in admin.get("/nodes")}


def _where(domain: str, everywhere: bool = False) -> str | None:
    """The member whose libvirt runs (or, *everywhere*, has) *domain*: virsh, not the database."""
    flag = " --all" if everywhere else ""
    found = [m.name for m in MEMBERS
             if domain in m.sh(f"virsh -q list --name{flag}").stdout.split()]
    assert len(found) <= 1, f"{domain} runs on {found}"
    return found[0] if found else None


def _base_id(admin: api_mod.Api) -> int:
    base = next((b for b in admin.bases() if b["name"] == BASE), None)
    assert base, f"no base {BASE}: {admin.bases()}"
    return int(base["id"])


def _placement(request_id: int) -> dict[str, Any]:
    query = f"SELECT args FROM requests WHERE id={int(request_id)}"
    out = broker.sh(f"mysql -N --raw ravada -e '{query}'")
    return json.loads(out.stdout.strip() or "{}").get("placement") or {}


def _start(admin: api_mod.Api, name: str, password: str) -> dict[str, Any]:
    user = _user(admin, name, password)
    started = user.start_base(_base_id(admin))
    req = user.done(started["request_id"], timeout=240)
    result = req.get("result") or {}
    machine_id = int(started.get("machine_id") or result["machine_id"])
    machine = user.machine(machine_id)
    host = _wait(lambda: _where(machine["name"]), 60, f"{machine['name']} running somewhere")
    return {"user": user, "machine_id": machine_id, "name": machine["name"], "host": host,
            "placement": _placement(started["request_id"])}


def test_the_three_backends_register_and_are_up(admin):
    want = {m.name for m in MEMBERS}
    _wait(lambda: want <= {n for n, v in _nodes(admin).items() if v["state"] == "up"}, 90,
          "three nodes up")
    for name, node in _nodes(admin).items():
        member = next(m for m in MEMBERS if m.name == name)
        assert node["display_address"] == member.ip and node["cluster_address"] == member.ip


def _volume_sha256(member, pattern: str) -> dict[str, str]:
    out = member.sh(f"cd /var/lib/libvirt/images && sha256sum {pattern} 2>/dev/null || true")
    return {line.split()[1]: line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_a_base_prepared_on_one_host_reaches_the_others_with_equal_checksums(admin):
    base = next((m for m in admin.machines() if m["name"] == BASE), None)
    if base is None:
        assert ISO in admin.isos(), f"{ISO} missing (rvd_demo_iso)"
        admin.done(admin.create_machine(name=BASE, iso=ISO, memory_mb=256, vcpus=1, disk_gb=1))
        base = next(m for m in admin.machines() if m["name"] == BASE)
    if not base["is_base"]:
        admin.done(admin.action(base["id"], "prepare_base"), timeout=180)
    admin.set_public(base["id"], True)
    source = next(m for m in MEMBERS if m.name == _where(BASE, everywhere=True))
    started = time.monotonic()
    _wait(lambda: all(n["bases"] >= 1 for n in _nodes(admin).values()), 300,
          "the base ready on every node", interval=2.0)
    DATA["copy_seconds"] = round(time.monotonic() - started, 1)
    sums = {m.name: _volume_sha256(m, f"{BASE}*base*.qcow2") for m in MEMBERS}
    assert sums[source.name], f"no base volume on {source.name}"
    want = set(sums[source.name].values())
    for member in MEMBERS:
        assert sums[member.name], f"no copy of the base on {member.name}"
        assert set(sums[member.name].values()) == want, (member.name, sums)
    print(f"\n[nodes] base {BASE} prepared on {source.name}, on every host "
          f"{DATA['copy_seconds']} s later; sha256 {sorted(want)}")


def _remove_users_desktops(admin: api_mod.Api) -> None:
    """Desktops of an earlier verify run would turn the clicks into plain starts."""
    names = {u for u, _ in USERS}
    for m in admin.machines():
        if m.get("owner") in names and not m.get("is_base"):
            if m["state"] in ("running", "paused", "unknown"):
                admin.done(admin.action(m["id"], "force_shutdown"))
            admin.done(admin.action(m["id"], "remove"))


def test_four_desktops_spread_over_the_hosts_by_the_rule(admin):
    _remove_users_desktops(admin)
    started = [_start(admin, *USERS[i]) for i in range(4)]
    per_host = {m.name: 0 for m in MEMBERS}
    for s in started:
        per_host[s["host"]] += 1
        assert s["placement"].get("node") == s["host"], s["placement"]
        assert "fewest running" in s["placement"].get("reason", ""), s["placement"]
    assert min(per_host.values()) >= 1 and max(per_host.values()) - min(per_host.values()) <= 1, \
        per_host
    DATA["started"] = started


def test_a_desktop_on_a_node_names_the_node_and_opens_to_its_user_only(admin):
    started = DATA.get("started") or pytest.fail("no desktops from the previous test")
    on_node = next(s for s in started if s["host"] != broker.name)
    node = next(m for m in nodes if m.name == on_node["host"])
    user = on_node["user"]
    display = user.open_display(on_node["machine_id"])
    assert node.ip in json.dumps(display), display
    vv = user.vv_file(on_node["machine_id"])
    assert f"host={node.ip}" in vv, vv
    port = int((display.get("spice") or {}).get("tls_port") or display["spice"]["port"])
    chain = node.sh("iptables -S RAVADA").stdout
    assert f"--dport {port}" in chain, chain
    assert netns.connect(node.ip, port) == "open"  # the user's (the controller's) address
    with netns.BridgeNamespace("e", OUTSIDER) as other:
        assert other.connect(broker.ip, 443) == "open"
        assert other.connect(node.ip, port) == "timeout"
    DATA["on_node"] = on_node
    DATA["port"] = port


def test_the_browser_console_shows_a_nodes_guest(admin, tmp_path):
    on_node = DATA.get("on_node") or pytest.fail("no desktop on a node")
    from e2e import browser

    name, password = _owner(on_node)
    base = f"https://{broker.ip}"
    with browser.chromium() as b:
        page = browser.new_page(b)
        page.goto(f"{base}/login")
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        page.goto(f"{base}/machine/{on_node['machine_id']}")
        page.click("#browser-link")
        page.wait_for_url(f"**/machine/{on_node['machine_id']}/console", timeout=30_000)
        png = browser.wait_canvas_png(page, lambda d: images.stats(d).is_picture(), timeout=60)
    stats = images.stats(png)
    assert stats.is_picture(), stats
    (tmp_path / "node-console.png").write_bytes(png)


def _owner(desktop: dict[str, Any]) -> tuple[str, str]:
    index = DATA["started"].index(desktop)
    return USERS[index]


def test_a_stopped_node_is_avoided_and_reconciled_when_back(admin):
    started = DATA.get("started") or pytest.fail("no desktops")
    on_node = DATA["on_node"]
    node = next(m for m in nodes if m.name == on_node["host"])
    timeout = _nodes(admin)[node.name]["heartbeat_timeout"]
    node.sh("systemctl stop rvd_back")
    try:
        _wait(lambda: _nodes(admin)[node.name]["state"] == "down", timeout + 30,
              f"{node.name} down")
        # Down because its last heartbeat is older than its timeout, not sooner.
        beat = datetime.fromisoformat(_nodes(admin)[node.name]["heartbeat_at"].rstrip("Z"))
        age = (datetime.now(UTC).replace(tzinfo=None) - beat).total_seconds()
        assert age >= timeout - 1, f"down after {age:.1f} s without a heartbeat"
        mine = [s for s in started if s["host"] == node.name]
        _wait(lambda: all(admin.machine(s["machine_id"])["state"] == "unknown" for s in mine),
              30, "its machines unknown")
        fresh = _start(admin, *USERS[4])
        assert fresh["host"] != node.name, fresh
        assert fresh["placement"].get("node") != node.name
    finally:
        node.sh("systemctl start rvd_back")
    _wait(lambda: _nodes(admin)[node.name]["state"] == "up", 60, f"{node.name} up again")
    _wait(lambda: all(admin.machine(s["machine_id"])["state"] == "running" for s in mine), 60,
          "its machines running again (from libvirt)")
    # The node's chain is rebuilt from its machines' openings (the user's port again).
    _wait(lambda: f"--dport {DATA['port']}" in node.sh("iptables -S RAVADA").stdout, 30,
          "the node's RAVADA chain rebuilt")
