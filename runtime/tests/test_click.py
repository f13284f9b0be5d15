# ruff: noqa: F811  (fixtures imported from test_back)
"""What a click costs rvd_back in database work, counted (issue 14, P1), on test:///default.

A cold-clone click (clone + start + display for the viewer's address) writes its rows in
four transactions (the new row with the request's progress, its domain, the viewer's
firewall rows, the state with the display) plus the queue's finish; reads need no COMMIT.
The counts do not depend on the machine's load; tests/test_click_kvm.py checks libvirt's
side on KVM.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from test_back import Running, alice, back, cfg, name  # noqa: F401

from ravada.virt import render_domain


def _in_workers() -> bool:
    return threading.current_thread().name.startswith("worker")


def test_cold_clone_click_writes_in_four_transactions(back: Running, name: str,
                                                       alice: int) -> None:
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
    assert back.machine(res["machine_id"]).state == "running"
    # the clone's row, its domain, the viewer's firewall rows, its state; the queue's finish
    assert len(commits) == 5, (commits, statements)
    assert statements.count("SELECT") <= 9, statements


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
