"""Fixtures for the front tests (imported by test_front_*.py; holds no tests itself).

``StubBackend`` answers requests through the real queue (claim/finish, woken by
the real datagram socket) with results shaped as docs/runtime-contract.md says.
It stands in for rvd_back so these tests can pause the backend or make one command
fail at will; test_browser_front.py drives the real daemon on test:///default.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from ravada import config as rconfig
from ravada import queue
from ravada.db import Backend, Database, Machine, Request, User, utcnow
from ravada.front import create_app
from ravada.front.dbutil import write_session
from ravada.front.security import hash_password

PASSWORD = "correct horse battery"


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A valid RGB PNG (what a screenshot handler writes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\x20\x60\xc0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class StubBackend:
    """Claims requests and finishes them as rvd_back would (no libvirt)."""

    def __init__(self, db: Database, cfg: rconfig.Config, shots: Path) -> None:
        self.db, self.cfg, self.shots = db, cfg, shots
        self.paused = threading.Event()  # set: leave requests pending
        self.fail: dict[str, str] = {}  # command -> error text
        self.vnc_port = 5902
        self.spice_subject: str | None = None  # what a node's backend puts in the info
        self._stop = threading.Event()
        self.waker = queue.Waker(cfg.queue.socket)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StubBackend:
        self.beat()  # a heartbeat before the first request (as rvd_back's start-up writes one)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.waker.interrupt()
        self.thread.join(5)
        self.waker.close()

    def beat(self) -> None:
        with write_session(self.db) as s:
            s.merge(Backend(name="stub", version="0", heartbeat_at=utcnow()))

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_beat:
                self.beat()
                next_beat = time.monotonic() + 1.0
            if not self.paused.is_set():
                while (rid := queue.claim(self.db, "stub")) is not None:
                    try:
                        self._handle(rid)
                    except Exception as exc:  # as rvd_back: the request fails, the loop goes on
                        queue.finish(self.db, rid, error=f"stub: {type(exc).__name__}: {exc}",
                                     wake=self.cfg.queue.socket)
            self.waker.wait(0.05)

    def _info(self, m: Machine) -> dict[str, Any]:
        expires = datetime.now(UTC) + timedelta(seconds=self.cfg.display.password_lifetime)
        spice = {"port": m.display["spice"], "tls_port": m.display.get("spice_tls")}
        if self.spice_subject:
            spice["host_subject"] = self.spice_subject
        return {"host": "127.0.0.1", "password": "Pw" + "x" * 18,
                "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "spice": spice, "vnc": {"port": m.display["vnc"]}, "machine": m.name}

    def _run_machine(self, m: Machine) -> None:
        m.state = "running"
        m.display = {"listen": "127.0.0.1", "spice": 5900 + m.id * 3,
                     "spice_tls": 5901 + m.id * 3, "vnc": self.vnc_port}

    def _handle(self, rid: int) -> None:
        with self.db.session() as s:
            r = s.get(Request, rid)
            command, args, mid = r.command, dict(r.args or {}), r.machine_id
        if command in self.fail:
            queue.finish(self.db, rid, error=self.fail[command], wake=self.cfg.queue.socket)
            return
        result: dict[str, Any] = {}
        with write_session(self.db) as s:
            m = s.get(Machine, mid) if mid else None
            if mid and m is None:
                raise LookupError(f"no machine {mid}")
            if command == "create":
                new = Machine(name=args["name"], owner_id=args["owner_id"], state="shutdown",
                              memory_mb=args["memory_mb"], vcpus=args["vcpus"],
                              disk_gb=args["disk_gb"], iso=args.get("iso"))
                s.add(new)
                s.flush()
                result = {"machine_id": new.id}
            elif command == "clone":
                user = s.get(User, args["user_id"])
                clone = Machine(name=f"{m.name}-{user.name}", owner_id=user.id, base_id=m.id,
                                state="shutdown")
                s.add(clone)
                s.flush()
                result = {"machine_id": clone.id}
                if args.get("start"):
                    self._run_machine(clone)
                    if args.get("client_ip"):
                        result["display"] = self._info(clone)
            elif command == "start":
                self._run_machine(m)
                result = self._info(m) if args.get("client_ip") else {"state": "running"}
            elif command == "open_display":
                result = self._info(m)
            elif command in ("shutdown", "force_shutdown"):
                m.state, m.display = "shutdown", None
            elif command == "hibernate":
                m.state, m.display = "hibernated", None
            elif command == "resume":
                m.state = "running"
            elif command == "prepare_base":
                m.is_base = True
            elif command == "remove_base":
                m.is_base, m.is_public = False, False
            elif command == "remove":
                s.delete(m)
            elif command == "screenshot":
                self.shots.mkdir(parents=True, exist_ok=True)
                path = self.shots / f"{m.id}.png"
                path.write_bytes(tiny_png())
                result = {"path": str(path)}
        queue.finish(self.db, rid, result=result, wake=self.cfg.queue.socket)


def make_config(tmp_path: Path, url: str, **front: Any) -> rconfig.Config:
    iso_dir = tmp_path / "isos"
    iso_dir.mkdir(exist_ok=True)
    (iso_dir / "debian.iso").write_bytes(b"iso")
    (tmp_path / "iso-staging").mkdir(exist_ok=True)
    return rconfig.from_dict({
        "database": {"url": url},
        "libvirt": {"uri": "test:///default"},
        "queue": {"socket": str(tmp_path / "queue.sock")},
        "firewall": {"enabled": False},
        "front": {"secret_key_file": str(tmp_path / "front.key"), "iso_dir": str(iso_dir),
                  "iso_staging_dir": str(tmp_path / "iso-staging"), **front},
    })


@functools.lru_cache(maxsize=8)
def _hash(password: str) -> str:
    return hash_password(password)  # argon2 costs ~0.4 s here: hash each password once


def add_user(db: Database, name: str, *, admin: bool = False, disabled: bool = False,
             password: str = PASSWORD) -> int:
    with db.session() as s:
        u = User(name=name, password_hash=_hash(password), is_admin=admin,
                 is_disabled=disabled)
        s.add(u)
        s.flush()
        return u.id


def add_machine(db: Database, name: str, owner_id: int | None, **kw: Any) -> int:
    with db.session() as s:
        m = Machine(name=name, owner_id=owner_id, state=kw.pop("state", "shutdown"), **kw)
        s.add(m)
        s.flush()
        return m.id


def login(client: FlaskClient, name: str, password: str = PASSWORD, **kw: Any) -> Any:
    client.get("/login")
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf_token": csrf_of(client)}, **kw)


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token of the client's session (as the pages embed it)."""
    info = client.get("/api/v1/session")
    if info.status_code == 200 and "csrf_token" in info.json:
        return info.json["csrf_token"]
    html = client.get("/login").get_data(as_text=True)
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


