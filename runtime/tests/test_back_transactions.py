# ruff: noqa: F811  (fixtures imported from test_back)
"""No libvirt or iptables call while a database write transaction is open.

A libvirt call can take seconds (a start, a managed save) and an iptables-restore waits on
the xtables lock; inside a write transaction that time is spent holding the database's
write lock (SQLite) or row locks (MariaDB), and every writer of the front waits behind it.
The test wraps ``Database.session`` (the write sessions) and every entry point to libvirt
(``Host.call``) and iptables (the ``Firewall`` methods) and runs a machine's life through
the daemon on test:///default.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_back import make_config, start_daemon, stop_daemon

from ravada.db import Database
from ravada.db.migrate import upgrade
from ravada.firewall import Firewall
from ravada.virt import Host

FIREWALL_CALLS = ("allow", "close", "ensure_chain", "reconcile", "rules")


@pytest.fixture
def violations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    inside = threading.local()
    found: list[str] = []
    write_session = Database.session

    @contextmanager
    def session(self: Database) -> Iterator[Any]:
        depth = getattr(inside, "depth", 0)
        inside.depth = depth + 1
        try:
            with write_session(self) as s:
                yield s
        finally:
            inside.depth = depth

    def guard(what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if getattr(inside, "depth", 0):
                where = traceback.extract_stack(limit=4)[0]
                found.append(f"{what}{args[1:2]} in a write transaction "
                             f"({Path(where.filename).name}:{where.lineno} {where.name})")
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(Database, "session", session)
    monkeypatch.setattr(Host, "call", guard("libvirt", Host.call))
    for name in FIREWALL_CALLS:
        monkeypatch.setattr(Firewall, name, guard(f"iptables {name}", getattr(Firewall, name)))
    return found


def test_no_libvirt_or_iptables_inside_a_write_transaction(
        violations: list[str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'ravada.db'}")
    db = Database(cfg.database.url)
    upgrade(db.engine)
    back = start_daemon(cfg, db, tmp_path)
    name = "tx" + tmp_path.name[-8:].replace("_", "")
    try:
        mid = back.ok("create", {"name": name, "disk_gb": 1})["machine_id"]
        back.ok("start", {"client_ip": "192.0.2.10"}, machine_id=mid)
        back.ok("open_display", {"client_ip": "192.0.2.11"}, machine_id=mid)
        back.ok("hibernate", machine_id=mid)
        back.ok("resume", machine_id=mid)
        back.ok("refresh")
        back.ok("shutdown", {"timeout": 5}, machine_id=mid)
        back.ok("prepare_base", machine_id=mid)
        back.ok("remove_base", machine_id=mid)
        back.ok("start", machine_id=mid)
        back.ok("force_shutdown", machine_id=mid)
        back.ok("refresh")
        back.ok("remove", machine_id=mid)
    finally:
        stop_daemon(back)
        db.dispose()
    assert violations == []
