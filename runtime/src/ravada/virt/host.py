"""One libvirt connection (:class:`Host`): guests, lifecycle events, reconnects.

``Host(uri, pool, on_state=None)`` opens ``uri``. ``on_state(name, state)`` is called from the
event thread for libvirt lifecycle events, with state one of ``running``, ``shutdown``,
``paused``, ``hibernated`` (a stop that saved a managed save); crashes report ``shutdown``.
Consecutive equal states of a domain are reported once. ``on_agent(name, connected)`` is
called from the event thread when a domain's QEMU guest agent connects or goes away (libvirt's
agent lifecycle event), so the agent's report is read when there is one, without polling.
``on_state`` also runs in the thread of a Guest call whose outcome is known (start,
force_shutdown, hibernate), so it must be thread-safe and quick (hand the work to a queue).
libvirt's default event loop is registered once per process and runs in a daemon thread.
When libvirtd goes away the close callback starts a reconnect with backoff; after it
reconnects, events are registered again and ``on_state`` is called for every domain with its
current state (events missed while away are made up for). Every public method runs on a live
connection and retries once when the connection broke under it.

- ``conn()`` -- the live ``virConnect`` (reconnects when needed)
- ``guest(name)`` -> :class:`~ravada.virt.guest.Guest` (raises ``GuestNotFound``)
- ``has_guest(name)``, ``list_guests()`` -> ``{name: state}``
- ``define(xml)`` -> ``Guest``; ``domain_type`` is ``"test"`` on the test driver, else ``"kvm"``
- ``storage`` -- :class:`~ravada.virt.storage.Storage` on pool ``pool``
- ``note_state(name, state)`` -- what Guest calls after its own start/stop/hibernate
- ``event_seq()`` / ``wait_for_state(name, states, timeout, since=)`` -- block on events
- ``call(what, fn)`` -- run ``fn(conn)`` with the retry and the error wrapping
- ``close()``
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import libvirt

from ravada.virt.errors import GuestNotFound, VirtError, wrap
from ravada.virt.guest import Guest, domain_state
from ravada.virt.storage import Storage

__all__ = ["GuestNotFound", "Host", "VirtError"]

log = logging.getLogger(__name__)
R = TypeVar("R")
OnState = Callable[[str, str], None]
OnGraphics = Callable[[str, str], None]
# graphics event phase -> what presence cares about (SPICE reports one per channel, in pairs)
_GRAPHICS_PHASE = {
    libvirt.VIR_DOMAIN_EVENT_GRAPHICS_CONNECT: "connect",
    libvirt.VIR_DOMAIN_EVENT_GRAPHICS_DISCONNECT: "disconnect",
}
OnAgent = Callable[[str, bool], None]

_E = libvirt
# lifecycle event -> state (None: not a state change we report)
_EVENT_STATE: dict[int, str | None] = {
    _E.VIR_DOMAIN_EVENT_DEFINED: None,
    _E.VIR_DOMAIN_EVENT_UNDEFINED: None,
    _E.VIR_DOMAIN_EVENT_STARTED: "running",
    _E.VIR_DOMAIN_EVENT_RESUMED: "running",
    _E.VIR_DOMAIN_EVENT_SUSPENDED: "paused",
    _E.VIR_DOMAIN_EVENT_PMSUSPENDED: "paused",
    _E.VIR_DOMAIN_EVENT_STOPPED: "shutdown",
    _E.VIR_DOMAIN_EVENT_SHUTDOWN: None,  # the guest finished its shutdown; STOPPED follows
    _E.VIR_DOMAIN_EVENT_CRASHED: "shutdown",
}

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised as VirtError."""


