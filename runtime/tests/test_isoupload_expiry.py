# ruff: noqa: F811  (pytest fixtures imported from test_isolib)
"""Abandoned ISO uploads (no chunk for ``front.iso_upload_abandon_hours``) are removed with
their staged files by rvd_back's timers: the deadline is the row's last chunk in the
database plus the configured hours, and the daemon sleeps until it (issue 15.2)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from test_back import stop_daemon
from test_isolib import CHUNK, Lib, iso_image  # noqa: F401

from ravada.db import Database, Iso, utcnow


@pytest.fixture
def lib(tmp_path: Path, sqlite_db: Database) -> Iterator[Lib]:
    w = Lib(tmp_path, sqlite_db)
    yield w
    stop_daemon(w.back)


def _age(lib: Lib, iso_id: int, ago: timedelta) -> None:
    with lib.db.session() as s:
        s.execute(update(Iso).where(Iso.id == iso_id).values(updated_at=utcnow() - ago))


def test_an_abandoned_upload_is_removed_at_its_deadline(lib: Lib, iso_image: bytes) -> None:
    hours = lib.cfg.front.iso_upload_abandon_hours
    assert hours == 24  # the default
    quiet = lib.start("quiet.iso", len(iso_image)).json["id"]
    assert lib.put(quiet, 0, iso_image[:CHUNK]).status_code == 200
    busy = lib.start("busy.iso", len(iso_image)).json["id"]
    assert lib.put(busy, 0, iso_image[:CHUNK]).status_code == 200
    staged = lib.staging / f"{quiet}.part"
    assert staged.stat().st_size == CHUNK
    timers = lib.back.daemon.timers
    # the deadline is the last chunk plus the configured hours, read from the database
    with lib.db.sessionmaker() as s:
        last = s.get(Iso, quiet).updated_at
    assert abs((timers.next_deadline() - (last + timedelta(hours=hours))).total_seconds()) < 1
    # its last chunk was 24 h minus 1.5 s ago: it stays until the deadline, then goes
    _age(lib, quiet, timedelta(hours=hours) - timedelta(seconds=1.5))
    assert 0 < timers.next_wait(60) <= 1.5
    time.sleep(0.5)
    assert lib.row(quiet) is not None and staged.exists()
    deadline = time.monotonic() + 10
    while lib.row(quiet) is not None:
        assert time.monotonic() < deadline, "the abandoned upload was not removed"
        time.sleep(0.05)
    assert not staged.exists()
    # the other upload is untouched and goes on; a chunk for the removed one is refused
    assert lib.row(busy) is not None and (lib.staging / f"{busy}.part").exists()
    assert lib.put(busy, CHUNK, iso_image[CHUNK:2 * CHUNK]).status_code == 200
    assert lib.put(quiet, CHUNK, iso_image[CHUNK:2 * CHUNK]).status_code == 404
    # rows that are not unfinished uploads never expire, however old
    _age(lib, busy, timedelta(days=3))
    with lib.db.session() as s:
        s.execute(update(Iso).where(Iso.id == busy).values(state="failed"))
    time.sleep(1.0)
    assert lib.row(busy) is not None

