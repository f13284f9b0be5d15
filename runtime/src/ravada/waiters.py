"""Wake the front's long-polls when a request ends (the queue's datagram wake-up, reversed).

Each front process that waits on a request binds one abstract UNIX datagram socket named
``@ravada-done-<tag>-<pid>-<n>`` (``tag`` is a hash of ``queue.socket``, so two installations
or test runs on one host never mix). Whoever finishes a request (rvd_back, after the commit)
calls :func:`announce`, which finds those sockets in ``/proc/net/unix`` and sends them the
request id. A waiting thread registers with :meth:`Listener.watch` *before* it reads the row,
so an end committed after that read always wakes it; it then sleeps on an Event instead of
querying the database every few milliseconds.

Abstract sockets need no directory both the root backend and the ``ravada`` front may write,
and vanish with their process. A request finished elsewhere (a backend on another host, an
old backend) is still seen: waiters re-read the row every :data:`FALLBACK` seconds.
The id :data:`CHANGED` (0) is no request: it says that some machine or request row changed
(a lifecycle event, a request claimed or finished) and wakes the live lists; :data:`ISOS` (-1)
says the same of the ISO library's rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

PREFIX = "ravada-done-"
FALLBACK = 1.0  # seconds between re-reads of a row when no wake-up comes
PEERS_TTL = 1.0  # seconds a scan of /proc/net/unix is reused
PROC_NET_UNIX = "/proc/net/unix"
_counter = itertools.count()


def tag(socket_path: str) -> str:
    """Short name of one installation: its queue socket."""
    return hashlib.sha256(os.path.abspath(socket_path).encode()).hexdigest()[:10]


class Listener:
    """One process's socket; threads wait on Events set by its reader thread."""

    def __init__(self, socket_path: str) -> None:
        self.pid = os.getpid()
        self.name = f"{PREFIX}{tag(socket_path)}-{self.pid}-{next(_counter)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self._lock = threading.Lock()
        self._waiting: dict[int, set[threading.Event]] = {}
        self.wakeups = 0
        threading.Thread(target=self._read, name="ravada-waiters", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            for part in data.split(b","):
                if part.isdigit() or (part[:1] == b"-" and part[1:].isdigit()):
                    self._wake(int(part))

    def _wake(self, req_id: int) -> None:
        with self._lock:
            events = list(self._waiting.get(req_id, ()))
            self.wakeups += 1
        for event in events:
            event.set()

    @contextlib.contextmanager
    def watch(self, req_id: int) -> Iterator[threading.Event]:
        """An Event set when ``req_id`` is announced as ended (register before reading)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(req_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiting.get(req_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[req_id]


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def listener(socket_path: str) -> Listener | None:
    """This process's listener for ``socket_path`` (made after a fork too); None if the
    platform has no abstract sockets (then waiters only re-read)."""
    with _listeners_lock:
        current = _listeners.get(socket_path)
        if current is None or current.pid != os.getpid():
            try:
                current = _listeners[socket_path] = Listener(socket_path)
                _peers.clear()  # an announcer in this process sees the new socket at once
                _hello(socket_path)
            except OSError as exc:
                log.warning("no wake-up socket for long-polls (%s); polling instead", exc)
                return None
        return current


_peers: dict[str, tuple[float, list[str]]] = {}
# Announced like a request id: "a machine or request row changed" (the live lists wait on it).
CHANGED = 0
# "An ISO library row changed" (a transfer's progress, once a second): only the ISO page's
# long-poll waits on it, so a download does not wake every user's desktop list.
ISOS = -1
HELLO = b"w"  # to the queue socket: "a new waiter socket exists" (rvd_back scans again)


def _hello(socket_path: str) -> None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.sendto(HELLO, socket_path)


def forget_peers() -> None:
    """Scan /proc/net/unix again at the next announce (a front process started waiting)."""
    _peers.clear()


def _scan(prefix: str) -> list[str]:
    names = []
    try:
        with open(PROC_NET_UNIX, encoding="ascii", errors="replace") as f:
            next(f, None)
            for line in f:
                path = line.rsplit(None, 1)[-1] if line.count(" ") >= 7 else ""
                if path.startswith("@" + prefix):
                    names.append(path[1:])
    except OSError:
        return []
    return names


def announce(socket_path: str, req_ids: Iterable[int]) -> int:
    """Tell every waiting front process of this installation that ``req_ids`` ended.

    Call after the commit. Best effort (a full or gone socket is skipped); returns how many
    processes were told.
    """
    payload = ",".join(str(i) for i in req_ids).encode()
    if not payload:
        return 0
    prefix = f"{PREFIX}{tag(socket_path)}-"
    now = time.monotonic()
    cached = _peers.get(prefix)
    if cached is None or now - cached[0] > PEERS_TTL:
        cached = (now, _scan(prefix))
        if cached[1]:  # nobody waiting yet: look again next time
            _peers[prefix] = cached
    told = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for name in cached[1]:
            try:
                s.sendto(payload, "\0" + name)
                told += 1
            except OSError:
                _peers.pop(prefix, None)  # a front went away: scan again next time
    return told


def changed(socket_path: str) -> int:
    """Tell the front processes that machine or request rows changed (after the commit):
    the live lists (:mod:`ravada.front.live`) read them again instead of polling."""
    return announce(socket_path, [CHANGED])
