"""Live lists: a long-poll per list that answers when its rows changed, woken by events.

``GET /live/<list>?after=<fingerprint>&wait=<s>`` renders the list's fragment (the same
template part the page was drawn with) and answers at once when its fingerprint differs
from ``after``; else it sleeps on the backend's change announcement
(:data:`ravada.waiters.CHANGED`: a lifecycle event, a display client, a request claimed or
finished) and renders again, until ``wait`` s have passed. No loop re-reads on a timer:
a quiet list costs one render per ``wait``. The browser (``static/live.js``) asks again
right after each answer.

Each wait holds a front thread, so a process lets at most :data:`LIVE_SHARE` of its threads
wait on lists (and each user only ``front.max_waits_per_user``); past that a list answers at
once with ``retry`` seconds to wait, so clicks and logins always find a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf

from ravada import waiters
from ravada.front import machine_settings, machines, requests_log, validate, waits, web
from ravada.front.errors import TooManyRequests
from ravada.front.server import THREADS_PER_WORKER
from ravada.front.state import front

bp = Blueprint("live", __name__, url_prefix="/live")
LIVE_SHARE = THREADS_PER_WORKER // 2
DEFAULT_WAIT = 25.0
RETRY = 30  # seconds a refused list waits before asking again

_lock = threading.Lock()
_waiting = 0


@contextlib.contextmanager
def _live_slot() -> Any:
    global _waiting
    with _lock:
        if _waiting >= LIVE_SHARE:
            raise TooManyRequests(_("too many live lists wait in this process"),
                                  headers={"Retry-After": str(RETRY)})
        _waiting += 1
    try:
        yield
    finally:
        with _lock:
            _waiting -= 1


def _fp(html: str) -> str:
    """The rows' fingerprint: the forms' CSRF token (signed with the time) left out."""
    return hashlib.sha256(html.replace(generate_csrf(), "").encode()).hexdigest()[:20]


def reply(render: Callable[[], str], channel: int = waiters.CHANGED,
          wrap: Callable[[str], dict[str, Any]] = lambda html: {"html": html}) -> Any:
    """The long-poll around ``render`` (a fragment of the current rows; ``wrap`` makes the
    answer's body of it), woken by announcements on ``channel``.

    The watch on the change announcement starts before the first render, so a change
    committed after that render always wakes this wait.
    """
    after = request.args.get("after") or None
    wait = validate.wait_seconds(request.args.get("wait"), default=DEFAULT_WAIT)
    fs = front()
    listener = waiters.listener(fs.config.queue.socket) if wait > 0 else None
    with (listener.watch(channel) if listener
          else contextlib.nullcontext(None)) as event:
        html = render()
        fp = _fp(html)
        if fp != after or wait <= 0:
            return web.no_store(jsonify({"fp": fp, **wrap(html)}))
        try:
            with _live_slot(), waits.slot(fs, web.current()):
                deadline = time.monotonic() + wait
                while fp == after:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if event is None:
                        time.sleep(left)  # no wake-up socket here: one re-read per wait
                    else:
                        event.wait(left)
                        event.clear()
                    html = render()
                    fp = _fp(html)
        except TooManyRequests:
            return web.no_store(jsonify({"fp": fp, **wrap(html), "retry": RETRY}))
    return web.no_store(jsonify({"fp": fp, **wrap(html)}))


@bp.get("/machines")
@web.admin_required
def machines_list() -> Any:
    def render() -> str:
        with front().db.sessionmaker() as s:
            tree = machines.machine_tree(machines.list_machines(s, web.current()))
            clones = machines.clone_counts(s)
        return render_template("admin/_machine_rows.html", tree=tree, clones=clones,
                               actions_for=machine_settings.actions_for)
    return reply(render)


@bp.get("/machines/<id:machine_id>")
@web.admin_required
def machine(machine_id: int) -> Any:
    def render() -> str:
        data = machine_settings.page(front(), web.current(), machine_id)
        return render_template("admin/_machine_live.html", **data)
    return reply(render)


@bp.get("/requests")
@web.admin_required
def requests() -> Any:
    filters = requests_log.filters(request.args)

    def render() -> str:
        with front().db.sessionmaker() as s:
            rows = requests_log.search(s, web.current(), filters)
        return render_template("admin/_request_rows.html", rows=rows)
    return reply(render)


@bp.get("/desktops")
@web.login_required
def desktops() -> Any:
    def render() -> str:
        with front().db.sessionmaker() as s:
            bases = machines.list_bases(s, web.current())
        return render_template("_desktop_cards.html", bases=bases)
    return reply(render)
