"""rvd_console: signed tokens and the websocket → TCP proxy against a real TCP server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ravada import console
from ravada.db import ConsoleSession, Database, Machine, User

SECRET = "s" * 64
GREETING = b"RFB 003.008\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VncLike:
    """A TCP server that greets like VNC and then echoes, on its own port."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(GREETING + str(self.port).encode() + b"\n")
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def servers(sqlite_db: Database) -> Iterator[dict[str, Any]]:
    """Two VNC-like servers (machines A and B), the proxy on a free port, the DB rows."""
    a, b = VncLike(), VncLike()
    with sqlite_db.session() as s:
        s.add_all([User(id=1, name="ann"), User(id=2, name="ben"),
                   User(id=3, name="root", is_admin=True)])
        s.flush()
        s.add_all([Machine(id=10, name="a", owner_id=1, state="running",
                           display={"listen": "127.0.0.1", "vnc": a.port}),
                   Machine(id=20, name="b", owner_id=2, state="running",
                           display={"listen": "127.0.0.1", "vnc": b.port})])
    proxy = console.ConsoleProxy(SECRET, sqlite_db, 60, trusted_proxies=["127.0.0.1"])
    port = _free_port()
    loop = asyncio.new_event_loop()
    ready, stop = asyncio.Event(), None

    def run() -> None:
        nonlocal stop
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        loop.run_until_complete(console.serve(proxy, "127.0.0.1", port, ready=ready, stop=stop))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield {"a": a, "b": b, "url": f"ws://127.0.0.1:{port}/", "db": sqlite_db}
    loop.call_soon_threadsafe(stop.set)  # type: ignore[union-attr]
    t.join(5)
    a.close()
    b.close()


def _token(user: int, machine: int, port: int, lifetime: int = 60) -> str:
    return console.make_token(SECRET, user_id=user, machine_id=machine, host="127.0.0.1",
                              port=port, lifetime=lifetime)


def test_tokens_roundtrip_and_refuse_forgeries() -> None:
    tok = _token(1, 10, 5900)
    c = console.verify_token(SECRET, tok)
    assert (c.user_id, c.machine_id, c.host, c.port) == (1, 10, "127.0.0.1", 5900)
    assert c.expires - time.time() <= 60
    with pytest.raises(console.TokenError, match="signature"):
        console.verify_token("other" * 13, tok)
    payload, _, sig = tok.rpartition(".")
    with pytest.raises(console.TokenError):
        console.verify_token(SECRET, tok[:-2] + ("AA" if not tok.endswith("AA") else "BB"))
    # Re-signing a changed payload needs the secret.
    forged = URLSafeTimedSerializer("attacker", salt=console.SALT).dumps(
        {"u": 1, "m": 10, "h": "127.0.0.1", "p": 22, "e": time.time() + 60, "n": "x"})
    with pytest.raises(console.TokenError):
        console.verify_token(SECRET, forged)
    for bad in ("", "x" * 2000, "not.a.token"):
        with pytest.raises(console.TokenError):
            console.verify_token(SECRET, bad)
    # Lifetime is capped at 60 s whatever the caller asks.
    assert console.verify_token(SECRET, _token(1, 10, 5900, 3600)).expires - time.time() <= 60


def test_expired_token_is_refused() -> None:
    tok = _token(1, 10, 5900, lifetime=1)
    time.sleep(1.2)
    with pytest.raises(console.TokenError, match="expired"):
        console.verify_token(SECRET, tok)


