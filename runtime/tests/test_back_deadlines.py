# ruff: noqa: F811  (fixtures imported from test_back)
"""Workers nobody can pin: deadlines, the machine lock until the thread ends, the maximum
timeout, heartbeat-based recovery and the base round trip (test:///default, SQLite+MariaDB)."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_back import Running, alice, back, cfg, name, start_daemon, stop_daemon  # noqa: F401

from ravada import config as rconfig
from ravada import queue
from ravada.back import daemon as daemon_mod
from ravada.back.context import Context, Job
from ravada.db import Backend, Database, Request, utcnow


def _row(db: Database, req_id: int) -> Request:
    with db.sessionmaker() as s:
        r = s.get(Request, req_id)
        assert r is not None
        return r


def _until(check: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
    return value


class Slow:
    """Handlers: ``slow`` blocks until released (a libvirt call that does not give up),
    ``quick`` notes when it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_running = threading.Event()
        self.quick_ran_while_slow = False
        self.quick_done = threading.Event()

    def slow(self, ctx: Context, job: Job) -> dict[str, Any]:
        self.slow_running.set()
        self.release.wait(30)
        self.slow_running.clear()
        return {}

    def quick(self, ctx: Context, job: Job) -> dict[str, Any]:
        self.quick_ran_while_slow = self.slow_running.is_set()
        self.quick_done.set()
        return {}

    def handlers(self) -> dict[str, Any]:
        return {"slow": self.slow, "quick": self.quick, "refresh": self.quick}


def test_timed_out_request_keeps_its_machine_until_the_thread_ends(
        cfg: rconfig.Config, db: Database, tmp_path: Path) -> None:
    h = Slow()
    r = start_daemon(cfg, db, tmp_path, h.handlers())
    try:
        slow = r.submit("slow", machine_id=7, timeout=1)
        req = queue.wait_for(db, slow, 10)
        assert (req.status, req.error) == ("failed", "timed out after 1 s")  # told at once
        assert req.finished_at is None  # ... but its thread still works
        quick = r.submit("quick", machine_id=7)
        other = r.submit("quick", machine_id=8)  # other machines are not held up
        assert queue.wait_for(db, other, 10).status == "done"
        time.sleep(0.5)
        assert _row(db, quick).status == "requested"  # no overlap with the stuck worker
        h.quick_done.clear()
        h.release.set()
        assert queue.wait_for(db, quick, 10).status == "done"
        assert not h.quick_ran_while_slow
        assert _until(lambda: _row(db, slow).finished_at is not None)
        assert _row(db, slow).status == "failed"
    finally:
        h.release.set()
        stop_daemon(r)


def test_timeout_above_the_maximum_fails_naming_it(
        cfg: rconfig.Config, db: Database, tmp_path: Path) -> None:
    h = Slow()
    r = start_daemon(cfg, db, tmp_path, h.handlers())
    try:
        req = queue.wait_for(db, r.submit("quick", machine_id=3, timeout=100_000), 10)
        assert req.status == "failed"
        assert req.error == "bad timeout 100000 s: at most 600 s (queue.request_timeout)"
        assert not h.quick_done.is_set()
    finally:
        stop_daemon(r)


def test_shutdown_timeout_argument_is_capped(back: Running, name: str) -> None:
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("start", machine_id=mid)
    error = back.fails("shutdown", {"timeout": 3600}, machine_id=mid)
    assert error == "bad timeout 3600: an integer from 1 to 600"
    assert back.ok("shutdown", {"timeout": 5}, machine_id=mid)["state"] == "shutdown"
    back.ok("remove", machine_id=mid)


def _orphan(db: Database, command: str, worker: str, machine_id: int) -> int:
    with db.session() as s:
        req = Request(command=command, args={}, machine_id=machine_id, status="working",
                      worker=worker, attempts=1, started_at=utcnow())
        s.add(req)
        s.flush()
        return req.id


def test_stale_heartbeat_is_dead_even_when_the_pid_exists(
        cfg: rconfig.Config, db: Database, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pid 1 always runs, but this 'backend' stopped beating an hour ago (a reboot reused
    its pid): its working request is retried and the machine's queue moves on, also when
    the backend died while this one was already running."""
    monkeypatch.setattr(daemon_mod, "RECOVER_EVERY", 0.3)
    ghost = f"{socket.gethostname()}:1"
    assert os.path.exists("/proc/1")
    with db.session() as s:
        s.add(Backend(name=ghost, heartbeat_at=utcnow() - timedelta(hours=1)))
    at_start = _orphan(db, "refresh", ghost, machine_id=11)
    h = Slow()
    r = start_daemon(cfg, db, tmp_path, h.handlers())
    try:
        assert queue.wait_for(db, at_start, 10).status == "done"
        # the same while running: a live-looking pid with a stale heartbeat
        later = _orphan(db, "refresh", ghost, machine_id=12)
        behind = r.submit("quick", machine_id=12)
        assert queue.wait_for(db, later, 10).status == "done"
        assert queue.wait_for(db, behind, 10).status == "done"
        # a fresh heartbeat of a live pid is someone else's work: left alone
        with db.session() as s:
            s.merge(Backend(name=ghost, heartbeat_at=utcnow()))
        alive = _orphan(db, "refresh", ghost, machine_id=13)
        time.sleep(1.0)
        assert _row(db, alive).status == "working"
    finally:
        stop_daemon(r)


def test_base_round_trip(back: Running, name: str) -> None:
    """prepare_base, remove_base, prepare_base again: the third used to fail with
    'base image ... exists already'."""
    mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    first = back.ok("prepare_base", machine_id=mid)["base_image"]
    back.ok("remove_base", machine_id=mid)
    again = back.ok("prepare_base", machine_id=mid)["base_image"]
    assert again == first
    assert back.machine(mid).is_base  # type: ignore[union-attr]
    assert back.host.guest(name).disk_paths() == [again]
    assert f"{name}.qcow2" not in back.volumes()  # the overlay went into the new base
    back.ok("remove_base", machine_id=mid)
    back.ok("remove", machine_id=mid)
    assert not {v for v in back.volumes() if v.startswith(name)}


def test_a_dead_backends_timed_out_request_does_not_wedge_its_machine(
        cfg: rconfig.Config, db: Database, tmp_path: Path) -> None:
    """A request that timed out (failed, finished_at empty: its thread still held the
    machine) on a backend that then died: recovery frees the machine, the queue moves."""
    with db.session() as s:
        held = Request(command="slow", args={}, machine_id=21, status="failed",
                       error="timed out after 1 s", worker="deadhost:99", attempts=1,
                       started_at=utcnow())
        s.add(held)
        s.flush()
        held_id = held.id
    h = Slow()
    r = start_daemon(cfg, db, tmp_path, h.handlers())
    try:
        assert queue.wait_for(db, r.submit("quick", machine_id=21), 10).status == "done"
        row = _row(db, held_id)
        assert (row.status, row.error) == ("failed", "timed out after 1 s")
        assert row.finished_at is not None
    finally:
        stop_daemon(r)
