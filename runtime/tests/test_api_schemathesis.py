# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Property-based test of /api/v1 with schemathesis, driven from the OpenAPI document.

Every operation of /api/v1/openapi.json gets generated cases (valid and invalid
input) sent to the real Flask app (SQLite, the stub backend answering the queue),
first as a user and then as an admin, about 1,000 cases in all. A 5xx, a status
or content type the document does not list, or a body that does not match its
schema is a failure; the test collects them all and fails with the distinct ones.
``RAVADA_SCHEMATHESIS_CASES`` sets the cases per operation and role (default 15).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import Failure, FailureGroup  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_front_support import World, world  # noqa: E402, F401

from ravada.db import User  # noqa: E402
from ravada.front import accounts  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
CASES = int(os.environ.get("RAVADA_SCHEMATHESIS_CASES", "15"))


def _token(w: World, user_id: int) -> str:
    with w.db.sessionmaker() as s:
        viewer = accounts.viewer_of(s.get(User, user_id))
    return accounts.create_token(w.app.extensions["ravada"], viewer, "schemathesis")["token"]


def _key(label: str, f: Failure) -> tuple[str, str, str]:
    """What makes a failure distinct: the operation, the check and the first line of its text."""
    first = (f.message or "").strip().splitlines()[:1]
    return label, f"{f.code} {f.title}", (first[0] if first else "")[:120]


def _fuzz(schema: Any, token: str, failures: Counter[tuple[str, str, str]]) -> int:
    """Run CASES cases on every operation; record (operation, check, title) per failure."""
    sent = 0
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        op = result.ok()
        strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE),
                             op.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal sent
            label = case.operation.label
            sent += 1
            response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                for f in group.exceptions:
                    failures[_key(label, f)] += 1
            except Failure as f:
                failures[_key(label, f)] += 1

        run()
    return sent


def test_api_matches_its_openapi_document(world: World, capsys: pytest.CaptureFixture) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", world.app)
    failures: Counter[tuple[str, str, str]] = Counter()
    # The user first: the admin's cases may disable that user or change settings.
    sent = _fuzz(schema, _token(world, world.alice), failures)
    sent += _fuzz(schema, _token(world, world.admin), failures)
    report = "\n".join(f"{n:4} × {op}: {check}: {text}" for (op, check, text), n
                       in sorted(failures.items()))
    with capsys.disabled():
        print(f"\nschemathesis: {sent} cases, {sum(failures.values())} failures, "
              f"{len(failures)} distinct\n{report}")
    assert sent >= 2 * CASES * 30  # every operation ran
    assert not failures, report
