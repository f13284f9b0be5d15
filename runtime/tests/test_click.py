# ruff: noqa: F811  (fixtures imported from test_back)
"""What a click costs rvd_back in database work, counted (issue 14, P1), on test:///default.

A cold-clone click (clone + start + display for the viewer's address) writes its rows in
two transactions (the new row with the request's progress; then its domain, the viewer's
firewall rows, the state and display, and the request's end with its result); reads need
no COMMIT; and it looks the storage pool up once. Each COMMIT is an fsync on MariaDB (7 ms
measured on the bench host): they were the largest cost of a click besides libvirt's work.
The counts do not depend on the machine's load; tests/test_click_kvm.py checks libvirt's
side on KVM.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import libvirt
import pytest
from sqlalchemy import event, select
from test_back import Running, alice, back, cfg, name  # noqa: F401

from ravada.db import Machine, User
from ravada.virt import render_domain


def _in_workers() -> bool:
    return threading.current_thread().name.startswith("worker")


def test_cold_clone_click_writes_in_two_transactions(back: Running, name: str,
                                                     alice: int) -> None:
    """Two COMMITs on the worker, the queue's finish included (four before: the define's
    own, and the queue's finish apart from the click's last write)."""
    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    commits: list[int] = []
    statements: list[str] = []
    engines = {back.db.engine, back.db.read_engine}

    def on_commit(*_: Any) -> None:
        if _in_workers():
            commits.append(1)

    def on_sql(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        if _in_workers() and not sql.startswith("BEGIN"):
            statements.append(sql.split(None, 1)[0].upper())

    for engine in engines:
        event.listen(engine, "commit", on_commit)
        event.listen(engine, "before_cursor_execute", on_sql)
    try:
        res = back.ok("clone", {"user_id": alice, "start": True, "client_ip": "127.0.0.1"},
                      machine_id=base)
    finally:
        for engine in engines:
            event.remove(engine, "commit", on_commit)
            event.remove(engine, "before_cursor_execute", on_sql)
    assert res["display"]["password"] and res["display"]["vnc"]["port"]
    row = back.machine(res["machine_id"])
    assert row is not None and row.state == "running"
    assert row.domain_uuid == back.host.guest(row.name).uuid
    # the clone's row; then its domain, viewer, state and display with the request's end
    # (the row stays `creating` in between: the define and start events leave it alone)
    assert len(commits) == 2, (commits, statements)
    # was 17 statements in 5 commits: the firewall rows of a clone made by this request
    # are not read nor deleted, the row is not read back, its base comes in the same SELECT
    assert len(statements) <= 11, statements
    assert statements.count("SELECT") <= 6, statements


def test_cold_clone_click_looks_the_storage_pool_up_once(back: Running, name: str, alice: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The clone's name check and its overlay are one storage-pool call (it was three
    lookups: one per own-volume check, one for the overlay)."""
    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    lookups: list[str] = []
    real = libvirt.virConnect.storagePoolLookupByName

    def counted(conn: libvirt.virConnect, pool: str) -> libvirt.virStoragePool:
        if _in_workers():
            lookups.append(pool)
        return real(conn, pool)

    monkeypatch.setattr(libvirt.virConnect, "storagePoolLookupByName", counted)
    res = back.ok("clone", {"user_id": alice, "start": True, "client_ip": "127.0.0.1"},
                  machine_id=base)
    assert res["display"]["password"]
    assert len(lookups) == 1, lookups


def test_clone_refuses_a_foreign_volume_of_its_name_and_keeps_it(back: Running, name: str,
                                                                 alice: int) -> None:
    """A volume already named like the new clone is not Ravada's: the click fails with the
    reason, the volume stays, and no row of the clone is left."""
    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    with back.db.sessionmaker() as s:
        user = s.get(User, alice)
        assert user is not None
        clone = f"{name}-{user.name}"
    foreign = back.host.storage.create_disk(clone, 1)
    err = back.fails("clone", {"user_id": alice}, machine_id=base)
    assert f"a libvirt volume named {clone!r} already exists" in err, err
    assert back.host.storage.exists(foreign)
    with back.db.sessionmaker() as s:
        assert s.scalar(select(Machine.id).where(Machine.name == clone)) is None
    back.host.storage.delete(foreign)
    assert back.ok("clone", {"user_id": alice}, machine_id=base)["machine_id"]


def test_domain_starts_with_the_clicks_password() -> None:
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    xml = render_domain("c1", 128, 1, ["/x.qcow2"], None, "127.0.0.1",
                        password="Abcdefghij0123456789", password_valid_to=until)
    assert "passwd='Abcdefghij0123456789' passwdValidTo='2030-01-02T03:04:05'" in xml
    assert "passwd='Abcdefgh' passwdValidTo='2030-01-02T03:04:05'" in xml  # VNC: 8 chars
    plain = render_domain("c1", 128, 1, ["/x.qcow2"], None, "127.0.0.1")
    assert "passwdValidTo" not in plain and "passwd='Abcdefgh" not in plain
    for bad in ("with space 12345678", "quote'12345678", ""):
        with pytest.raises(ValueError, match="display password"):
            render_domain("c1", 128, 1, ["/x.qcow2"], None, "127.0.0.1", password=bad,
                          password_valid_to=until + timedelta(0))


def test_a_clicks_clone_whose_start_fails_leaves_creating(back: Running, name: str,
                                                          alice: int,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The clone's row stays `creating` until its display is open; when libvirt refuses
    the start, the row still gets its domain and libvirt's state (shut off), as before."""
    from ravada.virt import Guest, VirtError

    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)

    def refuse(self: Guest) -> None:  # a fault libvirt can raise (no memory, no kvm)
        raise VirtError(f"start {self.name}: refused for the test")

    monkeypatch.setattr(Guest, "start", refuse)
    error = back.fails("clone", {"user_id": alice, "start": True, "client_ip": "127.0.0.1"},
                       machine_id=base)
    assert "refused for the test" in error
    with back.db.sessionmaker() as s:
        row = s.scalar(select(Machine).where(Machine.base_id == base,
                                             Machine.owner_id == alice))
    assert row is not None and row.state == "shutdown", row and row.state
    assert row.domain_uuid == back.host.guest(row.name).uuid


def test_a_click_ended_with_its_last_write_still_wakes_the_waiters(back: Running, name: str,
                                                                   alice: int) -> None:
    """The request ends in the click's last transaction; the daemon still announces it, so
    the front's long-poll wakes at once (not at its fallback re-read)."""
    from ravada import queue, waiters

    base = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
    back.ok("prepare_base", machine_id=base)
    listener = waiters.listener(back.cfg.queue.socket)
    assert listener is not None
    before = listener.wakeups
    rid = back.submit("clone", {"user_id": alice, "start": True, "client_ip": "127.0.0.1"},
                      machine_id=base)
    req = queue.wait_for(back.db, rid, 30, wake=back.cfg.queue.socket)
    assert req.status == "done" and req.result and req.result["display"]["password"]
    assert listener.wakeups > before
