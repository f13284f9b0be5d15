"""What a new MariaDB connection costs: no TLS set-up per connection.

PyMySQL (1.2+) builds an ``ssl.SSLContext`` for every new connection, loading the system's
CA certificates, even when no TLS option is given (it then *prefers* TLS): about 24 ms of CPU
and 60 ms of wall clock per connection on this project's 2-core machine, against 0.2 ms for
the connection itself. A pool that grows under a burst of requests (the front's threads
reaching for their first connections at once) stalled every request of that process for
hundreds of milliseconds (issue 14, P4). Two rules remove it:

- over a UNIX socket with no TLS option in the URL, TLS is off (``ssl_disabled``): the
  kernel carries the bytes; TLS there protects nothing and costs a handshake;
- otherwise (TCP, or TLS options given) PyMySQL's own TLS rules apply unchanged, but each
  distinct set of options makes its context once per process, not once per connection.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

# URL query keys that ask for TLS (SQLAlchemy's MySQL dialects move them into ``ssl``).
TLS_KEYS = ("ssl_ca", "ssl_key", "ssl_cert", "ssl_capath", "ssl_cipher",
            "ssl_check_hostname", "ssl_verify_cert", "ssl_verify_identity", "ssl_mode")


def connect_args(url: URL) -> dict[str, Any]:
    """Extra DBAPI arguments for ``url``: TLS off on a UNIX socket nobody asked TLS for."""
    if url.get_driver_name() != "pymysql":
        return {}
    query = url.query
    if "unix_socket" in query and not any(k in query for k in TLS_KEYS):
        return {"ssl_disabled": True}
    return {}


_contexts: dict[str, ssl.SSLContext] = {}
_lock = threading.Lock()
_connection_class: type | None = None


def _cached_connection_class() -> type:
    """PyMySQL's Connection whose TLS context is made once per set of options."""
    global _connection_class
    if _connection_class is not None:
        return _connection_class
    import pymysql.connections

    base = pymysql.connections.Connection

    class Connection(base):  # type: ignore[misc, valid-type]
        def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
            if isinstance(sslp, ssl.SSLContext):
                return sslp
            key = repr(sorted((str(k), repr(v)) for k, v in dict(sslp).items()))
            with _lock:
                ctx = _contexts.get(key)
                if ctx is None:
                    ctx = _contexts[key] = super()._create_ssl_ctx(sslp)
            return ctx

    _connection_class = Connection
    return Connection


def share_tls_contexts(engine: Engine) -> None:
    """Make ``engine``'s PyMySQL connections share their TLS contexts (see module doc)."""
    if engine.dialect.driver != "pymysql":
        return

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _rec, cargs, cparams):  # type: ignore[no-untyped-def]
        return _cached_connection_class()(*cargs, **cparams)


def tls_contexts_made() -> int:
    """How many TLS contexts this process made for database connections (tests)."""
    return len(_contexts)
