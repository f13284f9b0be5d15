"""The rvd_back main loop: claim requests, run them on workers, enforce timeouts.

Wake-ups come from :class:`ravada.queue.Waker` (a datagram from the writer, or an
interrupt when a worker finishes so queued requests for that machine run at once),
with ``queue.fallback_poll`` as a safety net for writers on other hosts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import delete

import ravada
from ravada import queue, waiters
from ravada.back import basecopy, isolib
from ravada.back import handlers as handlers_mod
from ravada.back import nodes as rnodes
from ravada.back.context import SCREENSHOT_DIR, Context, Job, make_firewall
from ravada.back.errors import RequestError
from ravada.back.handlers import Handler
from ravada.back.pool import PoolKeeper, clean_half_made
from ravada.back.recovery import clean_stale_backends, recover
from ravada.back.sync import EventSink, reconcile_firewall, sync_all
from ravada.back.timers import Timers
from ravada.config import Config
from ravada.db import Backend, Database, Request, utcnow
from ravada.db.migrate import upgrade
from ravada.firewall import Firewall, FirewallError
from ravada.virt import Host, VirtError

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # seconds between backends.heartbeat_at updates
STOP_WAIT = 30.0  # seconds SIGTERM waits for running requests


RECOVER_EVERY = 10.0  # seconds between looks for other backends' orphaned requests


@dataclass
class _Running:
    job: Job
    deadline: float
    limit: int
    timed_out: bool = False
    ended: bool = False  # the worker thread returned (guarded by Daemon._lock)


def backend_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Daemon:
    """One rvd_back process. ``start()`` then ``run()`` (blocks until ``stop()``)."""

    def __init__(self, config: Config, *, db: Database | None = None, host: Host | None = None,
                 firewall: Firewall | None = None, screenshot_dir: str | Path = SCREENSHOT_DIR,
                 handlers: dict[str, Handler] | None = None, name: str | None = None,
                 stop_wait: float = STOP_WAIT) -> None:
        self.config = config
        self.name = name or backend_name()
        self.handlers = dict(handlers_mod.HANDLERS if handlers is None else handlers)
        self.stop_wait = stop_wait
        self._own_db = db is None
        # the request workers, the main loop, libvirt's event thread and the ISO transfers
        self.db = db or Database(config.database.url,
                                 pool_size=config.queue.workers + 2 + isolib.TRANSFERS)
        self._sink = EventSink()
        self._own_host = host is None
        self.host = host or Host(config.libvirt.uri, config.libvirt.storage_pool,
                                 on_state=self._sink, on_graphics=self._sink.graphics,
                                 on_agent=self._sink.agent)
        self.ctx = Context(config, self.db, self.host, firewall or make_firewall(config),
                           Path(screenshot_dir))
        self._sink.ctx = self.ctx
        self.ctx.transfers = isolib.Transfers(self.ctx)
        self.timers = Timers(self.ctx)
        self.pool_keeper = PoolKeeper(self.ctx, config.queue.workers)
        self._stopping = threading.Event()
        self._running: dict[Future[None], _Running] = {}
        self._by_id: dict[int, _Running] = {}
        self._lock = threading.Lock()  # timed_out/ended of _Running: the reaper vs the thread
        self._pool = ThreadPoolExecutor(config.queue.workers, thread_name_prefix="worker")
        self.waker: queue.Waker | None = None
        self._next_beat = 0.0
        self._next_recovery = 0.0
        self._last_beat = time.monotonic()  # of this node's row

    # -- start-up ---------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, register, recover interrupted requests, sync state and firewall."""
        before, head = upgrade(self.db.engine)
        if before != head:
            log.info("database upgraded from %s to %s", before or "empty", head)
        self._heartbeat(first=True)
        self.ctx.node_id = rnodes.register(self.config, self.db, self.host)
        self._last_beat = time.monotonic()
        rnodes.adopt(self.db, self.host, self.ctx.node_id)
        basecopy.queue_missing(self.ctx)  # a node added after its bases were prepared
        clean_stale_backends(self.ctx, self.name)
        counts = recover(self.ctx, self.name)
        if any(counts.values()):
            log.warning("recovery: %(retried)d retried, %(failed)d failed, "
                        "%(cleaned)d half-made machines removed", counts)
        clean_half_made(self.ctx)
        sync_all(self.ctx)
        isolib.resume(self.ctx)
        try:
            reconcile_firewall(self.ctx)
        except FirewallError as exc:
            log.error("firewall not reconciled: %s", exc)
        self.waker = queue.Waker(self.config.queue.socket)
        log.info("rvd_back %s ready as %s (%d workers, socket %s)", ravada.__version__,
                 self.name, self.config.queue.workers, self.config.queue.socket)

    def _heartbeat(self, first: bool = False) -> None:
        now = utcnow()
        with self.db.session() as s:
            row = s.get(Backend, self.name)
            if row is None or first:
                s.merge(Backend(name=self.name, version=ravada.__version__, started_at=now,
                                heartbeat_at=now))
            else:
                row.heartbeat_at = now
        if self.ctx.node_id is not None:
            rnodes.heartbeat(self.db, self.host, self.ctx.node_id)
            gap, self._last_beat = time.monotonic() - self._last_beat, time.monotonic()
            if gap > self.config.node.heartbeat_timeout:
                # others took this node for down (and its machines for unknown): look again
                log.warning("no heartbeat for %.0f s: refreshing this node's machines", gap)
                sync_all(self.ctx)
        self._next_beat = time.monotonic() + HEARTBEAT

    # -- main loop --------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop`; then wait (bounded) for running requests."""
        if self.waker is None:
            self.start()
        assert self.waker is not None
        try:
            while not self._stopping.is_set():
                self._reap()
                self._claim_all()
                if self._classroom():
                    continue  # deadlines or refills queued requests: claim them now
                if time.monotonic() >= self._next_beat:
                    try:
                        self._heartbeat()
                    except Exception:  # a DB hiccup must not stop the daemon
                        log.exception("heartbeat failed")
                if time.monotonic() >= self._next_recovery:
                    self._recover_others()
                self.waker.wait(self._wait_time())
        finally:
            self._drain()

    def stop(self) -> None:
        """Stop claiming and leave :meth:`run` (safe from a signal handler)."""
        self._stopping.set()
        if self.waker is not None:
            self.waker.interrupt()

    def _free_slots(self) -> int:
        return self.config.queue.workers - sum(not f.done() for f in self._running)

    def _claim_all(self) -> None:
        claimed = 0
        try:
            while self._free_slots() > 0 and not self._stopping.is_set():
                try:
                    req_id = queue.claim(self.db, self.name, self.ctx.node_id)
                except Exception:
                    log.exception("claim failed")
                    return
                if req_id is None:
                    return
                self._dispatch(req_id)
                claimed += 1
        finally:
            if claimed:  # the requests log shows them working without a reload
                waiters.changed(self.config.queue.socket)

    def _recover_others(self) -> None:
        """Orphans of backends whose heartbeat stopped (even if their pid lives on)."""
        self._next_recovery = time.monotonic() + RECOVER_EVERY
        try:
            rnodes.mark_down(self.db, self.ctx.node_id)
            counts = recover(self.ctx, self.name, starting=False)
        except Exception:
            log.exception("recovery of dead backends' requests failed")
            return
        if any(counts.values()):
            log.warning("recovery: %(retried)d retried, %(failed)d failed, "
                        "%(cleaned)d half-made machines removed, %(released)d machines "
                        "released", counts)

    def _dispatch(self, req_id: int) -> None:
        with self.db.sessionmaker() as s:
            r = s.get(Request, req_id)
            assert r is not None
            job = Job(r.id, r.command, dict(r.args or {}), r.machine_id, r.user_id, r.timeout)
        maximum = self.config.queue.request_timeout
        if job.timeout is not None and not 1 <= job.timeout <= maximum:
            self._fail(job, f"bad timeout {job.timeout} s: at most {maximum} s "
                            "(queue.request_timeout)")
            return
        limit = job.timeout or maximum
        job = replace(job, deadline=time.monotonic() + limit)
        log.info("request %d: %s %s", job.id, job.command,
                 f"machine {job.machine_id}" if job.machine_id else "")
        self.pool_keeper.saw_request(job.id)
        run = _Running(job, job.deadline, limit)
        self._by_id[job.id] = run
        self._running[self._pool.submit(self._execute, job)] = run

    def _reap(self) -> None:
        """Forget finished workers; fail the requests past their deadline.

        A timed-out request is failed at once but keeps its machine until its thread
        returns (see :func:`ravada.queue.release`): two requests of one machine never
        overlap, even when libvirt does not give up in time.
        """
        now = time.monotonic()
        for future, run in list(self._running.items()):
            if future.done():
                del self._running[future]
                self._by_id.pop(run.job.id, None)
                continue
            if run.timed_out or now < run.deadline:
                continue
            with self._lock:
                if run.ended:
                    continue
                run.timed_out = True
                try:
                    queue.finish(self.db, run.job.id, error=f"timed out after {run.limit} s",
                                 still_running=True, wake=self.config.queue.socket)
                except Exception:
                    log.exception("request %d: could not record its timeout", run.job.id)
            log.error("request %d (%s) timed out after %d s; its machine stays busy until "
                      "the worker returns", run.job.id, run.job.command, run.limit)

    def _classroom(self) -> bool:
        """Fire due deadlines and top up pools; True when that queued requests."""
        queued = False
        try:
            queued = bool(self.timers.fire())
            if self._free_slots() > 0:
                queued = bool(self.pool_keeper.tick()) or queued
        except Exception:  # a DB hiccup must not stop the daemon
            log.exception("deadlines / pools not handled")
        return queued

    def _wait_time(self) -> float:
        now = time.monotonic()
        wait = min(self.config.queue.fallback_poll, max(0.0, self._next_beat - now))
        deadlines = [r.deadline for r in self._running.values() if not r.timed_out]
        if deadlines:
            wait = min(wait, max(0.0, min(deadlines) - now))
        wait = self.pool_keeper.next_wait(wait)
        try:
            wait = self.timers.next_wait(wait)
        except Exception:
            log.exception("next deadline not read")
        return wait

    def _execute(self, job: Job) -> None:
        """Run one request on a worker thread and record its outcome."""
        try:
            handler = self.handlers.get(job.command)
            if handler is None:
                known = ", ".join(sorted(self.handlers))
                raise RequestError(f"unknown command {job.command!r} (known: {known})")
            result = handler(self.ctx, job) or {}
            if job.ended:  # committed with the handler's last write (Job.end_in)
                queue.announce_end(self.config.queue.socket, job.id)
            else:
                queue.finish(self.db, job.id, result=result, wake=self.config.queue.socket)
            log.info("request %d: %s done", job.id, job.command)
        except (RequestError, VirtError, FirewallError) as exc:
            self._fail(job, str(exc))
        except Exception as exc:
            log.exception("request %d (%s) crashed", job.id, job.command)
            self._fail(job, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._ended(job)
            if self.waker is not None and not self._stopping.is_set():
                self.waker.interrupt()

    def _ended(self, job: Job) -> None:
        """The worker returned: free the machine of a request that had timed out."""
        run = self._by_id.get(job.id)
        if run is None:
            return
        with self._lock:
            run.ended = True
            if not run.timed_out:
                return
        try:
            queue.release(self.db, job.id)
            log.info("request %d: the timed-out worker returned; machine %s is free",
                     job.id, job.machine_id)
        except Exception:
            log.exception("request %d: could not release its machine", job.id)

    def _fail(self, job: Job, error: str) -> None:
        log.warning("request %d: %s failed: %s", job.id, job.command, error)
        try:
            queue.finish(self.db, job.id, error=error, wake=self.config.queue.socket)
        except Exception:
            log.exception("request %d: could not record the failure", job.id)

    # -- shutdown ---------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Requests still running on worker threads."""
        return sum(not f.done() for f in self._running)

    def _drain(self) -> None:
        pending = [f for f in self._running if not f.done()]
        if pending:
            log.info("waiting up to %.0f s for %d running requests", self.stop_wait, len(pending))
            wait(pending, timeout=self.stop_wait)
        if self.busy:
            log.warning("%d requests still running at exit; the next start recovers them",
                        self.busy)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.ctx.transfers is not None:
            self.ctx.transfers.stop()

    def close(self) -> None:
        """Release the socket, the backends row, events and connections."""
        if self.waker is not None:
            self.waker.close()
            self.waker = None
        try:
            with self.db.session() as s:
                s.execute(delete(Backend).where(Backend.name == self.name))
        except Exception:
            log.exception("could not unregister backend %s", self.name)
        self._sink.close()
        if self._own_host:
            self.host.close()
        if self._own_db:
            self.db.dispose()
