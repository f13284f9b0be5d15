"""Operations endpoints: /healthz and /metrics (Prometheus, computed from the DB at scrape time).

Both tell an outsider about the deployment, so only the addresses of
``front.metrics_allow`` (client address as the trusted proxy reports it) or a
request with ``Authorization: Bearer <front.metrics_token>`` get /metrics and
the details of /healthz; everyone else gets 403 from /metrics and a bare
``{"status": "ok"|"fail"}`` from /healthz. Apache applies the same address list
in front (``Require ip``), so this is the second of two locks.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import case, func, literal_column, select, text

from ravada.db import Backend, ConsoleSession, Database, LoginAttempt, Machine, Request, utcnow
from ravada.front.netutil import is_trusted, parse_networks

bp = Blueprint("ops", __name__)
HEARTBEAT_MAX_AGE = 90.0  # seconds; rvd_back beats much more often
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MACHINE_STATES = ("creating", "shutdown", "running", "paused", "hibernated", "removing",
                  "failed", "unknown")


def health(db: Database) -> tuple[dict[str, Any], bool]:
    """DB reachable and the newest backend heartbeat recent enough."""
    try:
        with db.sessionmaker() as s:
            s.execute(text("SELECT 1"))
            newest = s.scalar(select(func.max(Backend.heartbeat_at)))
    except Exception as exc:  # any driver error means "down"
        return {"status": "fail", "database": "unreachable", "detail": str(exc)[:200]}, False
    age = None if newest is None else max(0.0, (utcnow() - newest).total_seconds())
    ok = age is not None and age <= HEARTBEAT_MAX_AGE
    return {"status": "ok" if ok else "fail", "database": "ok",
            "backend_heartbeat_age_s": None if age is None else round(age, 3),
            "backend_heartbeat_max_age_s": HEARTBEAT_MAX_AGE,
            "backend": "ok" if ok else ("missing" if age is None else "stale")}, ok


def _duration_expr(dialect: str) -> Any:
    if dialect == "sqlite":
        return literal_column(
            "((julianday(requests.finished_at) - julianday(requests.created_at)) * 86400.0)")
    return literal_column(
        "(TIMESTAMPDIFF(MICROSECOND, requests.created_at, requests.finished_at) / 1000000.0)")


class DatabaseCollector:
    """Builds every metric from database queries when Prometheus scrapes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        with self.db.sessionmaker() as s:
            machines = GaugeMetricFamily("ravada_machines", "Machines by state", labels=["state"])
            counts = dict(s.execute(select(Machine.state, func.count())
                                    .group_by(Machine.state)).all())
            for state in sorted(set(MACHINE_STATES) | set(counts)):
                machines.add_metric([state], counts.get(state, 0))
            yield machines

            reqs = CounterMetricFamily("ravada_requests", "Requests by command and status",
                                       labels=["command", "status"])
            for command, status, n in s.execute(
                    select(Request.command, Request.status, func.count())
                    .group_by(Request.command, Request.status)):
                reqs.add_metric([command, status], n)
            yield reqs

            dur = _duration_expr(self.db.dialect)
            cols = [func.sum(case((dur <= b, 1), else_=0)) for b in LATENCY_BUCKETS]
            row = s.execute(select(func.count(), func.coalesce(func.sum(dur), 0.0), *cols)
                            .select_from(Request)
                            .where(Request.finished_at.is_not(None))).one()
            total, total_sum = int(row[0] or 0), float(row[1] or 0.0)
            buckets = [(str(b), int(c or 0)) for b, c in zip(LATENCY_BUCKETS, row[2:],
                                                              strict=True)]
            hist = HistogramMetricFamily(
                "ravada_request_latency_seconds",
                "Time from submission to the end of a request (finished_at - created_at)",
                buckets=[*buckets, ("+Inf", total)], sum_value=total_sum)
            yield hist

            logins = CounterMetricFamily("ravada_logins", "Login attempts by outcome",
                                         labels=["outcome"])
            outcome = dict(s.execute(select(LoginAttempt.ok, func.count())
                                     .group_by(LoginAttempt.ok)).all())
            logins.add_metric(["ok"], outcome.get(True, 0))
            logins.add_metric(["failed"], outcome.get(False, 0))
            yield logins

            sessions = CounterMetricFamily("ravada_console_sessions",
                                           "Browser-console sessions started")
            sessions.add_metric([], s.scalar(select(func.count()).select_from(ConsoleSession)))
            yield sessions
            active = GaugeMetricFamily("ravada_console_sessions_active",
                                       "Browser-console sessions open now")
            active.add_metric([], s.scalar(select(func.count()).select_from(ConsoleSession)
                                           .where(ConsoleSession.ended_at.is_(None))))
            yield active


def ops_allowed(allow: list[str], token: str) -> bool:
    """The current request comes from an allowed address or carries the metrics token."""
    if is_trusted(request.remote_addr or "", parse_networks(allow)):
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode())


def _allowed() -> bool:
    from ravada.front.state import front

    cfg = front().config.front
    return ops_allowed(cfg.metrics_allow, cfg.metrics_token)


@bp.get("/healthz")
def healthz() -> Any:
    from ravada.front.state import front

    body, ok = health(front().db)
    if not _allowed():
        body = {"status": body["status"]}
    resp = jsonify(body)
    resp.status_code = 200 if ok else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/metrics")
def metrics() -> Any:
    from ravada.front.state import front

    if not _allowed():
        abort(403, "metrics are for the monitoring addresses (front.metrics_allow) "
                   "or the metrics token")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(front().db))  # type: ignore[arg-type]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
