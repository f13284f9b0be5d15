"""An open-loop HTTP/1.1 load generator (asyncio, stdlib only), run as its own process.

Requests are sent on a fixed schedule (request *i* at ``t0 + i / rate``) whatever the
server does, so a slow server cannot slow the generator down (no coordinated omission):
the latency of a request counts from its scheduled time, including any wait for a free
connection. Keep-alive connections are reused when the server allows it.

    python -m benchlib.loadgen --url http://127.0.0.1:8081 --plan plan.json \
        --rate 200 --duration 20 --out result.json

``plan.json`` is a list of ``{"kind": "list", "path": "/api/v1/machines",
"headers": {"Authorization": "Bearer ..."}}``; requests go round the list in order. A
2xx answer is a success; ``"ok_status": [503]`` accepts more. A long-poll entry says how
long the server holds it by design (``"hold_s": 1``): it counts in the rate and the errors
but not in ``latency_ms``; ``long_poll_overshoot_ms`` is its latency beyond ``hold_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchlib.stats import summary


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    host_header: str


@dataclass
class Outcome:
    kind: str
    scheduled: float = 0.0
    latency_ms: float = 0.0
    service_ms: float = 0.0
    status: int = 0
    error: str = ""
    ok: bool = False
    hold_s: float = 0.0
    done_at: float = 0.0


@dataclass
class Pool:
    target: Target
    limit: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    sem: asyncio.Semaphore | None = None
    opened: int = 0

    async def get(self, fresh: bool = False) -> tuple[asyncio.StreamReader,
                                                      asyncio.StreamWriter]:
        """An idle keep-alive connection, or a new one (always new with ``fresh``)."""
        if self.idle and not fresh:
            return self.idle.pop()
        ctx = None
        if self.target.scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.opened += 1
        return await asyncio.open_connection(self.target.host, self.target.port, ssl=ctx)


def parse_target(url: str) -> Target:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"bad --url {url!r}: expected http(s)://host[:port]")
    port = u.port or (443 if u.scheme == "https" else 80)
    return Target(u.scheme, u.hostname, port, u.netloc)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    keep = headers.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        keep = False
    return status, keep


async def _one(pool: Pool, entry: dict[str, Any], scheduled: float, timeout: float) -> Outcome:
    out = Outcome(kind=entry.get("kind", "default"), hold_s=float(entry.get("hold_s", 0)))
    assert pool.sem is not None
    async with pool.sem:
        sent = time.perf_counter()
        hdrs = {"Host": pool.target.host_header, "Accept": "application/json",
                "User-Agent": "ravada-bench", **entry.get("headers", {})}
        req = (f"GET {entry['path']} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode("latin-1")
        try:
            # A reused keep-alive connection may have been closed by the server just as the
            # request left (its keep-alive timeout): as HTTP clients do for a GET, try again,
            # on a new connection (which cannot have that race).
            for attempt in (1, 2):
                reused = bool(pool.idle) and attempt == 1
                reader, writer = await asyncio.wait_for(pool.get(fresh=attempt == 2), timeout)
                try:
                    writer.write(req)
                    await writer.drain()
                    out.status, keep = await asyncio.wait_for(_read_response(reader), timeout)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    if not reused or attempt == 2:
                        raise
            out.ok = out.status in entry.get("ok_status", ()) or 200 <= out.status < 300
            if keep:
                pool.idle.append((reader, writer))
            else:
                writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError,
                asyncio.LimitOverrunError) as exc:
            out.error = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        done = time.perf_counter()
    out.done_at = done
    out.scheduled = scheduled
    out.latency_ms = (done - scheduled) * 1000
    out.service_ms = (done - sent) * 1000
    return out


async def run(url: str, plan: list[dict[str, Any]], rate: float, duration: float,
              connections: int = 256, timeout: float = 10.0,
              trace: Path | None = None) -> dict[str, Any]:
    """Send ``rate * duration`` requests on schedule; return the measured figures.

    ``trace``: also write one line per request (seconds since the start as scheduled,
    latency ms, kind, status), to find when a tail happened (a stall) and line it up with
    what the server did then."""
    if rate <= 0 or duration <= 0 or not plan:
        raise ValueError("rate and duration must be positive and the plan not empty")
    pool = Pool(parse_target(url), connections)
    pool.sem = asyncio.Semaphore(connections)
    total = int(rate * duration)
    tasks = []
    late = 0.0
    t0 = time.perf_counter() + 0.05
    t0_epoch = time.time() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        tasks.append(asyncio.create_task(_one(pool, plan[i % len(plan)], scheduled, timeout)))
    outcomes: list[Outcome] = await asyncio.gather(*tasks)
    # served rate: up to the last answer of a request not held on purpose (the long-polls
    # sent last are answered one hold later: their tail is not a slower server)
    elapsed = max((o.done_at for o in outcomes if not o.hold_s), default=0.0) - t0
    elapsed = max(elapsed, total / rate)
    for _, w in pool.idle:
        w.close()
    ok = [o for o in outcomes if not o.error and o.ok]
    if trace is not None:
        trace.write_text(f"# start {t0_epoch:.4f}\n" + "".join(
            f"{o.scheduled - t0:.4f} {o.latency_ms:.2f} {o.kind} "
            f"{o.error.split(':')[0] or o.status}\n" for o in outcomes), encoding="utf-8")
    statuses: dict[str, int] = {}
    for o in outcomes:
        key = o.error.split(":")[0] if o.error else str(o.status)
        statuses[key] = statuses.get(key, 0) + 1
    kinds = sorted({o.kind for o in outcomes})
    return {
        "rate_target": rate,
        "duration_s": duration,
        "sent": total,
        "ok": len(ok),
        "errors": total - len(ok),
        "statuses": statuses,
        "achieved_rps": round(len(outcomes) / elapsed, 1),
        "max_schedule_lag_ms": round(late * 1000, 2),
        "connections_opened": pool.opened,
        "latency_ms": summary([o.latency_ms for o in outcomes if not o.hold_s], 2),
        "service_ms": summary([o.service_ms for o in outcomes if not o.hold_s], 2),
        "long_polls": sum(1 for o in outcomes if o.hold_s),
        "long_poll_overshoot_ms": summary([o.latency_ms - o.hold_s * 1000 for o in outcomes
                                           if o.hold_s], 2),
        "by_kind": {k: summary([o.latency_ms for o in outcomes if o.kind == k], 2)
                    for k in kinds},
        "first_error": next((o.error or str(o.status) for o in outcomes if o not in ok), None),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="http(s)://host:port of the server")
    p.add_argument("--plan", required=True, type=Path, help="JSON list of requests")
    p.add_argument("--rate", required=True, type=float, help="requests per second")
    p.add_argument("--duration", type=float, default=20, help="seconds (default 20)")
    p.add_argument("--connections", type=int, default=256, help="most open connections")
    p.add_argument("--timeout", type=float, default=10, help="per-request timeout, seconds")
    p.add_argument("--out", type=Path, help="write the result JSON here (default stdout)")
    p.add_argument("--trace", type=Path, help="write one line per request here")
    a = p.parse_args(argv)
    plan = json.loads(a.plan.read_text(encoding="utf-8"))
    result = asyncio.run(run(a.url, plan, a.rate, a.duration, a.connections, a.timeout,
                                 a.trace))
    text = json.dumps(result, indent=2)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
