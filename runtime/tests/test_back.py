"""rvd_back's daemon and handlers on libvirt's test:///default driver, SQLite and MariaDB.

The daemon runs in a thread of the test process (it shares test:///default's state
with the ``virt`` Host below); requests go in through ravada.queue.submit.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import select

from ravada import config as rconfig
from ravada import queue
from ravada.back import handlers
from ravada.back.context import Context, Job
from ravada.back.daemon import Daemon
from ravada.db import Backend, Database, FirewallRule, Machine, Request, User, utcnow
from ravada.virt import Host, render_domain

POOL = "default-pool"


def make_config(tmp_path: Path, db_url: str, **queue_kw: Any) -> rconfig.Config:
    (tmp_path / "isos").mkdir(exist_ok=True)
    return rconfig.from_dict({
        "database": {"url": db_url},
        "libvirt": {"uri": "test:///default", "storage_pool": POOL},
        "queue": {"socket": str(tmp_path / "queue.sock"), "fallback_poll": 0.5, **queue_kw},
        "display": {"listen": "127.0.0.1"},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"),
                  "iso_dir": str(tmp_path / "isos")},
    })


class Running:
    """A daemon serving in a thread, plus helpers to talk to it."""

    def __init__(self, daemon: Daemon, thread: threading.Thread) -> None:
        self.daemon, self.thread = daemon, thread
        self.db: Database = daemon.db
        self.cfg = daemon.config
        self.host: Host = daemon.host

    def submit(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> int:
        return queue.submit(self.db, self.cfg.queue.socket, command, args, **kw)

    def run(self, command: str, args: dict[str, Any] | None = None, wait: float = 20,
            **kw: Any) -> Request:
        req = queue.wait_for(self.db, self.submit(command, args, **kw), wait)
        assert req.status in queue.FINAL, f"{command} still {req.status}"
        return req

    def ok(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        req = self.run(command, args, **kw)
        assert req.status == "done", f"{command} failed: {req.error}"
        return req.result or {}

    def fails(self, command: str, args: dict[str, Any] | None = None, **kw: Any) -> str:
        req = self.run(command, args, **kw)
        assert req.status == "failed", f"{command} should fail, got {req.result}"
        assert req.error
        return req.error

    def machine(self, machine_id: int) -> Machine | None:
        with self.db.session() as s:
            return s.get(Machine, machine_id)

    def volumes(self) -> set[str]:
        pool = self.host.storage.pool()
        pool.refresh(0)
        return set(pool.listVolumes())

    def guests(self) -> dict[str, str]:
        return self.host.list_guests()


def start_daemon(cfg: rconfig.Config, db: Database, tmp_path: Path,
                 handlers_: dict[str, handlers.Handler] | None = None) -> Running:
    daemon = Daemon(cfg, db=db, screenshot_dir=tmp_path / "shots", handlers=handlers_,
                    stop_wait=5)
    daemon.start()
    thread = threading.Thread(target=daemon.run, name="rvd_back", daemon=True)
    thread.start()
    return Running(daemon, thread)


def stop_daemon(r: Running) -> None:
    r.daemon.stop()
    r.thread.join(15)
    assert not r.thread.is_alive()
    r.daemon.close()


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> rconfig.Config:
    return make_config(tmp_path, db_url)


@pytest.fixture
def back(cfg: rconfig.Config, db: Database, tmp_path: Path) -> Iterator[Running]:
    r = start_daemon(cfg, db, tmp_path)
    yield r
    stop_daemon(r)


@pytest.fixture
def name() -> str:
    return "m" + uuid.uuid4().hex[:10]


@pytest.fixture
def alice(db: Database) -> int:
    with db.session() as s:
        user = User(name="alice" + uuid.uuid4().hex[:4])
        s.add(user)
        s.flush()
        return user.id


def wait_until(check: Callable[[], Any], timeout: float = 5) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
    return value


# -- machine life cycle ---------------------------------------------------------------------

def test_create_start_shutdown_remove(back: Running, name: str, alice: int) -> None:
    res = back.ok("create", {"name": name, "disk_gb": 2, "memory_mb": 512, "vcpus": 2,
                             "owner_id": alice})
    mid = res["machine_id"]
    m = back.machine(mid)
    assert (m.name, m.state, m.memory_mb, m.vcpus, m.disk_gb, m.owner_id) == \
        (name, "shutdown", 512, 2, 2, alice)
    assert m.domain_uuid == back.host.guest(name).uuid
    assert f"{name}.qcow2" in back.volumes()

    assert back.ok("start", machine_id=mid) == {"state": "running"}
    assert back.guests()[name] == "running"
    m = back.machine(mid)
    assert m.state == "running" and m.display is not None

    assert back.ok("shutdown", {"timeout": 5}, machine_id=mid) == \
        {"state": "shutdown", "forced": False}
    m = back.machine(mid)
    assert (m.state, m.display) == ("shutdown", None)
    assert back.guests()[name] == "shutdown"

    assert back.ok("remove", machine_id=mid) == {}
    assert back.machine(mid) is None
    assert name not in back.guests()
    assert f"{name}.qcow2" not in back.volumes()


def test_create_from_iso(back: Running, name: str, cfg: rconfig.Config) -> None:
    iso = Path(cfg.front.iso_dir) / "debian.iso"
    iso.write_bytes(b"\0" * 1024)
    mid = back.ok("create", {"name": name, "iso": "debian.iso", "disk_gb": 1})["machine_id"]
    assert back.machine(mid).iso == "debian.iso"
    xml = back.host.conn().lookupByName(name).XMLDesc(0)
    assert str(iso) in xml
    back.ok("remove", machine_id=mid)


@pytest.mark.parametrize("args, message", [
    ({"name": "-bad"}, "bad machine name '-bad'"),
    ({"name": "x" * 49, "disk_gb": 1}, "bad machine name"),
    ({"name": "ok", "disk_gb": 1, "memory_mb": 32}, "bad memory_mb 32: an integer from 64"),
    ({"name": "ok", "disk_gb": 1, "memory_mb": 70000}, "bad memory_mb 70000"),
    ({"name": "ok", "disk_gb": 0}, "bad disk_gb 0: an integer from 1 to 2048"),
    ({"name": "ok", "disk_gb": 4096}, "bad disk_gb 4096"),
    ({"name": "ok", "disk_gb": "ten"}, "bad disk_gb 'ten'"),
    ({"name": "ok"}, "create needs an iso, a disk_gb, or both"),
    ({"name": "ok", "iso": "nope.iso"}, "ISO 'nope.iso' not found in"),
    ({"name": "ok", "iso": "../etc/passwd"}, "bad iso '../etc/passwd'"),
    ({"name": "ok", "disk_gb": 1, "owner_id": 999999}, "user 999999 does not exist"),
])
def test_create_rejects_bad_arguments(back: Running, args: dict[str, Any], message: str) -> None:
    before_volumes, before_guests = back.volumes(), back.guests()
    assert message in back.fails("create", args)
    with back.db.session() as s:
        assert s.scalars(select(Machine)).all() == []
    assert back.volumes() == before_volumes and back.guests() == before_guests
    # the daemon still serves the next request
    assert back.ok("refresh")["machines"] == 0


def test_create_duplicate_name_leaves_the_first_intact(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    assert f"a machine named '{name}' already exists" in back.fails(
        "create", {"name": name, "disk_gb": 1})
    assert back.machine(mid).state == "shutdown"
    assert name in back.guests() and f"{name}.qcow2" in back.volumes()
    back.ok("remove", machine_id=mid)


def test_create_over_a_foreign_domain_is_refused(back: Running, name: str) -> None:
    back.host.define(render_domain(name, 128, 1, [], None, "127.0.0.1", "test"))
    try:
        assert "already exists" in back.fails("create", {"name": name, "disk_gb": 1})
        assert name in back.guests()  # the foreign domain is untouched
        with back.db.session() as s:
            assert s.scalar(select(Machine).where(Machine.name == name)) is None
    finally:
        back.host.guest(name).remove(back.host.storage)


def test_failed_create_removes_what_it_made(back: Running, name: str) -> None:
    # memory_mb passes create's check but the domain XML refuses a bad listen address
    back.cfg.display.listen = "not-an-ip"
    try:
        error = back.fails("create", {"name": name, "disk_gb": 1})
    finally:
        back.cfg.display.listen = "127.0.0.1"
    assert "bad listen address" in error
    assert f"{name}.qcow2" not in back.volumes() and name not in back.guests()
    with back.db.session() as s:
        assert s.scalar(select(Machine).where(Machine.name == name)) is None


def test_hibernate_resume_reboot_force_shutdown_screenshot(back: Running, name: str,
                                                           tmp_path: Path) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    assert "it is shutdown, not running" in back.fails("hibernate", machine_id=mid)
    assert "not running" in back.fails("screenshot", machine_id=mid)
    back.ok("start", machine_id=mid)
    shot = back.ok("screenshot", machine_id=mid)
    assert shot == {"path": str(tmp_path / "shots" / f"{mid}.png")}
    assert Path(shot["path"]).read_bytes().startswith(b"\x89PNG")
    assert back.ok("hibernate", machine_id=mid) == {"state": "hibernated"}
    assert back.machine(mid).state == "hibernated"
    assert back.guests()[name] == "hibernated"
    assert back.ok("resume", machine_id=mid) == {"state": "running"}
    assert back.ok("reboot", machine_id=mid) == {"state": "running"}
    assert back.ok("force_shutdown", machine_id=mid) == {"state": "shutdown"}
    assert back.machine(mid).state == "shutdown"
    back.ok("remove", machine_id=mid)
    assert not Path(shot["path"]).exists()


def test_base_and_clones(back: Running, name: str, alice: int) -> None:
    base = back.ok("create", {"name": name, "disk_gb": 1, "memory_mb": 256})["machine_id"]
    back.ok("start", machine_id=base)
    assert "must be shut down first" in back.fails("prepare_base", machine_id=base)
    back.ok("force_shutdown", machine_id=base)
    assert "is not a base" in back.fails("clone", {"user_id": alice}, machine_id=base)
    res = back.ok("prepare_base", machine_id=base)
    assert res["base_image"].endswith(f"{name}.base.qcow2")
    assert back.machine(base).is_base
    assert f"{name}.base.qcow2" in back.volumes() and f"{name}.qcow2" not in back.volumes()
    assert "already a base" in back.fails("prepare_base", machine_id=base)
    assert "is a base" in back.fails("start", machine_id=base)

    clone = back.ok("clone", {"user_id": alice}, machine_id=base)["machine_id"]
    c = back.machine(clone)
    with back.db.session() as s:
        username = s.get(User, alice).name
    assert (c.name, c.base_id, c.owner_id, c.state) == (f"{name}-{username}", base, alice,
                                                        "shutdown")
    assert back.host.guest(c.name).disk_paths() == [
        p for p in [back.host.storage.pool().storageVolLookupByName(f"{c.name}.qcow2").path()]]
    # the user's second click reuses the clone, and start: true starts it
    assert back.ok("clone", {"user_id": alice, "start": True}, machine_id=base) == \
        {"machine_id": clone}
    assert back.machine(clone).state == "running"

    assert "still has 1 clone(s)" in back.fails("remove_base", machine_id=base)
    assert "base with 1 clone(s)" in back.fails("remove", machine_id=base)
    back.ok("remove", machine_id=clone)
    assert c.name not in back.guests() and f"{c.name}.qcow2" not in back.volumes()
    assert f"{name}.base.qcow2" in back.volumes()  # a clone never takes its base image
    back.ok("remove_base", machine_id=base)
    assert not back.machine(base).is_base
    assert back.ok("start", machine_id=base) == {"state": "running"}
    back.ok("remove", machine_id=base)
    assert not {f"{name}.qcow2", f"{name}.base.qcow2"} & back.volumes()
    assert name not in back.guests()


def test_clone_arguments(back: Running, name: str, alice: int) -> None:
    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    assert "user 424242 does not exist" in back.fails("clone", {"user_id": 424242},
                                                      machine_id=base)
    assert "bad start 'yes'" in back.fails("clone", {"user_id": alice, "start": "yes"},
                                           machine_id=base)
    assert "not an IPv4 or IPv6 address" in back.fails(
        "clone", {"user_id": alice, "client_ip": "10.0.0"}, machine_id=base)
    # the user's click: clone, start and open the display for the client's address
    result = back.ok("clone", {"user_id": alice, "client_ip": "10.0.0.7"}, machine_id=base)
    display = result["display"]
    assert display["vnc"]["port"] and display["spice"]["port"]
    assert len(display["password"]) >= 16 and display["expires"].endswith("Z")
    with back.db.session() as s:
        clone = s.scalar(select(Machine).where(Machine.base_id == base))
        rules = s.scalars(select(FirewallRule).where(FirewallRule.machine_id == clone.id)).all()
    assert clone.id == result["machine_id"] and clone.state == "running"
    # SPICE only: VNC is reached through rvd_console unless display.direct_vnc
    assert {(r.client_ip, r.port, r.user_id) for r in rules} == {
        ("10.0.0.7", display["spice"]["port"], alice)}
    back.ok("remove", machine_id=clone.id)
    back.ok("remove", machine_id=base)


def test_open_display_arguments(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    assert "client_ip is required" in back.fails("open_display", machine_id=mid)
    assert "not running" in back.fails("open_display", {"client_ip": "10.1.2.3"},
                                       machine_id=mid)
    back.ok("start", machine_id=mid)
    first = back.ok("open_display", {"client_ip": "10.1.2.3"}, machine_id=mid)
    second = back.ok("open_display", {"client_ip": "10.1.2.4"}, machine_id=mid)
    assert first["password"] != second["password"]  # a fresh password every time
    with back.db.session() as s:
        ips = set(s.scalars(select(FirewallRule.client_ip)
                            .where(FirewallRule.machine_id == mid)).all())
    assert ips == {"10.1.2.3", "10.1.2.4"}  # a new viewer does not push the first one out
    back.ok("remove", machine_id=mid)


def test_bad_requests_fail_and_the_daemon_carries_on(back: Running) -> None:
    assert ("unknown command 'explode' (known: clone, close_user, copy_base, create,"
            in back.fails("explode"))
    assert "this command needs a machine" in back.fails("start")
    assert "machine 987654 does not exist" in back.fails("start", machine_id=987654)
    assert "bad timeout 0" in back.fails("shutdown", {"timeout": 0}, machine_id=987654)
    assert back.ok("refresh") == {"machines": 0, "changed": 0, "missing": 0}


# -- state sync ----------------------------------------------------------------------------

def test_lifecycle_events_update_the_db(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    with back.db.session() as s:
        s.add(FirewallRule(machine_id=mid, client_ip="10.0.0.9", port=5900))
    back.host.guest(name).start()  # behind Ravada's back, like `virsh start`
    wait_until(lambda: back.machine(mid).state == "running")
    back.host.guest(name).force_shutdown()
    wait_until(lambda: back.machine(mid).state == "shutdown")
    m = back.machine(mid)
    assert m.display is None
    with back.db.session() as s:  # a stopped machine keeps no open display port
        assert s.scalars(select(FirewallRule).where(FirewallRule.machine_id == mid)).all() == []
    back.ok("remove", machine_id=mid)


def test_refresh_syncs_states(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    with back.db.session() as s:
        s.get(Machine, mid).state = "running"  # wrong on purpose
        ghost = Machine(name=name + "-ghost", state="shutdown")
        s.add(ghost)
    res = back.ok("refresh")
    assert res == {"machines": 2, "changed": 2, "missing": 1}
    assert back.machine(mid).state == "shutdown"
    with back.db.session() as s:
        assert s.scalar(select(Machine.state).where(Machine.name == name + "-ghost")) == "unknown"
    back.ok("remove", machine_id=mid)


def test_heartbeat_registered_and_removed(cfg: rconfig.Config, db: Database,
                                          tmp_path: Path) -> None:
    r = start_daemon(cfg, db, tmp_path)
    with db.session() as s:
        row = s.get(Backend, r.daemon.name)
        assert row is not None and row.version
        assert (utcnow() - row.heartbeat_at).total_seconds() < 5
    stop_daemon(r)
    with db.session() as s:
        assert s.get(Backend, r.daemon.name) is None


# -- queue behaviour -----------------------------------------------------------------------

def test_timeout_fails_the_request_and_discards_the_late_result(
        cfg: rconfig.Config, db: Database, tmp_path: Path) -> None:
    finished = threading.Event()

    def slow(ctx: Context, job: Job) -> dict[str, Any]:
        time.sleep(job.args["s"])
        finished.set()
        return {"late": True}

    r = start_daemon(cfg, db, tmp_path, {**handlers.HANDLERS, "slow": slow})
    try:
        t0 = time.monotonic()
        req = r.run("slow", {"s": 2.5}, timeout=1)
        assert (req.status, req.error) == ("failed", "timed out after 1 s")
        assert 0.9 < time.monotonic() - t0 < 2.0
        assert r.ok("refresh")["machines"] == 0  # still serving meanwhile
        assert finished.wait(5)
        time.sleep(0.1)
        with db.session() as s:
            again = s.get(Request, req.id)
            assert (again.status, again.result) == ("failed", None)
        cfg.queue.request_timeout = 1  # the config default applies without a row timeout
        assert r.run("slow", {"s": 1.5}).error == "timed out after 1 s"
    finally:
        stop_daemon(r)


def test_per_machine_serialisation(cfg: rconfig.Config, db: Database, tmp_path: Path) -> None:
    spans: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def probe(ctx: Context, job: Job) -> dict[str, Any]:
        t0 = time.monotonic()
        time.sleep(0.15)
        with lock:
            spans.append((job.machine_id, t0, time.monotonic()))
        return {}

    with db.session() as s:
        machines = [Machine(name=f"ser-{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
        s.add_all(machines)
        s.flush()
        a, b = (m.id for m in machines)
    r = start_daemon(cfg, db, tmp_path, {"probe": probe})
    try:
        ids = [r.submit("probe", machine_id=mid) for _ in range(6) for mid in (a, b)]
        for rid in ids:
            assert queue.wait_for(db, rid, 20).status == "done"
    finally:
        stop_daemon(r)
    for mid in (a, b):
        mine = sorted((s, e) for m, s, e in spans if m == mid)
        assert len(mine) == 6
        assert all(prev_end <= start for (_, prev_end), (start, _) in itertools.pairwise(mine))
    # ...while the two machines did run in parallel
    sa = [(s, e) for m, s, e in spans if m == a]
    sb = [(s, e) for m, s, e in spans if m == b]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in sa for s2, e2 in sb)
    # The DB agrees. (On SQLite queue.claim stamps started_at just before it waits for the
    # write lock, so it may read a few ms before the previous finish: allow 20 ms.)
    slack = timedelta(milliseconds=20)
    with db.session() as s:
        for mid in (a, b):
            rows = s.scalars(select(Request).where(Request.machine_id == mid)
                             .order_by(Request.started_at)).all()
            assert all(p.finished_at <= n.started_at + slack
                       for p, n in itertools.pairwise(rows)), \
                [(r.id, str(r.started_at), str(r.finished_at)) for r in rows]
            order = [r.id for r in rows]
            assert order == sorted(order), "one machine's requests must run in FIFO order"


def test_pickup_latency(cfg: rconfig.Config, db: Database, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    r = start_daemon(cfg, db, tmp_path, {"noop": lambda ctx, job: {}})
    try:
        latencies = []
        for _ in range(50):
            req = queue.wait_for(db, r.submit("noop"), 10)
            assert req.status == "done"
            latencies.append((req.started_at - req.created_at).total_seconds() * 1000)
    finally:
        stop_daemon(r)
    p50 = statistics.median(latencies)
    p90 = statistics.quantiles(latencies, n=10)[-1]
    with capsys.disabled():
        print(f"\npick-up latency ({db.dialect}): p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
              f"max {max(latencies):.1f} ms over 50 requests")
    assert p50 <= 20


# -- recovery at start-up ---------------------------------------------------------------------

def _orphan(db: Database, command: str, attempts: int = 1, machine_id: int | None = None,
            args: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
            worker: str = "deadhost:4242") -> int:
    with db.session() as s:
        req = Request(command=command, args=args or {}, machine_id=machine_id, status="working",
                      worker=worker, attempts=attempts, started_at=utcnow(), result=result)
        s.add(req)
        s.flush()
        return req.id


def test_recovery_retries_or_fails_interrupted_requests(
        cfg: rconfig.Config, db: Database, tmp_path: Path, name: str) -> None:
    host = Host("test:///default", POOL)
    try:
        # a machine that exists completely, for the retried start
        disk = host.storage.create_disk(name, 1)
        guest = host.define(render_domain(name, 128, 1, [disk], None, "127.0.0.1", "test"))
        # a create killed half-way: row + volume + domain
        half = name + "-half"
        hdisk = host.storage.create_disk(half, 1)
        host.define(render_domain(half, 128, 1, [hdisk], None, "127.0.0.1", "test"))
        # a clone killed after its overlay only
        half_clone = name + "-hc"
        host.storage.create_disk(half_clone, 1)
        with db.session() as s:
            ok = Machine(name=name, state="shutdown", domain_uuid=guest.uuid)
            hm = Machine(name=half, state="creating")
            hc = Machine(name=half_clone, state="creating")
            s.add_all([ok, hm, hc])
            s.flush()
            ok_id, hc_id = ok.id, hc.id
            s.add(Backend(name="livehost:1", heartbeat_at=utcnow()))
        retried = _orphan(db, "start", machine_id=ok_id)
        gave_up = _orphan(db, "shutdown", attempts=3, machine_id=ok_id)
        create = _orphan(db, "create", args={"name": half, "disk_gb": 1})
        clone = _orphan(db, "clone", machine_id=ok_id, result={"machine_id": hc_id})
        base = _orphan(db, "prepare_base", machine_id=ok_id)
        alive = _orphan(db, "refresh", worker="livehost:1")

        r = start_daemon(cfg, db, tmp_path)
        try:
            assert queue.wait_for(db, retried, 10).status == "done"
            with db.session() as s:
                got = {i: s.get(Request, i) for i in (gave_up, create, clone, base, alive)}
                assert (got[gave_up].status, got[gave_up].error) == \
                    ("failed", "interrupted 3 times; giving up")
                for i in (create, clone, base):
                    assert (got[i].status, got[i].error) == ("failed", "interrupted")
                    assert got[i].finished_at is not None
                assert got[alive].status == "working"  # a live backend's work is its own
                names = set(s.scalars(select(Machine.name)))
            assert names == {name}
            assert back_state(host, name) == "running"
            guests, vols = host.list_guests(), set(host.storage.pool().listVolumes())
            assert half not in guests and f"{half}.qcow2" not in vols
            assert f"{half_clone}.qcow2" not in vols
        finally:
            stop_daemon(r)
    finally:
        for n in (name, name + "-half"):
            if host.has_guest(n):
                host.guest(n).remove(host.storage)
        host.close()


def back_state(host: Host, name: str) -> str:
    return host.guest(name).state()


def test_daemon_survives_libvirt_errors(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.host.conn().lookupByName(name).undefine()  # gone behind Ravada's back
    assert "has no libvirt domain" in back.fails("start", machine_id=mid)
    assert back.ok("refresh")["missing"] == 1
    back.ok("remove", machine_id=mid)
    assert back.machine(mid) is None
    with pytest.raises(libvirt.libvirtError):
        back.host.conn().lookupByName(name)


def test_a_late_lifecycle_event_does_not_undo_a_request(back: Running, name: str) -> None:
    """libvirt's 'running' event of a start can reach the event thread after the hibernate
    request already wrote 'hibernated': the row must follow libvirt now, not the event
    (seen as a flaky 'running' after hibernate on MariaDB)."""
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    assert back.ok("hibernate", machine_id=mid) == {"state": "hibernated"}
    sink = back.daemon._sink
    sink(name, "running")  # the stale event, delivered late
    sink._pool.submit(lambda: None).result(10)  # the event thread has handled it
    assert back.machine(mid).state == "hibernated"
    assert back.guests()[name] == "hibernated"
