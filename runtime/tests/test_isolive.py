# ruff: noqa: F811  (pytest fixtures imported from test_isolib)
"""ISO transfer progress is pushed through the live long-poll (issue 15.2/15.3): rvd_back
announces each progress write (:data:`ravada.waiters.ISOS`), which wakes a waiting
``/admin/isos/data/live``; the page's script follows that long-poll, not a timer."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_back import stop_daemon
from test_isodownload import Server
from test_isolib import Lib, iso_image, register, row_named  # noqa: F401

from ravada.db import Database

SCRIPT = Path(__file__).parents[1] / "src/ravada/front/static/isos.js"


@pytest.fixture
def lib(tmp_path: Path, sqlite_db: Database) -> Iterator[Lib]:
    w = Lib(tmp_path, sqlite_db)
    yield w
    stop_daemon(w.back)


def test_the_iso_page_script_follows_the_long_poll_not_a_timer() -> None:
    js = SCRIPT.read_text()
    assert "setInterval" not in js
    # every pause of the script is a retry after a failure or the server's own retry hint,
    # or the reload after an upload ended: none asks the server again on a clock
    pauses = re.findall(r"(?:sleep|setTimeout)\(([^;\n]*)", js)
    allowed = ("500 * 2 ** attempt", "1000 * 2 ** failures", "Retry-After", "data.retry",
               "window.location.reload", "resolve, ms")
    assert pauses and all(any(a in p for a in allowed) for p in pauses), pauses
    assert "/live" in js and "after=" in js and "wait=25" in js


def _live(lib: Lib, after: str = "", wait: float = 0) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    r = lib.c.get(f"/admin/isos/data/live?after={after}&wait={wait}")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return r.json, time.monotonic() - t0


def test_download_progress_wakes_a_waiting_long_poll(lib: Lib, iso_image: bytes) -> None:
    first, _ = _live(lib)
    assert first["isos"] == []
    quiet, took = _live(lib, first["fp"], wait=1.5)  # nothing moves: answers at its wait
    assert quiet["fp"] == first["fp"] and 1.2 < took < 5
    srv = Server(iso_image, ["stall"])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/x.iso"
        register(lib, "live.iso", url, hashlib.sha256(iso_image).hexdigest())
        iso_id = row_named(lib, "live.iso").id
        assert srv.stalled.wait(10)
        now, _ = _live(lib)
        before = next(i for i in now["isos"] if i["id"] == iso_id)
        # the transfer is under way: each write (the size, then progress once a second)
        # wakes a 20 s wait within moments, and the bytes grow
        moved, row = now, before
        for _ in range(4):
            moved, took = _live(lib, moved["fp"], wait=20)
            assert took < 5, took
            row = next(i for i in moved["isos"] if i["id"] == iso_id)
            if row["received"] > before["received"]:
                break
        assert row["state"] == "downloading" and row["received"] > before["received"], row
        assert row["size"] == len(iso_image)
        srv.release.set()
        # the end of the transfer wakes it too
        deadline = time.monotonic() + 20
        fp = moved["fp"]
        while True:
            got, _ = _live(lib, fp, wait=10)
            fp = got["fp"]
            row = next(i for i in got["isos"] if i["id"] == iso_id)
            if row["state"] == "ready":
                break
            assert time.monotonic() < deadline, row
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
