# ruff: noqa: F811  (pytest fixtures imported from test_front_support)
"""What users and admins do, end to end through the front (stub backend on the real queue)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from test_front_support import World, csrf_of, world, world_both  # noqa: F401

from ravada import console
from ravada.db import Backend, ConsoleSession, Machine, utcnow


def _h(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"X-CSRFToken": csrf_of(c)}


def test_start_clones_then_reuses_and_returns_display(world_both: World) -> None:
    w = world_both
    bob = w.client("bob")
    t0 = time.perf_counter()
    r = bob.post(f"/api/v1/bases/{w.base}/start?wait=10", headers=_h(bob),
                 environ_base={"REMOTE_ADDR": "127.0.0.1"},
                 )
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, r.json
    assert r.json["status"] == "done" and r.json["display"]["password"]
    clone_id = r.json["machine_id"]
    req = w.requests("clone")[-1]
    assert req.args == {"user_id": w.bob, "start": True, "client_ip": "127.0.0.1"}
    assert req.machine_id == w.base and req.user_id == w.bob
    assert elapsed < 2.0
    # Second click: the clone is running, so only the display is opened again.
    r = bob.post(f"/api/v1/bases/{w.base}/start?wait=10", headers=_h(bob))
    assert r.status_code == 200 and r.json["machine_id"] == clone_id
    assert r.json["request"]["command"] == "open_display" and r.json["display"]["vnc"]["port"]
    bases = bob.get("/api/v1/bases").json
    assert bases[0]["clone"]["id"] == clone_id and bases[0]["clone"]["state"] == "running"


def test_long_poll_returns_as_soon_as_the_request_ends(world: World) -> None:
    w = world
    w.backend.paused.set()
    bob = w.client("bob")
    r = bob.post(f"/api/v1/bases/{w.base}/start", headers=_h(bob))
    assert r.status_code == 202 and r.json["status"] == "requested"
    rid = r.json["request_id"]
    # A second click while pending returns the same request (no duplicate clone).
    again = bob.post(f"/api/v1/bases/{w.base}/start", headers=_h(bob))
    assert again.json["request_id"] == rid
    # The index shows the pending request so the page resumes following it.
    assert f'data-pending="{rid}"' in bob.get("/").get_data(as_text=True)

    def release() -> None:
        time.sleep(0.3)
        w.backend.paused.clear()
        w.backend.waker.interrupt()

    threading.Thread(target=release).start()
    t0 = time.perf_counter()
    r = bob.get(f"/api/v1/requests/{rid}?wait=10")
    elapsed = time.perf_counter() - t0
    assert r.json["status"] == "done"
    assert 0.25 < elapsed < 0.8, elapsed  # woke within ms of the finish, not on a 1 s tick
    # Without wait and with a short wait on a stuck backend: answers at once / after wait.
    w.backend.paused.set()
    rid2 = bob.post(f"/api/v1/machines/{r.json['result']['machine_id']}/reboot",
                    headers=_h(bob)).json["request_id"]
    t0 = time.perf_counter()
    assert bob.get(f"/api/v1/requests/{rid2}?wait=0.2").json["status"] == "requested"
    assert 0.19 < time.perf_counter() - t0 < 0.6


def test_display_page_get_opens_nothing_post_opens_for_the_viewer(world: World) -> None:
    w = world
    alice = w.client("alice")
    env = {"REMOTE_ADDR": "127.0.0.1"}
    html = alice.get(f"/machine/{w.alice_vm}", headers={"X-Forwarded-For": "203.0.113.77"},
                     environ_base=env)
    assert html.status_code == 200
    assert html.headers["Cache-Control"] == "no-store"
    page = html.get_data(as_text=True)
    assert w.requests("open_display") == []  # a GET (a link, a reload) opens nothing
    assert 'id="display-password"' not in page
    for action in ("shutdown", "hibernate", "reboot"):
        assert f'data-action="{action}"' in page
    # the buttons are POST forms with the CSRF token
    for target in (f"/api/v1/machines/{w.alice_vm}/display.vv",
                   f"/machine/{w.alice_vm}/console", f"/machine/{w.alice_vm}"):
        assert f'<form method="post" action="{target}">' in page
    assert 'name="csrf_token"' in page
    assert alice.post(f"/machine/{w.alice_vm}").status_code == 400  # no CSRF token: refused
    assert w.requests("open_display") == []
    html = alice.post(f"/machine/{w.alice_vm}", data={"csrf_token": csrf_of(alice)},
                      headers={"X-Forwarded-For": "203.0.113.77"}, environ_base=env)
    assert html.status_code == 200 and html.headers["Cache-Control"] == "no-store"
    page = html.get_data(as_text=True)
    req = w.requests("open_display")[-1]
    assert req.args == {"client_ip": "203.0.113.77"} and req.user_id == w.alice
    assert "Pw" + "x" * 18 in page and "127.0.0.1:5990" in page
    assert "5992" not in page  # VNC is the browser console's unless display.direct_vnc
    w.config.display.direct_vnc = True
    page = alice.post(f"/machine/{w.alice_vm}", data={"csrf_token": csrf_of(alice)}
                      ).get_data(as_text=True)
    assert 'id="vnc-address">127.0.0.1:5992<' in page


def test_display_page_shows_what_the_click_got(world: World) -> None:
    """The click on a desktop (a POST) opened the display; the page it lands on shows that
    request's details without opening again; other people's requests show nothing."""
    w = world
    alice, bob = w.client("alice"), w.client("bob")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display?wait=5", headers=_h(alice))
    assert r.status_code == 200
    rid = w.requests("open_display")[-1].id
    page = alice.get(f"/machine/{w.alice_vm}?request={rid}").get_data(as_text=True)
    assert 'id="display-password">' + r.json["password"] in page
    assert len(w.requests("open_display")) == 1
    admin = w.client("admin")  # an admin following a link to alice's machine opens nothing
    page = admin.get(f"/machine/{w.alice_vm}?request={rid}").get_data(as_text=True)
    assert r.json["password"] not in page and len(w.requests("open_display")) == 1
    assert bob.get(f"/machine/{w.alice_vm}?request={rid}").status_code == 404
    page = admin.get("/admin/machines").get_data(as_text=True)
    # the list leads to the admin machine page, never to the user's display page
    assert f'href="/admin/machines/{w.alice_vm}"' in page
    assert f'href="/machine/{w.alice_vm}"' not in page
    assert admin.get(f"/admin/machines/{w.alice_vm}").status_code == 200
    assert admin.get(f"/machine/{w.alice_vm}").status_code == 200
    assert len(w.requests("open_display")) == 1


def test_opening_the_display_is_never_a_get(world: World) -> None:
    w = world
    alice = w.client("alice")
    for path in ("display", "display.vv", "console"):
        r = alice.get(f"/api/v1/machines/{w.alice_vm}/{path}")
        assert r.status_code == 405 and "POST" in r.headers["Allow"], path
    r = alice.get(f"/machine/{w.alice_vm}/console")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/machine/{w.alice_vm}")
    assert w.requests("open_display") == []
    # bearer tokens need no CSRF token
    token = alice.post("/api/v1/tokens", json={"label": "t"}, headers=_h(alice)).json["token"]
    r = w.app.test_client().post(f"/api/v1/machines/{w.alice_vm}/display",
                                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json["password"].startswith("Pw")


def test_display_when_backend_fails_or_is_slow(world: World) -> None:
    w = world
    alice = w.client("alice")
    w.backend.fail["open_display"] = "firewall exploded"
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display", headers=_h(alice))
    assert r.status_code == 409 and "firewall exploded" in r.json["detail"]
    page = alice.post(f"/machine/{w.alice_vm}", data={"csrf_token": csrf_of(alice)}
                      ).get_data(as_text=True)
    assert "firewall exploded" in page and 'id="display-problem"' in page
    del w.backend.fail["open_display"]
    w.backend.paused.set()
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display?wait=0.1", headers=_h(alice))
    assert r.status_code == 503 and r.json["error"] == "unavailable"


def test_vv_file_spice_and_spice_tls(world: World, tmp_path: Path) -> None:
    w = world
    w.backend.spice_subject = "CN=node1.example.org"  # the machine's node (see below)
    alice = w.client("alice")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display.vv", headers=_h(alice))
    assert r.status_code == 200 and r.mimetype == "application/x-virt-viewer"
    assert 'filename="desk-alice.vv"' in r.headers["Content-Disposition"]
    text = r.get_data(as_text=True)
    assert "[virt-viewer]" in text and "port=5990" in text and "password=Pw" in text
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    w.config.display.spice_tls = True
    w.config.display.spice_ca_file = str(ca)
    # The certificate subject is the one of the node the machine runs on (its backend puts
    # it in the display info), not the front host's.
    w.config.display.spice_host_subject = "CN=broker.example.org"
    # the page's form: a plain POST with the CSRF token in the body
    text = alice.post(f"/api/v1/machines/{w.alice_vm}/display.vv",
                      data={"csrf_token": csrf_of(alice)}).get_data(as_text=True)
    assert "tls-port=5991" in text and "ca=-----BEGIN" in text
    assert "secure-channels=all" in text and "\nport=" not in text
    assert "host-subject=CN=node1.example.org" in text and "broker" not in text
    assert "SPICE-TLS" in alice.get(f"/machine/{w.alice_vm}").get_data(as_text=True)
    w.config.display.spice_ca_file = str(tmp_path / "missing.pem")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/display.vv", headers=_h(alice))
    assert r.status_code == 503 and "CA" in r.json["detail"]


def test_console_ticket_and_ws_url(world: World) -> None:
    w = world
    alice = w.client("alice")
    t = alice.post(f"/api/v1/machines/{w.alice_vm}/console", headers=_h(alice)).json
    claims = console.verify_token(w.app.config["SECRET_KEY"], t["token"])
    assert (claims.user_id, claims.machine_id, claims.host, claims.port) == (
        w.alice, w.alice_vm, "127.0.0.1", 5992)
    assert claims.expires - time.time() <= 60
    assert t["ws_url"].startswith("ws://localhost:8082/?token=")
    assert t["password"].startswith("Pw")
    # the console reaches VNC on loopback: a password, no firewall opening for the viewer
    assert w.requests("open_display")[-1].args == {"client_ip": "127.0.0.1", "console": True}
    # Behind Apache (trusted proxy with HTTPS): same origin, /console/ws.
    t = alice.post(f"/api/v1/machines/{w.alice_vm}/console",
                   headers={"X-Forwarded-For": "203.0.113.1", "X-Forwarded-Proto": "https",
                            "X-Forwarded-Host": "vdi.example.org", **_h(alice)},
                   environ_base={"REMOTE_ADDR": "127.0.0.1"}).json
    assert t["ws_url"].startswith("wss://vdi.example.org/console/ws?token=")
    admin = w.client("admin")
    admin.patch("/api/v1/settings", json={"console_ws_url": "wss://vnc.example.org/ws"},
                headers=_h(admin))
    t = alice.post(f"/api/v1/machines/{w.alice_vm}/console", headers=_h(alice)).json
    assert t["ws_url"].startswith("wss://vnc.example.org/ws?token=")
    page = alice.post(f"/machine/{w.alice_vm}/console", data={"csrf_token": csrf_of(alice)}
                      ).get_data(as_text=True)
    assert 'data-url="wss://vnc.example.org/ws?token=' in page and "console.js" in page


def test_screenshot_flow_and_privacy(world: World) -> None:
    w = world
    alice, bob = w.client("alice"), w.client("bob")
    assert alice.get(f"/api/v1/machines/{w.alice_vm}/screenshot.png").status_code == 404
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5", headers=_h(alice))
    assert r.status_code == 200 and r.json["status"] == "done"
    png = alice.get(f"/api/v1/machines/{w.alice_vm}/screenshot.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG")
    assert bob.get(f"/api/v1/machines/{w.alice_vm}/screenshot.png").status_code == 404
    assert w.client("admin").get(f"/api/v1/machines/{w.alice_vm}/screenshot.png"
                                 ).status_code == 200


def test_power_actions_follow_machine_state(world: World) -> None:
    w = world
    alice = w.client("alice")
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/resume", headers=_h(alice))
    assert r.status_code == 409 and "running" in r.json["detail"]
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/hibernate?wait=5", headers=_h(alice))
    assert r.status_code == 200
    assert alice.get(f"/api/v1/machines/{w.alice_vm}").json["state"] == "hibernated"
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/start?wait=5", headers=_h(alice))
    assert r.status_code == 200
    assert w.requests("start")[-1].args == {"client_ip": "127.0.0.1"}
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/shutdown?wait=5", json={"timeout": 30},
                   headers=_h(alice))
    assert r.status_code == 200 and w.requests("shutdown")[-1].args == {"timeout": 30}
    page = alice.get(f"/machine/{w.alice_vm}").get_data(as_text=True)
    assert 'data-action="start"' in page and 'id="vv-link"' not in page
    # A failed request is a 409 with the backend's reason.
    w.backend.fail["start"] = "no memory left"
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/start?wait=5", headers=_h(alice))
    assert r.status_code == 409 and r.json["detail"] == "no memory left"
    assert r.json["error"] == "request_failed"
    # Users cannot touch bases; removing a base with clones is refused even for admins.
    r = alice.post(f"/api/v1/machines/{w.base}/remove", headers=_h(alice))
    assert r.status_code == 404
    admin = w.client("admin")
    r = admin.post(f"/api/v1/machines/{w.base}/remove", headers=_h(admin))
    assert r.status_code == 409 and "clone" in r.json["detail"]
    r = alice.post(f"/api/v1/machines/{w.alice_vm}/remove?wait=5", headers=_h(alice))
    assert r.status_code == 200
    assert alice.get(f"/api/v1/machines/{w.alice_vm}").status_code == 404


def test_admin_pages_create_prepare_publish(world: World) -> None:
    w = world
    admin = w.client("admin")
    tok = csrf_of(admin)
    page = admin.get("/admin/machines").get_data(as_text=True)
    assert "debian.iso" in page and "desk-alice" in page and "└" in page
    r = admin.post("/admin/machines", data={"name": "win11", "iso": "debian.iso",
                                            "memory_mb": "2048", "vcpus": "2", "disk_gb": "20",
                                            "csrf_token": tok}, follow_redirects=True)
    assert "Creating win11" in r.get_data(as_text=True)
    req = w.requests("create")[-1]
    assert req.args == {"name": "win11", "iso": "debian.iso", "memory_mb": 2048, "vcpus": 2,
                        "disk_gb": 20, "owner_id": w.admin}
    r = admin.post("/admin/machines", data={"name": "x", "iso": "../../etc/passwd",
                                            "csrf_token": tok}, follow_redirects=True)
    assert "no ISO named" in r.get_data(as_text=True)
    from test_front_support import wait_until

    def created() -> bool:
        with w.db.sessionmaker() as s:
            return s.query(Machine).filter_by(name="win11").count() == 1
    wait_until(created)
    with w.db.sessionmaker() as s:
        mid = s.query(Machine).filter_by(name="win11").one().id
    admin.post(f"/admin/machines/{mid}", data={"action": "prepare_base", "csrf_token": tok})
    wait_until(lambda: admin.get(f"/api/v1/machines/{mid}").json["is_base"])
    r = admin.post(f"/admin/machines/{mid}", data={"action": "public", "csrf_token": tok},
                   follow_redirects=True)
    assert "win11 is now public" in r.get_data(as_text=True)
    bob = w.client("bob")
    assert "win11" in [b["name"] for b in bob.get("/api/v1/bases").json]
    # The same through the API.
    r = admin.post(f"/api/v1/machines/{mid}/public", json={"public": False}, headers=_h(admin))
    assert r.json["is_public"] is False
    r = admin.post("/api/v1/machines?wait=5", json={"name": "blank1", "disk_gb": 1},
                   headers=_h(admin))
    assert r.status_code == 200 and r.json["request"]["result"]["machine_id"]
    r = admin.post("/api/v1/machines", json={"name": "blank1"}, headers=_h(admin))
    assert r.status_code == 409
    assert admin.get("/api/v1/isos").json == ["debian.iso"]


def test_admin_users_requests_settings_pages(world: World) -> None:
    w = world
    admin = w.client("admin")
    tok = csrf_of(admin)
    r = admin.post("/admin/users", data={"name": "dave", "password": "davepassword",
                                         "csrf_token": tok}, follow_redirects=True)
    assert "User dave created" in r.get_data(as_text=True)
    users = {u["name"]: u for u in admin.get("/api/v1/users").json}
    dave = users["dave"]["id"]
    for op in ("admin", "disable"):
        admin.post(f"/admin/users/{dave}", data={"op": op, "csrf_token": tok})
    users = {u["name"]: u for u in admin.get("/api/v1/users").json}
    assert users["dave"]["is_admin"] and users["dave"]["is_disabled"]
    admin.post(f"/admin/users/{dave}", data={"op": "enable", "csrf_token": tok})
    admin.post(f"/admin/users/{dave}", data={"op": "password", "password": "newpassword1",
                                             "csrf_token": tok})
    c = w.app.test_client()
    assert c.post("/api/v1/session", json={"name": "dave", "password": "newpassword1"}
                  ).status_code == 200
    r = admin.post(f"/admin/users/{w.admin}", data={"op": "disable", "csrf_token": tok},
                   follow_redirects=True)
    assert "cannot disable yourself" in r.get_data(as_text=True)
    admin.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5", headers=_h(admin))
    page = admin.get("/admin/requests").get_data(as_text=True)
    assert "screenshot" in page and " s</td>" in page
    assert "screenshot" not in admin.get("/admin/requests?status=failed").get_data(as_text=True)
    r = admin.post("/admin/settings", data={"site_title": "Lab VDI", "motd": "Welcome",
                                            "login_max_failures": "5",
                                            "login_window_seconds": "60",
                                            "console_ws_url": "", "csrf_token": tok},
                   follow_redirects=True)
    assert "Settings saved" in r.get_data(as_text=True) and "Lab VDI" in r.get_data(as_text=True)
    r = admin.post("/admin/settings", data={"login_max_failures": "zero", "csrf_token": tok},
                   follow_redirects=True)
    assert "login_max_failures" in r.get_data(as_text=True)
    assert admin.get("/api/v1/settings").json["login_max_failures"] == 5


def test_account_page_and_password_change(world: World) -> None:
    w = world
    alice = w.client("alice")
    assert "API tokens" in alice.get("/account").get_data(as_text=True)
    r = alice.post("/api/v1/password", json={"password": "wrong", "new_password": "x" * 9},
                   headers=_h(alice))
    assert r.status_code == 403
    from test_front_support import PASSWORD
    r = alice.post("/api/v1/password", json={"password": PASSWORD, "new_password": "y" * 10},
                   headers=_h(alice))
    assert r.status_code == 204


def test_healthz_follows_backend_heartbeat(world: World) -> None:
    w = world
    c = w.app.test_client()
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json["status"] == "ok" and r.json["database"] == "ok"
    w.backend.stop()
    with w.db.session() as s:
        s.query(Backend).delete()
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json["backend"] == "missing"
    from datetime import timedelta
    with w.db.session() as s:
        s.add(Backend(name="old", heartbeat_at=utcnow() - timedelta(seconds=600)))
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json["backend"] == "stale"
    w.backend.stop = lambda: None  # type: ignore[method-assign]


def test_healthz_reports_unreachable_database(tmp_path: Path) -> None:
    from test_front_support import make_config

    from ravada.front import create_app
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path}/nodir/x/../../missing/none.db")
    app = create_app(cfg)
    r = app.test_client().get("/healthz")
    assert r.status_code == 503 and r.json["status"] == "fail"


def test_metrics_from_database(world: World) -> None:
    w = world
    alice = w.client("alice")
    alice.post(f"/api/v1/machines/{w.alice_vm}/screenshot?wait=5", headers=_h(alice))
    w.app.test_client().post("/api/v1/session", json={"name": "alice", "password": "badbadbad"})
    with w.db.session() as s:
        s.add(ConsoleSession(user_id=w.alice, machine_id=w.alice_vm, client_ip="1.2.3.4"))
    text = w.app.test_client().get("/metrics").get_data(as_text=True)
    assert 'ravada_machines{state="running"} 1.0' in text
    assert 'ravada_machines{state="shutdown"} 2.0' in text
    assert 'ravada_requests_total{command="screenshot",status="done"} 1.0' in text
    assert 'ravada_request_latency_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'ravada_request_latency_seconds_bucket{le="1.0"} 1.0' in text
    assert 'ravada_logins_total{outcome="ok"} 1.0' in text
    assert 'ravada_logins_total{outcome="failed"} 1.0' in text
    assert "ravada_console_sessions_total 1.0" in text
    assert "ravada_console_sessions_active 1.0" in text


def test_metrics_on_both_databases(world_both: World) -> None:
    alice = world_both.client("alice")
    alice.post(f"/api/v1/machines/{world_both.alice_vm}/screenshot?wait=5", headers=_h(alice))
    text = world_both.app.test_client().get("/metrics").get_data(as_text=True)
    assert 'ravada_request_latency_seconds_count 1.0' in text
    assert 'ravada_request_latency_seconds_bucket{le="0.5"} 1.0' in text


def test_novnc_is_served_locally(world: World) -> None:
    import os
    if not os.path.exists(os.path.join(world.config.front.novnc_dir, "core", "rfb.js")):
        from strict import unavailable
        unavailable("Debian's novnc package is not installed")
    r = world.app.test_client().get("/novnc/core/rfb.js")
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    assert b"export default class RFB" in r.data
    css = world.app.test_client().get("/static/style.css")
    assert css.status_code == 200
    html = world.client("alice").get("/").get_data(as_text=True)
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html
