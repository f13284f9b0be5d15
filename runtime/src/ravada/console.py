"""rvd_console: the browser console's websocket → VNC proxy.

The front signs a short-lived token (``make_token``) bound to the user, the
machine, the VNC host and port; noVNC connects to ``/console/ws?token=…``. The
proxy verifies the signature and expiry, checks in the database that the port
still belongs to that machine and that the user may use it, then relays bytes
both ways. The target comes only from the signed token, so a token for machine
A can never reach machine B. Each connection is recorded in ``console_sessions``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "ravada.console.v1"
MAX_LIFETIME = 60
RECHECK_SECONDS = 2.0  # how often a live relay re-checks that its user may still use it
log = logging.getLogger("ravada.console")


class TokenError(ValueError):
    """The console token is missing, forged, expired or already used."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    machine_id: int
    host: str
    port: int
    expires: float
    nonce: str


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def make_token(secret_key: str, *, user_id: int, machine_id: int, host: str, port: int,
               lifetime: int) -> str:
    """Sign a console token valid for ``lifetime`` seconds (at most 60)."""
    lifetime = max(1, min(int(lifetime), MAX_LIFETIME))
    payload = {"u": user_id, "m": machine_id, "h": host, "p": port,
               "e": time.time() + lifetime, "n": secrets.token_hex(8)}
    return _serializer(secret_key).dumps(payload)


def verify_token(secret_key: str, token: str, *, max_age: int = MAX_LIFETIME) -> Claims:
    """The claims of a valid token; TokenError when forged, malformed or expired."""
    if not token or len(token) > 1024:
        raise TokenError("missing or oversized token")
    try:
        data = _serializer(secret_key).loads(token, max_age=min(max_age, MAX_LIFETIME))
    except SignatureExpired:
        raise TokenError("token expired") from None
    except BadSignature:
        raise TokenError("bad token signature") from None
    try:
        claims = Claims(int(data["u"]), int(data["m"]), str(data["h"]), int(data["p"]),
                        float(data["e"]), str(data["n"]))
    except (KeyError, TypeError, ValueError):
        raise TokenError("malformed token") from None
    if claims.expires < time.time():
        raise TokenError("token expired")
    if not 0 < claims.port < 65536:
        raise TokenError("bad port in token")
    return claims


