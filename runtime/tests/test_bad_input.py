# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""Bad input, one rule everywhere: shared limits, nested JSON, X-Forwarded-Host."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_front_support import World, csrf_of, make_config, world  # noqa: F401

from ravada import limits
from ravada.back import args as back_args
from ravada.back.errors import RequestError
from ravada.back.machines import check_name
from ravada.front import create_app


@pytest.mark.parametrize("body", [
    {"name": "with.dot", "disk_gb": 1},        # the backend refuses dots in domain names
    {"name": "trailing\n", "disk_gb": 1},      # match() with $ let a trailing newline through
    {"name": "big", "disk_gb": 1, "memory_mb": limits.MEMORY_MB[1] + 1},
    {"name": "huge", "disk_gb": limits.DISK_GB[1] + 1},
    {"name": "x" * (limits.MACHINE_NAME_MAX + 1), "disk_gb": 1},
])
def test_front_refuses_what_the_backend_would_refuse(world: World, body: dict[str, Any]) -> None:
    admin = world.client("admin")
    before = len(world.requests("create"))
    r = admin.post("/api/v1/machines", json=body, headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code == 422, r.json
    assert len(world.requests("create")) == before  # nothing was queued
    with pytest.raises(RequestError):  # and the backend says no to the same value
        if "memory_mb" in body:
            back_args.int_arg(body, "memory_mb", *back_args.MEMORY_MB, default=None)
        elif body["disk_gb"] > 1:
            back_args.int_arg(body, "disk_gb", *back_args.DISK_GB, default=None)
        else:
            check_name(body["name"])


def test_limits_are_the_shared_ones_and_edges_pass_both_sides(world: World) -> None:
    assert (back_args.MEMORY_MB, back_args.DISK_GB, back_args.VCPUS) == \
        (limits.MEMORY_MB, limits.DISK_GB, limits.VCPUS)
    admin = world.client("admin")
    body = {"name": "edge_" + "x" * 43, "memory_mb": limits.MEMORY_MB[1],
            "disk_gb": limits.DISK_GB[1], "vcpus": limits.VCPUS[1]}
    r = admin.post("/api/v1/machines", json=body, headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code in (200, 202), r.json
    assert check_name(body["name"]) == body["name"]
    for key, bounds in (("memory_mb", back_args.MEMORY_MB), ("disk_gb", back_args.DISK_GB)):
        assert back_args.int_arg(body, key, *bounds, default=None) == body[key]


def test_user_names_with_a_trailing_newline_are_refused(world: World) -> None:
    admin = world.client("admin")
    r = admin.post("/api/v1/users", json={"name": "carol\n", "password": "long enough pw"},
                   headers={"X-CSRFToken": csrf_of(admin)})
    assert r.status_code == 422 and "name" in r.json["detail"]


def _nested(depth: int) -> bytes:
    return b'{"name": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("url", ["/api/v1/session", "/api/v1/tokens", "/api/v1/machines"])
def test_deeply_nested_json_is_400(world: World, url: str,
                                   caplog: pytest.LogCaptureFixture) -> None:
    admin = world.client("admin")
    h = {"X-CSRFToken": csrf_of(admin), "Content-Type": "application/json"}
    for body in (_nested(1000), b"[" * 1000 + b"]" * 1000, b"[" * 100_000 + b"]" * 100_000):
        r = admin.post(url, data=body, headers=h)
        assert r.status_code == 400, (url, r.status_code)
        assert r.json["error"] == "bad_request" and "nested" in r.json["detail"]
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text
    # An ordinary body still works.
    ok = admin.post(url, data=json.dumps({"name": "nobody", "password": "x" * 9}), headers=h)
    assert ok.status_code < 500


def test_json_depth_ignores_brackets_in_strings() -> None:
    from ravada.front.validate import json_depth

    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[]" * 1000) == 1


def _host_seen(w: World, headers: dict[str, str], peer: str = "127.0.0.1") -> str:
    app = create_app(w.config, w.db)

    @app.get("/_host")
    def _host() -> str:
        from flask import request
        return request.host

    return app.test_client().get("/_host", headers=headers,
                                 environ_base={"REMOTE_ADDR": peer}).get_data(as_text=True)


def test_forwarded_host_is_the_proxys_last_value(world: World, tmp_path: Any) -> None:
    # Apache appends the Host it received to whatever X-Forwarded-Host the client sent.
    spoofed = {"Host": "127.0.0.1:8081", "X-Forwarded-Host": "evil.example, vdi.example.org"}
    assert _host_seen(world, spoofed) == "vdi.example.org"
    assert _host_seen(world, {"X-Forwarded-Host": "vdi.example.org:8443"}) == \
        "vdi.example.org:8443"
    assert _host_seen(world, {"X-Forwarded-Host": "[2001:db8::7]:443"}) == "[2001:db8::7]:443"
    # From an untrusted peer the header means nothing.
    assert _host_seen(world, {"Host": "real.example", "X-Forwarded-Host": "evil.example"},
                      peer="198.51.100.9") == "real.example"
    # A malformed last value: the configured public host (or the Host header when unset).
    bad = {"Host": "127.0.0.1:8081", "X-Forwarded-Host": "ok.example, evil.example/<script>"}
    assert _host_seen(world, bad) == "127.0.0.1:8081"
    world.config = make_config(tmp_path, world.db.url)
    world.config.display.public_host = "desktops.example.org"
    for value in ("evil.example/<script>", "a b", "[::zz]", "x" * 300, "host:99999999"):
        assert _host_seen(world, {"X-Forwarded-Host": value}) == "desktops.example.org", value
