"""The front's long-polls: wait for a request on the backend's wake-up, a few per user.

A wait holds one of the front's threads (gunicorn gthread) for up to its ``wait`` seconds.
Each user may hold ``front.max_waits_per_user`` of them at once in a process; one more gets
429 at once, so a single account cannot take every thread and lock the others out.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from flask_babel import gettext as _

from ravada import queue
from ravada.db import Request
from ravada.front.errors import TooManyRequests
from ravada.front.state import FrontState, Viewer

_lock = threading.Lock()
_held: Counter[int] = Counter()


@contextmanager
def slot(fs: FrontState, viewer: Viewer) -> Iterator[None]:
    """Hold one of the viewer's wait slots, or refuse with 429."""
    cap = fs.config.front.max_waits_per_user
    with _lock:
        if _held[viewer.id] >= cap:
            raise TooManyRequests(
                _("you already have %(cap)s requests waiting (at most %(cap)s at once); try "
                  "again when one has answered", cap=cap), headers={"Retry-After": "1"})
        _held[viewer.id] += 1
    try:
        yield
    finally:
        with _lock:
            _held[viewer.id] -= 1
            if _held[viewer.id] <= 0:
                del _held[viewer.id]


def wait_for(fs: FrontState, viewer: Viewer, req_id: int, wait: float) -> Request:
    """The request row once it ended or after ``wait`` s, woken by the backend's notice."""
    with slot(fs, viewer):
        return queue.wait_for(fs.db, req_id, wait, wake=fs.config.queue.socket)
