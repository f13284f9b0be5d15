"""P4's load (issue 14): the mix the issue names, and long-polls kept out of the p99.

The mix has user pages (session cookie), machine lists and request status (bearer token)
and long-polls; a long-poll is held by the server on purpose, so the generator counts it in
the rate and the errors and reports its lateness beyond the hold apart from the p99 of the
other requests. The slow log summary groups MariaDB's statements by shape.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import p4_front  # noqa: E402
from benchlib import loadgen  # noqa: E402
from benchlib.mariadb import summarise_slow_log  # noqa: E402
from benchlib.seed import Login  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/hold"):
            time.sleep(0.3)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_long_polls_count_in_the_rate_but_not_in_the_p99(server: str) -> None:
    plan = [{"kind": "fast", "path": "/fast"}] * 4 + [
        {"kind": "long-poll", "path": "/hold", "hold_s": 0.3}]
    r = asyncio.run(loadgen.run(server, plan, rate=50, duration=1))
    assert r["errors"] == 0 and r["sent"] == 50
    assert r["long_polls"] == 10
    # the fast ones alone in the latency (their median far below the 300 ms hold)
    assert r["latency_ms"]["n"] == 40 and r["latency_ms"]["median"] < 150, r["latency_ms"]
    late = r["long_poll_overshoot_ms"]  # lateness beyond the hold: never negative
    assert late["n"] == 10 and late["min"] > -1, late
    assert r["achieved_rps"] >= 40, r["achieved_rps"]  # not diluted by the last hold


def test_the_mix_has_pages_lists_api_and_long_polls() -> None:
    logins = [Login(uid=i + 1, name=f"u{i}", token=f"tok{i}", requests=[100 + i],
                    machines=[200 + i], pending=300 + i) for i in range(100)]
    cookies = {u.uid: f"c{u.uid}" for u in logins}
    plan = p4_front.build_plan(logins, cookies)
    kinds = {e["kind"] for e in plan}
    assert kinds == {"page-index", "page-machine", "api-machines", "api-bases",
                     "api-request", "long-poll"}
    for e in plan:
        auth = e["headers"]
        if e["kind"].startswith("page"):
            assert set(auth) == {"Cookie"} and auth["Cookie"].startswith("ravada_session=c")
        else:
            assert set(auth) == {"Authorization"} and auth["Authorization"].startswith("Bearer ")
    polls = [e for e in plan if e["kind"] == "long-poll"]
    assert len(polls) == len(plan) // 20
    assert all(e["path"].endswith(f"?wait={e['hold_s']}") and e["hold_s"] >= 1 for e in polls)
    users = {e["headers"]["Authorization"] for e in plan if e["kind"] == "api-machines"}
    assert len(users) >= 30  # every kind goes as many users


def test_slow_log_summary_groups_statements_by_shape(tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    log.write_text(
        "# Time: 261201  1:00:00\n# User@Host: root[root] @ localhost []\n"
        "# Query_time: 0.002000  Lock_time: 0.000010  Rows_sent: 1  Rows_examined: 5\n"
        "SET timestamp=1;\nSELECT a FROM t WHERE id = 7;\n"
        "# Query_time: 0.004000  Lock_time: 0.000010  Rows_sent: 1  Rows_examined: 1\n"
        "SET timestamp=2;\nSELECT a FROM t WHERE id = 9;\n"
        "# Query_time: 0.001000  Lock_time: 0.000010  Rows_sent: 0  Rows_examined: 0\n"
        "SET timestamp=3;\nUPDATE t SET b = 'x' WHERE id = 3;\n")
    text = summarise_slow_log(log)
    assert "3 statements, 7.0 ms" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "SELECT a FROM t WHERE id = ?" in line)
    assert lines[first].split()[:2] == ["2", "6.0"]  # two calls, 6 ms, the heaviest first
    assert "UPDATE t SET b = ? WHERE id = ?" in lines[first + 1]
