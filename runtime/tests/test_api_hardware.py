# ruff: noqa: F811  (pytest fixtures imported from the support modules)
"""The JSON API of a machine's hardware (issue 15): the same ``hardware`` request as the
admin page's forms, a 4xx naming the field, the base-with-clones refusal with its reason,
and, with the real rvd_back on test:///default, the change applied to the domain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_front_support import World, csrf_of, wait_until, world  # noqa: F401
from test_isolib import Lib

from ravada import queue
from ravada.db import Database, Machine


def _patch(c: Any, machine_id: int, change: Any, wait: float = 0) -> Any:
    return c.patch(f"/api/v1/machines/{machine_id}/hardware?wait={wait}", json=change,
                   headers={"X-CSRFToken": csrf_of(c)})


def _settled(w: World) -> None:
    wait_until(lambda: all(r.status in queue.FINAL for r in w.requests()))


def test_each_change_of_the_page_queues_the_same_request(world: World) -> None:
    w = world
    admin = w.client("admin")
    for change, queued in [
        ({"memory_mb": 4096, "vcpus": 2}, {"memory_mb": 4096, "vcpus": 2}),
        ({"memory_mb": "2048"}, {"memory_mb": 2048}),  # the form's strings are accepted too
        ({"spice": False, "vnc": True, "sound": True, "usb_redirect": False},
         {"spice": False, "vnc": True, "sound": True, "usb_redirect": False}),
        ({"iso": "debian.iso"}, {"iso": "debian.iso"}),
        ({"iso": None}, {"iso": None}),  # eject
        ({"add_disk_gb": 5}, {"add_disk_gb": 5}),
        ({"grow_disk": {"dev": "vda", "gb": 30}}, {"grow_disk": {"dev": "vda", "gb": 30}}),
    ]:
        r = _patch(admin, w.alice_vm, change, wait=5)
        assert r.status_code == 200, (change, r.json)
        assert r.json["request"]["command"] == "hardware"
        hw = w.requests("hardware")[-1]
        assert hw.id == r.json["request_id"] and hw.args == queued and hw.machine_id == w.alice_vm
    _settled(w)
    count = len(w.requests("hardware"))
    for change, status, field, words in [
        ({"memory_mb": "lots"}, 422, "memory_mb", "memory_mb: an integer from 64 to 65536"),
        ({"vcpus": 999}, 422, "vcpus", "vcpus: an integer from 1 to 64"),
        ({"spice": False, "vnc": False}, 422, "spice", "keep at least one of SPICE and VNC"),
        ({"sound": "yes"}, 422, "sound", "sound: true or false"),
        ({"iso": "../../etc/shadow.iso"}, 422, "iso", "no ISO named"),
        ({"iso": 7}, 422, "iso", "iso: an ISO file name"),
        ({"add_disk_gb": 0}, 422, "add_disk_gb", "add_disk_gb: an integer from 1"),
        ({"grow_disk": {"dev": "sda", "gb": 9}}, 422, "grow_disk", "grow_disk:"),
        ({"grow_disk": {"dev": "vda", "gb": -1}}, 422, "grow_disk.gb", "grow_disk.gb:"),
        ({"cpu_model": "host"}, 422, "cpu_model", "unknown hardware setting(s): cpu_model"),
        ({}, 422, "body", "nothing to change"),
    ]:
        r = _patch(admin, w.alice_vm, change)
        assert r.status_code == status, (change, r.json)
        assert r.json["field"] == field and words in r.json["detail"], (change, r.json)
    r = admin.patch(f"/api/v1/machines/{w.alice_vm}/hardware", data="[1]",
                    headers={"X-CSRFToken": csrf_of(admin), "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON object" in r.json["detail"]
    assert len(w.requests("hardware")) == count  # nothing bad was queued


def test_a_base_with_clones_is_refused_with_its_reason(world: World) -> None:
    w = world
    admin = w.client("admin")
    r = _patch(admin, w.base, {"memory_mb": 4096})
    assert r.status_code == 409
    assert r.json["reason"] == "base_has_clones" and r.json["clones"] == 1
    assert "desk is a base with 1 clone(s)" in r.json["detail"]
    assert w.requests("hardware") == []
    hw = admin.get(f"/api/v1/machines/{w.base}/hardware").json
    assert hw["changeable"] is False and "desk is a base with 1 clone(s)" in hw["refusal"]
    own = admin.get(f"/api/v1/machines/{w.alice_vm}/hardware").json
    assert own["changeable"] is True and own["refusal"] is None
    assert own["spice"] is True and own["sound"] is False


def test_a_second_change_while_one_is_pending_and_a_removing_machine_are_409(
        world: World) -> None:
    w = world
    admin = w.client("admin")
    w.backend.stop()  # nobody answers: the first change stays pending
    first = _patch(admin, w.alice_vm, {"vcpus": 2})
    assert first.status_code == 202
    r = _patch(admin, w.alice_vm, {"vcpus": 3})
    assert r.status_code == 409 and r.json["request_id"] == first.json["request_id"]
    with w.db.session() as s:
        s.get(Machine, w.alice_vm).state = "removing"
    r = _patch(admin, w.alice_vm, {"vcpus": 3})
    assert r.status_code == 409 and r.json["reason"] == "state"


def test_users_get_403_and_nothing_is_queued(world: World) -> None:
    w = world
    alice = w.client("alice")
    assert _patch(alice, w.alice_vm, {"memory_mb": 4096}).status_code == 403
    assert alice.get(f"/api/v1/machines/{w.alice_vm}/hardware").status_code == 403
    assert w.requests("hardware") == []


@pytest.fixture
def lib(tmp_path: Path, sqlite_db: Database) -> Iterator[Lib]:
    from test_back import stop_daemon

    w = Lib(tmp_path, sqlite_db)
    yield w
    stop_daemon(w.back)


def test_the_real_backend_applies_an_api_change(lib: Lib) -> None:
    r = lib.c.post("/api/v1/machines?wait=20", headers=lib.h,
                   json={"name": "apihw", "memory_mb": 512, "vcpus": 1, "disk_gb": 1})
    assert r.status_code == 200, r.json
    mid = r.json["request"]["result"]["machine_id"]
    r = lib.c.patch(f"/api/v1/machines/{mid}/hardware?wait=20", headers=lib.h,
                    json={"memory_mb": 1024, "vcpus": 2, "sound": True})
    assert r.status_code == 200 and r.json["status"] == "done", r.json
    hw = lib.c.get(f"/api/v1/machines/{mid}/hardware").json
    assert (hw["memory_mb"], hw["vcpus"], hw["sound"]) == (1024, 2, True)
    assert hw["disks"][0]["dev"] == "vda" and hw["next_start"] == {}
    xml = lib.back.host.conn().lookupByName("apihw").XMLDesc(0)
    assert "<memory unit='KiB'>1048576</memory>" in xml and "<sound model='ich9'" in xml
    assert ">2</vcpu>" in xml
