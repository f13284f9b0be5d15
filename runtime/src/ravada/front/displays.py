"""Displays and screenshots of a machine: one-time passwords asked from the backend, waited for.

Opening a display changes the firewall and the password, so it is only ever done for a POST
(or a click's request); the display page shows what that request got.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from ravada import queue
from ravada.db import Machine, Request
from ravada.front import display_requests, waits
from ravada.front.errors import Conflict, NotFound, Unavailable
from ravada.front.i18n import state_label
from ravada.front.machines import (
    DISPLAY_STATES,
    MAX_ID,
    machine_id_from,
    pending_request,
    submit,
    visible_machine,
)
from ravada.front.state import FrontState, Viewer


def iso_now() -> str:
    """Now as the display info writes times (``2026-12-01T00:00:00Z``): comparable text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::", "[::]")


def display_from_result(result: Any, browser_host: str = "") -> dict[str, Any] | None:
    """The display info in a request result (the result itself, or its ``display`` key).

    When the backend only knows an unspecified listen address (``display.public_host``
    unset, listening on 0.0.0.0), clients are sent to ``browser_host``: the host name the
    browser reached the broker with, which is this server.
    """
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("display"), dict) and "password" in result["display"]:
        info = result["display"]
    elif "password" in result and "host" in result:
        info = result
    else:
        return None
    if browser_host and info.get("host") in UNSPECIFIED_HOSTS:
        info = {**info, "host": browser_host}
    return info


def open_display(fs: FrontState, viewer: Viewer, machine_id: int, client_ip: str,
                 wait: float = 10.0, browser_host: str = "",
                 console: bool = False) -> tuple[dict[str, Any], Machine]:
    """Ask the backend for a fresh password and firewall opening for ``client_ip``; wait for it.

    ``console``: for the browser console (rvd_console reaches VNC on loopback), only a
    fresh password, no firewall opening.
    """
    with fs.db.sessionmaker() as s:
        m = visible_machine(s, viewer, machine_id)
        if m.state not in DISPLAY_STATES:
            raise Conflict(_("%(name)s is %(state)s; start it first",
                             name=m.name, state=state_label(m.state)), extra={"state": m.state})
        display_requests.refuse_if_stopping(s, m.id, m.name)
        rid = display_requests.reusable(s, m.id, viewer.id, client_ip,
                                        fs.config.display.password_lifetime, console)
    if rid is None:
        args: dict[str, Any] = {"client_ip": client_ip}
        if console:
            args["console"] = True
        rid = submit(fs, "open_display", args, machine_id=machine_id, user_id=viewer.id)
    req = waits.wait_for(fs, viewer, rid, wait)
    if req.status == queue.FAILED:
        raise Conflict(_("the display could not be opened: %(error)s",
                         error=req.error), extra={"request_id": rid})
    info = display_from_result(req.result, browser_host) if req.status == queue.DONE else None
    if info is None:
        if req.status == queue.DONE:
            raise Unavailable(_("the backend returned no display information"),
                              extra={"request_id": rid})
        raise Unavailable(_("the backend did not answer within %(wait)s s; try again",
                            wait=format(wait, 'g')),
                          extra={"request_id": rid})
    return info, m


def display_of_request(fs: FrontState, viewer: Viewer, machine_id: int, req_id: int,
                       browser_host: str = "") -> dict[str, Any] | None:
    """The display info a finished request of this viewer got for this machine (the
    click that started it), while its password is still valid; else None."""
    with fs.db.sessionmaker() as s:
        r = s.get(Request, req_id) if 0 < req_id <= MAX_ID else None
        if (r is None or r.user_id != viewer.id or r.status != queue.DONE
                or machine_id_from(r) != machine_id):
            return None
        info = display_from_result(r.result, browser_host)
    expires = (info or {}).get("expires")
    if not isinstance(expires, str) or expires <= iso_now():
        return None
    return info


def request_screenshot(fs: FrontState, viewer: Viewer, machine_id: int) -> int:
    with fs.db.sessionmaker() as s:
        m = visible_machine(s, viewer, machine_id)
        if m.state not in DISPLAY_STATES:
            raise Conflict(_("%(name)s is %(state)s; no screen to capture",
                             name=m.name, state=state_label(m.state)))
        pending = pending_request(s, "screenshot", m.id, viewer.id)
        if pending:
            return pending.id
    return submit(fs, "screenshot", {}, machine_id=machine_id, user_id=viewer.id)


def screenshot_path(fs: FrontState, viewer: Viewer, machine_id: int) -> Path:
    """The PNG of the newest finished screenshot of a machine the viewer may see."""
    with fs.db.sessionmaker() as s:
        visible_machine(s, viewer, machine_id)
        req = s.scalar(select(Request).where(
            Request.command == "screenshot", Request.machine_id == machine_id,
            Request.status == queue.DONE).order_by(Request.id.desc()))
    result = req.result if req is not None else None
    path = result if isinstance(result, str) else (
        (result or {}).get("path") if isinstance(result, dict) else None)
    if not isinstance(path, str) or not path.endswith(".png") or not Path(path).is_file():
        raise NotFound(_("no screenshot yet"))
    return Path(path)