def ensure_event_loop() -> None:
    """Register libvirt's default event loop (once per process) and run it in a thread."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.registerErrorHandler(_quiet, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # keep the loop alive whatever a callback did
                    log.exception("libvirt event loop")

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


def _broken(conn: libvirt.virConnect | None) -> bool:
    if conn is None:
        return True
    try:
        return conn.isAlive() != 1
    except libvirt.libvirtError:
        return True


class Host:
    """A libvirt connection with lifecycle events and reconnects."""

    RECONNECT_MAX_DELAY = 5.0

    def __init__(self, uri: str, pool: str, on_state: OnState | None = None,
                 on_graphics: OnGraphics | None = None,
                 on_agent: OnAgent | None = None) -> None:
        self.uri = uri
        self.on_state = on_state
        self.on_graphics = on_graphics
        self._graphics_id: int | None = None
        self.on_agent = on_agent
        self.storage = Storage(self.call, pool)
        self._lock = threading.RLock()
        self._cond = threading.Condition()
        self._events: dict[str, tuple[int, str]] = {}
        self._seq = 0
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        self._agent_callback_id: int | None = None
        self._closed = False
        self._reconnecting = False
        self.generation = 0  # bumped on every (re)connect; Guest re-looks its domain up
        ensure_event_loop()
        self._connect()
        self._type = self.call("get driver type", lambda c: c.getType())

    # -- connection -----------------------------------------------------------------------
    def _connect(self) -> libvirt.virConnect:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as err:
            raise wrap(f"cannot connect to libvirt at {self.uri}", err) from None
        try:
            conn.registerCloseCallback(self._on_close, None)
            self._callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
            self._graphics_id = None
            if self.on_graphics is not None:
                self._graphics_id = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_GRAPHICS, self._on_graphics_event, None)
            self._agent_callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent_event, None)
        except libvirt.libvirtError as err:
            conn.close()
            raise wrap(f"cannot watch events of {self.uri}", err) from None
        try:
            conn.setKeepAlive(5, 3)  # notices a dead remote libvirtd
        except libvirt.libvirtError:
            pass  # local drivers (test:///) have no keepalive
        self._conn = conn
        self.generation += 1
        return conn

    def _drop(self, conn: libvirt.virConnect | None) -> None:
        """Forget ``conn`` (when it is still the current one) and close it quietly."""
        with self._lock:
            if conn is None or conn is not self._conn:
                return
            self._conn = None
        graphics_id = self._graphics_id
        for undo in (lambda: conn.domainEventDeregisterAny(self._callback_id),
                     lambda: graphics_id is None or conn.domainEventDeregisterAny(graphics_id),
                     lambda: conn.domainEventDeregisterAny(self._agent_callback_id),
                     conn.unregisterCloseCallback, conn.close):
            try:
                undo()
            except libvirt.libvirtError:
                pass

    def conn(self) -> libvirt.virConnect:
        """The live connection, reconnecting if libvirtd restarted."""
        with self._lock:
            if self._closed:
                raise VirtError(f"connection to {self.uri} is closed")
            if _broken(self._conn):
                self._drop(self._conn)
                return self._connect()
            assert self._conn is not None
            return self._conn

    def call(self, what: str, fn: Callable[[libvirt.virConnect], R]) -> R:
        """``fn(conn)`` on the live connection, once more after a reconnect when the
        connection broke; libvirt errors become ``VirtError("<what>: <reason>")``."""
        for attempt in (0, 1):
            conn = self.conn()
            try:
                return fn(conn)
            except libvirt.libvirtError as err:
                if attempt == 0 and _broken(conn):
                    log.warning("%s: connection to %s broke, retrying", what, self.uri)
                    self._drop(conn)
                    continue
                raise wrap(what, err) from None
        raise AssertionError("unreachable")

    def _on_close(self, conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        """libvirt closed the connection (libvirtd went away): reconnect in the background."""
        log.warning("connection to %s closed (reason %s)", self.uri, reason)
        with self._lock:
            if conn is not self._conn and self._conn is not None:
                return
            self._conn = None
            if self._closed or self._reconnecting:
                return
            self._reconnecting = True
        threading.Thread(target=self._reconnect_loop, name="libvirt-reconnect",
                         daemon=True).start()

    def _reconnect_loop(self) -> None:
        delay = 0.1
        try:
            while not self._closed:
                try:
                    with self._lock:
                        if self._closed:
                            return
                        if _broken(self._conn):
                            self._connect()
                    break
                except VirtError as err:
                    log.info("reconnect to %s failed (%s); next try in %.1fs", self.uri, err, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, self.RECONNECT_MAX_DELAY)
        finally:
            with self._lock:
                self._reconnecting = False
        if not self._closed:
            log.info("reconnected to %s", self.uri)
            try:
                for name, state in self.list_guests().items():
                    self._emit(name, state)
            except VirtError as err:
                log.warning("resync after reconnect failed: %s", err)

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int,
                  detail: int, _opaque: object) -> None:
        state = _EVENT_STATE.get(event)
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED \
                and detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            state = "hibernated"
        elif event == libvirt.VIR_DOMAIN_EVENT_SHUTDOWN:
            # normally STOPPED follows; after a libvirtd restart a destroy may report only
            # SHUTDOWN (detail HOST), so ask whether it is down already
            try:
                state = None if dom.isActive() else domain_state(dom)
            except libvirt.libvirtError:
                state = None
        if state is not None:
            self._emit(dom.name(), state)

    def _on_graphics_event(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, phase: int,
                           _local: object, remote: object, _scheme: str, _subject: object,
                           _opaque: object) -> None:
        what = _GRAPHICS_PHASE.get(phase)
        if what is None or self.on_graphics is None:
            return  # INITIALIZE follows CONNECT of the same client
        try:
            self.on_graphics(dom.name(), what)
        except Exception:
            log.exception("on_graphics(%r, %r) failed", dom.name(), what)

    def _on_agent_event(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, state: int,
                        _reason: int, _opaque: object) -> None:
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        if self.on_agent is not None:
            try:
                self.on_agent(dom.name(), connected)
            except Exception:
                log.exception("on_agent(%r, %r) failed", dom.name(), connected)

    def _emit(self, name: str, state: str) -> None:
        with self._cond:
            last = self._events.get(name)
            self._seq += 1
            self._events[name] = (self._seq, state)
            self._cond.notify_all()
        if last is not None and last[1] == state:
            return  # a start reports STARTED and RESUMED: tell on_state once
        if self.on_state is not None:
            try:
                self.on_state(name, state)
            except Exception:
                log.exception("on_state(%r, %r) failed", name, state)

    def note_state(self, name: str, state: str) -> None:
        """Record a state our own call just caused, as if an event said so (libvirt can miss
        an event, e.g. a destroy right after libvirtd restarted); ``on_state`` still hears of
        each change once."""
        self._emit(name, state)

    def event_seq(self) -> int:
        """The number of the latest event (pass it as ``since`` to :meth:`wait_for_state`)."""
        with self._cond:
            return self._seq

    def wait_for_state(self, name: str, states: Iterable[str], timeout: float,
                       since: int | None = None) -> bool:
        """Wait (on events, no polling) until an event newer than ``since`` reports ``name``
        in one of ``states``; False after ``timeout`` seconds."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = self._events.get(name)
                if seen and (since is None or seen[0] > since) and seen[1] in wanted:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # -- guests ---------------------------------------------------------------------------
    @property
    def domain_type(self) -> str:
        """The ``<domain type=...>`` for this driver: ``test`` or ``kvm``."""
        return "test" if self._type.lower() == "test" else "kvm"

    def guest(self, name: str) -> Guest:
        """The domain ``name``; raises ``GuestNotFound``."""
        return Guest(self, self.call(f"look up machine {name}", lambda c: c.lookupByName(name)))

    def has_guest(self, name: str) -> bool:
        """True when a domain ``name`` is defined."""
        try:
            self.guest(name)
        except GuestNotFound:
            return False
        return True

    def list_guests(self) -> dict[str, str]:
        """Every defined domain: name -> state."""

        def run(conn: libvirt.virConnect) -> dict[str, str]:
            out = {}
            for dom in conn.listAllDomains(0):
                try:
                    out[dom.name()] = domain_state(dom)
                except libvirt.libvirtError as err:  # undefined while we listed
                    if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            return out

        return self.call("list machines", run)

    def define(self, xml: str) -> Guest:
        """Define (persistently) the domain in ``xml``."""
        return Guest(self, self.call("define machine", lambda c: c.defineXML(xml)))

    def close(self) -> None:
        """Deregister events and close the connection; the Host is unusable afterwards."""
        with self._lock:
            self._closed = True
            conn = self._conn
        self._drop(conn)

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