class NonceCache:
    """Tokens already used: each token opens one connection only."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def use(self, claims: Claims) -> bool:
        now = time.time()
        if len(self._seen) > 10000:
            self._seen = {n: e for n, e in self._seen.items() if e >= now}
        if claims.nonce in self._seen:
            return False
        self._seen[claims.nonce] = claims.expires
        return True


class ConsoleProxy:
    """Checks tokens, opens the VNC connection and relays; records console sessions."""

    def __init__(self, secret_key: str, db: Any | None, token_lifetime: int = MAX_LIFETIME,
                 check_machine: bool = True, trusted_proxies: list[str] | None = None) -> None:
        from ravada.front.netutil import parse_networks

        self.secret_key = secret_key
        self.trusted = parse_networks(trusted_proxies or [])
        self.db = db
        self.max_age = min(token_lifetime, MAX_LIFETIME)
        self.check_machine = check_machine and db is not None
        self.nonces = NonceCache()
        self._claims: dict[int, Claims] = {}
        self.recheck_seconds = RECHECK_SECONDS

    # ---- database work (run in a thread)
    def _machine_ok(self, claims: Claims) -> bool:
        from ravada.db import Machine, User

        with self.db.sessionmaker() as s:
            m = s.get(Machine, claims.machine_id)
            user = s.get(User, claims.user_id)
            if m is None or user is None or user.is_disabled:
                return False
            if m.owner_id != user.id and not user.is_admin:
                return False
            vnc = (m.display or {}).get("vnc")
            return m.state in ("running", "paused") and vnc == claims.port

    def _session_start(self, claims: Claims, client_ip: str) -> int | None:
        if self.db is None:
            return None
        from ravada.db import ConsoleSession, utcnow

        with self.db.session() as s:
            row = ConsoleSession(user_id=claims.user_id, machine_id=claims.machine_id,
                                 client_ip=client_ip[:45], started_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def _still_allowed(self, row_id: int, user_id: int) -> bool:
        """False once rvd_back ended the session row or the user was disabled/removed."""
        from ravada.db import ConsoleSession, User

        with self.db.sessionmaker() as s:
            row = s.get(ConsoleSession, row_id)
            user = s.get(User, user_id)
            return (row is not None and row.ended_at is None and user is not None
                    and not user.is_disabled)

    async def _watch(self, row_id: int | None, user_id: int) -> None:
        """Return when the relay must stop: the user lost access (see ``close_user``)."""
        if self.db is None or row_id is None:
            await asyncio.Event().wait()  # nothing to check: never
        while True:
            await asyncio.sleep(self.recheck_seconds)
            if not await asyncio.to_thread(self._still_allowed, row_id, user_id):
                log.info("console session %s ended: user %s lost access", row_id, user_id)
                return

    def _session_end(self, row_id: int | None) -> None:
        if self.db is None or row_id is None:
            return
        from sqlalchemy import update

        from ravada.db import ConsoleSession, utcnow

        with self.db.session() as s:
            s.execute(update(ConsoleSession).where(ConsoleSession.id == row_id,
                                                   ConsoleSession.ended_at.is_(None))
                      .values(ended_at=utcnow()))

    def _client_ip(self, ws: Any) -> str:
        from ravada.front.netutil import client_ip

        forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request else None
        peer = str(ws.remote_address[0]) if ws.remote_address else ""
        return client_ip(peer, forwarded, self.trusted)

    # ---- websockets hooks
    async def process_request(self, connection: Any, request: Any) -> Any:
        """Refuse the upgrade (HTTP 403) unless the token is valid, unused and still current."""
        query = parse_qs(urlsplit(request.path).query)
        token = (query.get("token") or [""])[0]
        try:
            claims = verify_token(self.secret_key, token, max_age=self.max_age)
        except TokenError as exc:
            log.info("console refused: %s", exc)
            return connection.respond(HTTPStatus.FORBIDDEN, f"{exc}\n")
        if self.check_machine and not await asyncio.to_thread(self._machine_ok, claims):
            log.info("console refused: machine %s no longer matches the token", claims.machine_id)
            return connection.respond(HTTPStatus.FORBIDDEN, "machine display changed\n")
        if not self.nonces.use(claims):
            return connection.respond(HTTPStatus.FORBIDDEN, "token already used\n")
        self._claims[id(connection)] = claims
        return None

    async def handler(self, ws: Any) -> None:
        claims = self._claims.pop(id(ws), None)
        if claims is None:  # process_request always sets it; be safe
            await ws.close(1008, "no token")
            return
        client_ip = self._client_ip(ws)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(claims.host, claims.port), timeout=5)
        except (OSError, TimeoutError) as exc:
            log.warning("console: cannot reach %s:%s: %s", claims.host, claims.port, exc)
            await ws.close(1011, "display unreachable")
            return
        row_id = await asyncio.to_thread(self._session_start, claims, client_ip)
        try:
            await _relay(ws, reader, writer, self._watch(row_id, claims.user_id))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await asyncio.to_thread(self._session_end, row_id)


async def _relay(ws: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 watch: Any = None) -> None:
    """Copy both ways until one side closes or ``watch`` (a coroutine) returns."""
    async def ws_to_tcp() -> None:
        async for message in ws:
            writer.write(message if isinstance(message, bytes) else message.encode())
            await writer.drain()

    async def tcp_to_ws() -> None:
        while data := await reader.read(65536):
            await ws.send(data)

    tasks = [asyncio.create_task(ws_to_tcp()), asyncio.create_task(tcp_to_ws())]
    if watch is not None:
        tasks.append(asyncio.create_task(watch))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await ws.close()


def _select_subprotocol(_conn: Any, offered: Any) -> str | None:
    return "binary" if "binary" in offered else None


async def serve(proxy: ConsoleProxy, host: str, port: int,
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or forever)."""
    from websockets.asyncio.server import serve as ws_serve

    async with ws_serve(proxy.handler, host, port, process_request=proxy.process_request,
                        select_subprotocol=_select_subprotocol, max_size=2**22,
                        compression=None) as server:
        if ready is not None:
            ready.set()
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    from ravada import config as rconfig
    from ravada.db import Database
    from ravada.keyfile import load_secret_key

    parser = argparse.ArgumentParser(prog="rvd_console", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file (default /etc/ravada.conf)")
    parser.add_argument("--config-required", action="store_true",
                        help="a missing or empty configuration is an error (the unit passes it)")
    parser.add_argument("--listen", help="HOST:PORT (default console.listen)")
    opts = parser.parse_args(argv)
    try:
        cfg = rconfig.load(opts.config, required=opts.config_required)
        host, port = rconfig.parse_listen(opts.listen or cfg.console.listen, "--listen")
    except rconfig.ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(name)s %(message)s")
    proxy = ConsoleProxy(load_secret_key(cfg.front.secret_key_file), Database(cfg.database.url),
                         cfg.console.token_lifetime, trusted_proxies=cfg.front.trusted_proxies)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("rvd_console listening on %s:%s", host, port)
        await serve(proxy, host, port, stop=stop)

    asyncio.run(run())
    return 0