class World:
    """An app with users, a public base and the stub backend running."""

    def __init__(self, tmp_path: Path, db: Database, **front: Any) -> None:
        self.db = db
        self.config = make_config(tmp_path, db.url, **front)
        self.app: Flask = create_app(self.config, db)
        self.app.config["TESTING"] = True
        self.backend = StubBackend(db, self.config, tmp_path / "shots").start()
        self.admin = add_user(db, "admin", admin=True)
        self.alice = add_user(db, "alice")
        self.bob = add_user(db, "bob")
        self.base = add_machine(db, "desk", self.admin, is_base=True, is_public=True)
        self.private_base = add_machine(db, "secret-base", self.admin, is_base=True)
        self.alice_vm = add_machine(db, "desk-alice", self.alice, base_id=self.base,
                                    state="running",
                                    display={"listen": "127.0.0.1", "spice": 5990,
                                             "spice_tls": 5991, "vnc": 5992})

    def client(self, user: str | None = None) -> FlaskClient:
        c = self.app.test_client()
        if user:
            resp = login(c, user)
            assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        return c

    def requests(self, command: str | None = None) -> list[Request]:
        with self.db.sessionmaker() as s:
            q = select(Request).order_by(Request.id)
            if command:
                q = q.where(Request.command == command)
            return list(s.scalars(q))

    def close(self) -> None:
        self.backend.stop()


@pytest.fixture
def world(tmp_path: Path, sqlite_db: Database) -> Iterator[World]:
    w = World(tmp_path, sqlite_db)
    yield w
    w.close()


@pytest.fixture
def world_both(tmp_path: Path, db: Database) -> Iterator[World]:
    """The same world on SQLite and on MariaDB."""
    w = World(tmp_path, db)
    yield w
    w.close()


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
