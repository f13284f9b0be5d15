"""rvd_front under gunicorn (gthread): it serves, and a long poll does not block other requests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ravada import queue
from ravada.db import Database
from ravada.db.migrate import upgrade

sys.path.insert(0, str(Path(__file__).parent))
from test_front_support import PASSWORD, add_user  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, method: str = "GET", body: dict | None = None,
          headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Database, str]]:
    url = f"sqlite:///{tmp_path / 'ravada.db'}"
    db = Database(url)
    upgrade(db.engine)
    add_user(db, "ops", admin=True)
    port = _free_port()
    cfg = tmp_path / "ravada.conf"
    cfg.write_text(yaml.safe_dump({
        "database": {"url": url}, "queue": {"socket": str(tmp_path / "q.sock")},
        "front": {"secret_key_file": str(tmp_path / "front.key"), "workers": 1,
                  "listen": f"127.0.0.1:{port}"}}))
    exe = shutil.which("rvd_front", path=str(Path(sys.executable).parent)) or "rvd_front"
    log = open(tmp_path / "front.log", "wb")
    proc = subprocess.Popen([exe, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/login", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "front.log").read_text()) from None
            time.sleep(0.1)
    yield base, db, str(tmp_path / "q.sock")
    proc.terminate()
    proc.wait(20)
    db.dispose()


def test_gunicorn_serves_and_long_polls_do_not_block(server: tuple[str, Database, str]) -> None:
    base, db, sock = server
    status, body = _call(base + "/healthz")
    assert status == 503 and body["database"] == "ok"  # no rvd_back yet
    status, tok = _call(base + "/api/v1/tokens", "POST", {"name": "ops", "password": PASSWORD})
    assert status == 201
    auth = {"Authorization": f"Bearer {tok['token']}"}
    rid = queue.submit(db, sock, "refresh", {}, user_id=1)
    results: dict[str, float] = {}

    def poll() -> None:
        t0 = time.perf_counter()
        _call(f"{base}/api/v1/requests/{rid}?wait=3", headers=auth)
        results["poll"] = time.perf_counter() - t0

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    status, _ = _call(base + "/api/v1/session", headers=auth)
    quick = time.perf_counter() - t0
    assert status == 200 and quick < 0.5, quick  # served while three long polls wait
    # The poll returns as soon as the request ends.
    time.sleep(0.3)
    with db.session() as s:
        s.execute(queue.update(queue.Request).where(queue.Request.id == rid)
                  .values(status="working"))
    queue.finish(db, rid, result={"ok": 1})
    for t in threads:
        t.join(10)
    assert 0.4 < results["poll"] < 1.5, results
