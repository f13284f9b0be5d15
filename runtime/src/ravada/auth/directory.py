"""The ``ldap`` backend: OpenLDAP and Active Directory through python-ldap (libldap).

Per login: one search for the user (with the service account, or anonymous), one
bind as the user's DN with the typed password, and, unless the groups come with
the user entry (``memberOf``), one search for the groups. Connections are kept
per process in a small LIFO pool, so a worker reuses its TLS session and service
bind from one login to the next; a connection the server dropped is replaced
once, trying the URIs in order (fail-over).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import ldap
from ldap.dn import str2dn
from ldap.filter import escape_filter_chars
from sqlalchemy.orm import Session

from ravada.auth.base import DirectoryUnavailable, Identity
from ravada.auth.settings import LdapConfig

log = logging.getLogger("ravada.auth.ldap")
T = TypeVar("T")
MAX_NAME = 256
AD_IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: nested groups
# Errors that mean "this connection or server is gone", not "wrong password".
_GONE = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.UNAVAILABLE, ldap.BUSY)


class _Conns:
    """The two connections one login uses: ``search`` (service-bound) and ``bind``."""

    def __init__(self) -> None:
        self.search: Any = None
        self.bind: Any = None


class LdapAuth:
    name = "ldap"

    def __init__(self, cfg: LdapConfig) -> None:
        self.cfg = cfg
        self._pool: queue.LifoQueue[_Conns] = queue.LifoQueue()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._first_uri = 0  # the URI that answered last: try it first
        self._down_until = 0.0
        if not cfg.tls_verify:
            log.warning("auth.ldap.tls_verify is false: the directory's certificate is NOT "
                        "checked; anyone on the path can read the passwords users type")

    # ------------------------------------------------------------ connections

    def _new_conn(self, uri: str) -> Any:
        c = self.cfg
        conn = ldap.initialize(uri)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)  # AD: never chase referrals with our bind
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, c.connect_timeout)
        conn.set_option(ldap.OPT_TIMEOUT, c.timeout)
        if c.tls_verify:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, c.ca_file)
        else:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # apply the TLS options above
        if c.start_tls:
            conn.start_tls_s()
        return conn

    def _connect(self, service_bind: bool) -> Any:
        """A connection to the first URI that answers (in order, starting at the last good)."""
        uris = self.cfg.uris
        errors = []
        for k in range(len(uris)):
            i = (self._first_uri + k) % len(uris)
            try:
                conn = self._new_conn(uris[i])
                if service_bind:
                    conn.simple_bind_s(self.cfg.bind_dn, self.cfg.bind_password)
                elif not self.cfg.start_tls:
                    _open(conn)
            except _GONE as exc:
                errors.append(f"{uris[i]}: {_describe(exc)}")
                continue
            except ldap.INVALID_CREDENTIALS:
                raise DirectoryUnavailable("the service account (auth.ldap.bind_dn) was "
                                           "refused by the directory") from None
            except ldap.LDAPError as exc:
                errors.append(f"{uris[i]}: {_describe(exc)}")
                continue
            self._first_uri = i
            return conn
        self._down_until = time.monotonic() + self.cfg.retry_after
        log.error("directory unreachable: %s", "; ".join(errors))
        raise DirectoryUnavailable("; ".join(errors))

    def _take(self) -> _Conns:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours
            with self._lock:
                if os.getpid() != self._pid:
                    self._pool = queue.LifoQueue()
                    self._pid = os.getpid()
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return _Conns()

    def _call(self, conns: _Conns, which: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` on a live connection; on a dropped one, reconnect once and retry."""
        for attempt in (1, 2):
            conn = getattr(conns, which)
            if conn is None:
                conn = self._connect(service_bind=(which == "search" and bool(self.cfg.bind_dn)))
                setattr(conns, which, conn)
            try:
                return fn(conn)
            except _GONE as exc:
                _close(conn)
                setattr(conns, which, None)
                if attempt == 2:
                    raise DirectoryUnavailable(_describe(exc)) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ login

    def authenticate(self, s: Session, username: str, password: str) -> Identity | None:
        del s  # the directory needs no database
        # An empty password would make an unauthenticated bind "succeed" (RFC 4513 5.1.2).
        if not password or not username or len(username) > MAX_NAME or "\x00" in username:
            return None
        if "\x00" in password:
            return None
        if time.monotonic() < self._down_until:
            raise DirectoryUnavailable("the directory did not answer a moment ago")
        conns = self._take()
        try:
            ident = self._login(conns, username, password)
        except DirectoryUnavailable:
            _close(conns.search)
            _close(conns.bind)
            raise
        self._pool.put(conns)
        return ident

    def _login(self, conns: _Conns, username: str, password: str) -> Identity | None:
        c = self.cfg
        filt = c.user_filter.replace("{username}", escape_filter_chars(username))
        attrs = [c.name_attribute]
        if c.group_membership == "memberOf":
            attrs.append("memberOf")
        try:
            found = self._call(conns, "search", lambda conn: conn.search_ext_s(
                c.user_base, ldap.SCOPE_SUBTREE, filt, attrs, sizelimit=2, timeout=c.timeout))
        except (ldap.SIZELIMIT_EXCEEDED, ldap.NO_SUCH_OBJECT):
            found = []
        except ldap.LDAPError as exc:
            log.warning("user search failed: %s", _describe(exc))
            return None
        entries = [(dn, a) for dn, a in found if dn]  # AD adds referrals with dn None
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("user filter matches several entries; nobody is logged in")
            return None
        dn, entry = entries[0]
        name = _first(entry, c.name_attribute)
        if not name:
            log.warning("%s has no %s attribute", dn, c.name_attribute)
            return None
        try:
            self._call(conns, "bind", lambda conn: conn.simple_bind_s(dn, password))
        except (ldap.INVALID_CREDENTIALS, ldap.UNWILLING_TO_PERFORM, ldap.INAPPROPRIATE_AUTH):
            return None
        except DirectoryUnavailable:
            raise
        except ldap.LDAPError as exc:
            log.warning("bind refused for %s: %s", dn, _describe(exc))
            return None
        groups = self._groups(conns, dn, name, entry) if c.group_membership else None
        is_admin = None
        if c.admin_group and groups is not None:
            is_admin = c.admin_group.lower() in {g.lower() for g in groups}
        return Identity(backend=self.name, name=name,
                        groups=tuple(groups) if groups is not None else None, is_admin=is_admin)

    def _groups(self, conns: _Conns, dn: str, name: str, entry: dict[str, list[bytes]]
                ) -> list[str]:
        """The names (cn) of the user's groups, in the configured membership style."""
        c = self.cfg
        if c.group_membership == "memberOf":
            dns = [v.decode("utf-8", "replace") for v in entry.get("memberOf", [])]
            base = c.group_base.lower()
            return sorted({n for d in dns if (not base or d.lower().endswith(base))
                           and (n := _cn(d))})
        if c.group_membership == "member":
            filt = f"(member={escape_filter_chars(dn)})"
        elif c.group_membership == "memberUid":
            filt = f"(&(objectClass=posixGroup)(memberUid={escape_filter_chars(name)}))"
        else:  # ad_nested: every group the user is in, directly or through other groups
            filt = f"(&(objectClass=group)(member:{AD_IN_CHAIN}:={escape_filter_chars(dn)}))"
        try:
            found = self._call(conns, "search", lambda conn: conn.search_ext_s(
                c.group_base, ldap.SCOPE_SUBTREE, filt, ["cn"], timeout=c.timeout))
        except (ldap.NO_SUCH_OBJECT, ldap.SIZELIMIT_EXCEEDED):
            return []
        except ldap.LDAPError as exc:
            log.warning("group search failed: %s", _describe(exc))
            return []
        return sorted({g for d, a in found if d and (g := _first(a, "cn") or _cn(d))})


def _open(conn: Any) -> None:
    """Connect (and finish the TLS handshake) now, so a dead URI is skipped here.

    An anonymous bind does it; a server that refuses anonymous binds has still
    answered, which is all this needs.
    """
    try:
        conn.simple_bind_s("", "")
    except _GONE:
        raise
    except ldap.LDAPError:
        pass


def _first(entry: dict[str, list[bytes]], attr: str) -> str:
    for key, values in entry.items():
        if key.lower() == attr.lower() and values:
            return values[0].decode("utf-8", "replace")
    return ""


def _cn(dn: str) -> str:
    """The value of the first RDN of ``dn`` (the group's name)."""
    try:
        return str(str2dn(dn)[0][0][1])
    except (ldap.DECODING_ERROR, IndexError):
        return ""


def _describe(exc: BaseException) -> str:
    """A short text for an LDAP error (never includes what was sent)."""
    if exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        text = info.get("desc", type(exc).__name__)
        extra = info.get("info")
        return f"{text} ({extra})" if extra and extra != "(unknown error code)" else text
    return type(exc).__name__


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.unbind_s()
        except ldap.LDAPError:
            pass