def test_valid_token_reaches_its_machine_and_is_recorded(servers: dict[str, Any]) -> None:
    a = servers["a"]
    t0 = time.perf_counter()
    with connect(servers["url"] + "?token=" + _token(1, 10, a.port),
                 additional_headers={"X-Forwarded-For": "203.0.113.8"}) as ws:
        first = ws.recv(timeout=5)
        connect_ms = (time.perf_counter() - t0) * 1000
        assert first.startswith(GREETING) and str(a.port).encode() in first
        ws.send(b"\x01\x02hello")
        assert ws.recv(timeout=5) == b"\x01\x02hello"
        big = bytes(range(256)) * 1024
        ws.send(big)
        got = b""
        while len(got) < len(big):
            got += ws.recv(timeout=5)
        assert got == big
        with servers["db"].sessionmaker() as s:
            row = s.query(ConsoleSession).one()
            assert (row.user_id, row.machine_id, row.client_ip) == (1, 10, "203.0.113.8")
            assert row.ended_at is None
    assert connect_ms < 500

    def ended() -> bool:
        with servers["db"].sessionmaker() as s:
            return s.query(ConsoleSession).one().ended_at is not None
    deadline = time.monotonic() + 5
    while not ended():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as exc:
        with connect(url, open_timeout=5):
            pass
    return exc.value.response.status_code


def test_bad_tokens_are_refused_before_the_upgrade(servers: dict[str, Any]) -> None:
    a, b, url = servers["a"], servers["b"], servers["url"]
    assert _refused(url) == 403
    assert _refused(url + "?token=garbage") == 403
    forged = console.make_token("x" * 64, user_id=1, machine_id=10, host="127.0.0.1",
                                port=a.port, lifetime=60)
    assert _refused(url + "?token=" + forged) == 403
    expired = _token(1, 10, a.port, lifetime=1)
    time.sleep(1.1)
    assert _refused(url + "?token=" + expired) == 403
    # A signed token whose port is not machine A's display (e.g. B's port) is refused.
    assert _refused(url + "?token=" + _token(1, 10, b.port)) == 403
    # User 1 with a token naming machine B (not theirs) is refused.
    assert _refused(url + "?token=" + _token(1, 20, b.port)) == 403
    # A token is good for one connection only.
    tok = _token(2, 20, b.port)
    with connect(url + "?token=" + tok) as ws:
        assert str(b.port).encode() in ws.recv(timeout=5)
    assert _refused(url + "?token=" + tok) == 403
    # An admin may open anyone's console.
    with connect(url + "?token=" + _token(3, 10, a.port)) as ws:
        assert str(a.port).encode() in ws.recv(timeout=5)
    with servers["db"].sessionmaker() as s:
        assert s.query(ConsoleSession).count() == 2


def test_token_for_a_stopped_machine_is_refused(servers: dict[str, Any]) -> None:
    a = servers["a"]
    tok = _token(1, 10, a.port)
    with servers["db"].session() as s:
        m = s.get(Machine, 10)
        m.state, m.display = "shutdown", None
    assert _refused(servers["url"] + "?token=" + tok) == 403


def test_unreachable_display_closes_the_socket(servers: dict[str, Any]) -> None:
    port = _free_port()  # nothing listens there
    with servers["db"].session() as s:
        s.get(Machine, 10).display = {"listen": "127.0.0.1", "vnc": port}
    with connect(servers["url"] + "?token=" + _token(1, 10, port)) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=7)
        assert ws.close_code == 1011


@pytest.mark.parametrize("how", ["disabled", "ended"])
def test_live_console_ends_when_the_user_loses_access(servers: dict[str, Any], how: str) -> None:
    """Disabling a user (or rvd_back's close_user ending the session row) closes the relay."""
    a = servers["a"]
    with connect(servers["url"] + "?token=" + _token(1, 10, a.port)) as ws:
        assert ws.recv(timeout=5).startswith(GREETING)
        ws.send(b"still here")
        assert ws.recv(timeout=5) == b"still here"
        t0 = time.monotonic()
        with servers["db"].session() as s:
            if how == "disabled":
                s.get(User, 1).is_disabled = True
            else:
                s.query(ConsoleSession).one().ended_at = s.get(User, 1).created_at
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)  # rvd_console re-checks every 2 s
        assert time.monotonic() - t0 < 4
