"""The admin machine page, its hardware forms, the live lists and the requests log filters
(the real front with the stub backend of test_front_support)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import update
from test_front_support import World, csrf_of, wait_until, world  # noqa: F401

from ravada import queue, waiters
from ravada.db import Machine


def _post(c: Any, url: str, **data: Any) -> Any:
    return c.post(url, data={"csrf_token": csrf_of(c), **data})


def _settled(w: World) -> None:
    """The stub backend has finished every request."""
    wait_until(lambda: all(r.status in queue.FINAL for r in w.requests()))


def _page(c: Any, url: str) -> str:
    return c.get(url).get_data(as_text=True)


def test_summary_and_only_the_actions_that_apply(world: World) -> None:  # noqa: F811
    w = world
    admin = w.client("admin")
    page = _page(admin, f"/admin/machines/{w.alice_vm}")
    assert '<span class="state state-running" id="machine-state">running</span>' in page
    assert f'clone of <a href="/admin/machines/{w.base}">desk</a>' in page
    assert "<dt>Owner</dt><dd>alice</dd>" in page
    assert "SPICE port 5990 (TLS 5991), VNC port 5992" in page
    offered = {a for a in ("start", "resume", "prepare_base", "shutdown", "hibernate", "reboot",
                           "remove", "force_shutdown", "remove_base")
               if f'name="action" value="{a}"' in page}
    assert offered == {"shutdown", "hibernate", "reboot", "remove", "force_shutdown"}
    # destructive actions carry a confirmation box, the others do not
    assert 'name="confirm" value="yes" required> Yes, remove desk-alice' in page
    assert "Yes, shutdown" not in page
    # the base: no start, no remove while it has a clone, and the hardware refusal says why
    page = _page(admin, f"/admin/machines/{w.base}")
    assert 'value="start"' not in page and 'value="remove' not in page
    assert "desk is a base with 1 clone(s)" in page
    # the list links to this page, never to the user's display page
    page = _page(admin, "/admin/machines")
    assert f'href="/admin/machines/{w.alice_vm}"' in page and 'value="resume"' not in page
    assert w.client("alice").get(f"/admin/machines/{w.alice_vm}").status_code == 403


def test_hardware_forms_queue_checked_requests(world: World) -> None:  # noqa: F811
    w = world
    admin = w.client("admin")
    r = _post(admin, f"/admin/machines/{w.alice_vm}/hardware/size", memory_mb="4096", vcpus="2")
    hw = w.requests("hardware")
    assert len(hw) == 1 and hw[0].args == {"memory_mb": 4096, "vcpus": 2}
    assert r.location.endswith(f"/admin/machines/{w.alice_vm}?request={hw[0].id}")
    page = _page(admin, r.location)
    assert f'data-follow="{hw[0].id}"' in page
    _settled(w)
    r = _post(admin, f"/admin/machines/{w.alice_vm}/hardware/devices", vnc="on", sound="on")
    assert w.requests("hardware")[-1].args == {"spice": False, "vnc": True, "sound": True,
                                               "usb_redirect": False}
    _settled(w)
    _post(admin, f"/admin/machines/{w.alice_vm}/hardware/iso", iso="debian.iso")
    assert w.requests("hardware")[-1].args == {"iso": "debian.iso"}
    _settled(w)
    _post(admin, f"/admin/machines/{w.alice_vm}/hardware/iso", iso="")
    assert w.requests("hardware")[-1].args == {"iso": None}
    _settled(w)
    _post(admin, f"/admin/machines/{w.alice_vm}/hardware/grow_disk", dev="vda", gb="30")
    assert w.requests("hardware")[-1].args == {"grow_disk": {"dev": "vda", "gb": 30}}
    count = len(w.requests("hardware"))
    for section, data, message in [
        ("size", {"memory_mb": "lots", "vcpus": "1"}, "memory_mb: an integer from 64 to 65536"),
        ("size", {"memory_mb": "1024", "vcpus": "999"}, "vcpus: an integer from 1 to 64"),
        ("devices", {}, "keep at least one of SPICE and VNC"),
        ("iso", {"iso": "../../etc/shadow.iso"}, "no ISO named"),
        ("add_disk", {"add_disk_gb": "0"}, "add_disk_gb: an integer from 1"),
        ("grow_disk", {"dev": "sda", "gb": "9"}, "grow_disk:"),
        ("cpu", {}, "No hardware form"),
    ]:
        r = _post(admin, f"/admin/machines/{w.alice_vm}/hardware/{section}", **data)
        assert r.status_code == 302
        assert message in _page(admin, r.location), (section, data)
    # a base with clones: refused with the reason, nothing queued
    r = _post(admin, f"/admin/machines/{w.base}/hardware/size", memory_mb="4096", vcpus="2")
    assert "desk is a base with 1 clone(s)" in _page(admin, r.location)
    assert len(w.requests("hardware")) == count
    # non-admins cannot
    alice = w.client("alice")
    assert _post(alice, f"/admin/machines/{w.alice_vm}/hardware/size", memory_mb="4096",
                 vcpus="2").status_code == 403
    assert len(w.requests("hardware")) == count


def test_destructive_actions_need_the_confirmation(world: World) -> None:  # noqa: F811
    w = world
    admin = w.client("admin")
    r = _post(admin, f"/admin/machines/{w.alice_vm}", action="remove", next="machine")
    assert "Remove needs a confirmation" in _page(admin, r.location)
    assert w.requests("remove") == []
    r = _post(admin, f"/admin/machines/{w.alice_vm}", action="remove", next="machine",
              confirm="yes")
    rid = w.requests("remove")[0].id
    assert r.location.endswith(f"/admin/machines/{w.alice_vm}?request={rid}")


def test_description_is_markdown_rendered_safely_on_the_card(world: World) -> None:  # noqa: F811
    w = world
    admin = w.client("admin")
    text = ("**LibreOffice** and [docs](https://example.org/docs)\n\n"
            "<script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror=alert(3)>")
    r = _post(admin, f"/admin/machines/{w.base}/description", description=text)
    assert "Description saved." in _page(admin, r.location)
    page = _page(w.client("alice"), "/")
    assert "<strong>LibreOffice</strong>" in page
    assert '<a href="https://example.org/docs" rel="nofollow noopener">docs</a>' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript' not in page and "<img" not in page
    r = _post(admin, f"/admin/machines/{w.base}/description", description="x" * 10001)
    assert "description: must be 0 to 10000 characters long" in _page(admin, r.location)


def _live(c: Any, url: str, after: str = "", wait: float = 0) -> dict[str, Any]:
    sep = "&" if "?" in url else "?"
    r = c.get(f"{url}{sep}after={after}&wait={wait}")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.headers["Cache-Control"] == "no-store"
    return r.json


def test_live_lists_answer_when_the_backend_announces_a_change(world: World) -> None:  # noqa: F811
    w = world
    admin = w.client("admin")
    first = _live(admin, "/live/machines")
    assert "desk-alice" in first["html"] and "state-running" in first["html"]
    # nothing changes: the wait ends at its time with the same rows
    t0 = time.monotonic()
    assert _live(admin, "/live/machines", first["fp"], 0.6)["fp"] == first["fp"]
    assert time.monotonic() - t0 >= 0.5

    def stop_it() -> None:  # what the backend's lifecycle event does: write, then announce
        time.sleep(0.5)
        with w.db.session() as s:
            s.execute(update(Machine).where(Machine.id == w.alice_vm)
                      .values(state="shutdown", display=None))
        waiters.changed(w.config.queue.socket)

    threading.Thread(target=stop_it).start()
    t0 = time.monotonic()
    got = _live(admin, "/live/machines", first["fp"], 20)
    took = time.monotonic() - t0
    assert got["fp"] != first["fp"] and 'state-shutdown">shutdown' in got["html"]
    assert 0.4 < took < 5, took  # woken by the announcement, long before its 20 s
    # the machine page's live part and the user's desktops follow the same way
    part = _live(admin, f"/live/machines/{w.alice_vm}")
    assert 'id="machine-state">shutdown' in part["html"] and 'value="start"' in part["html"]
    assert 'name="confirm" value="yes" required> Yes, remove desk-alice' in part["html"]
    cards = _live(w.client("alice"), "/live/desktops")
    assert 'state-shutdown">shutdown' in cards["html"]
    assert w.client("bob").get("/live/machines").status_code == 403


def test_requests_log_filters(world: World) -> None:  # noqa: F811
    w = world
    admin, alice = w.client("admin"), w.client("alice")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5",
                   headers={"X-CSRFToken": csrf_of(alice)})
    assert r.status_code in (200, 202)
    _settled(w)
    _post(admin, f"/admin/machines/{w.alice_vm}", action="shutdown")
    _settled(w)
    page = _page(admin, "/admin/requests?user=alice")
    assert "<td>screenshot</td>" in page and "<td>shutdown</td>" not in page
    assert f'<a href="/admin/machines/{w.alice_vm}">desk-alice</a>' in page
    page = _page(admin, "/admin/requests?command=shutdown&machine=desk-alice")
    assert "<td>shutdown</td>" in page and "<td>screenshot</td>" not in page
    page = _page(admin, f"/admin/requests?machine={w.alice_vm}&status=done")
    assert "<td>shutdown</td>" in page and "<td>screenshot</td>" in page
    assert "No requests match." in _page(admin, "/admin/requests?since=2999-01-01")
    assert "<td>shutdown</td>" in _page(admin, "/admin/requests?until=2999-01-01T10:00")
    page = _page(admin, "/admin/requests?since=yesterday")
    assert "since: a date YYYY-MM-DD" in page
    page = _page(admin, "/admin/requests?status=lost")
    assert "status: one of requested, working, done, failed" in page
    live = _live(admin, "/live/requests?user=alice")
    assert "<td>screenshot</td>" in live["html"] and "<td>shutdown</td>" not in live["html"]
