"""Logins through the configured backends, and the user row that results.

``Authenticator.check`` asks the backends in ``auth.order`` (no database writes,
no lock held while a directory answers); ``record`` then creates or updates the
user row in the caller's write transaction. Passwords never leave ``check``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada.auth import groups as group_store
from ravada.auth.base import AuthBackend, DirectoryUnavailable, Identity
from ravada.auth.local import LocalAuth
from ravada.auth.settings import AuthConfig
from ravada.db import User, utcnow

log = logging.getLogger("ravada.auth")


def build_backends(cfg: AuthConfig) -> list[AuthBackend]:
    """The backends of ``auth.order``, in order (python-ldap is imported only when used)."""
    out: list[AuthBackend] = []
    for name in cfg.order:
        if name == "local":
            out.append(LocalAuth())
        elif name == "ldap":
            from ravada.auth.directory import LdapAuth

            out.append(LdapAuth(cfg.ldap))
    return out


class Authenticator:
    """One per process: the backends keep their directory connections between logins."""

    def __init__(self, cfg: AuthConfig, backends: list[AuthBackend] | None = None) -> None:
        self.cfg = cfg
        self.backends = backends if backends is not None else build_backends(cfg)

    def check(self, read_session: Callable[[], Session], username: str,
              password: str) -> Identity | None:
        """The identity for these credentials (the first backend that accepts them wins).

        Raises DirectoryUnavailable when no backend accepted, a directory could not
        be asked, and the name is not a local account (whose password was just wrong).
        """
        if not password:
            return None
        down: DirectoryUnavailable | None = None
        with read_session() as s:
            for backend in self.backends:
                try:
                    ident = backend.authenticate(s, username, password)
                except DirectoryUnavailable as exc:
                    down = exc
                    continue
                if ident is not None:
                    return ident
            if down is not None:
                local = s.scalar(select(User.auth_backend).where(User.name == username[:64]))
                if local != "local":
                    raise down
        return None

    def record(self, s: Session, ident: Identity) -> User | None:
        """The user row for ``ident``, created on a first directory login, refreshed on each.

        None when the name belongs to a row of another backend: a directory account
        never takes over a local one (nor the other way round).
        """
        if ident.user_id is not None:
            user = s.get(User, ident.user_id)
            if user is not None and ident.new_hash:
                user.password_hash = ident.new_hash
            return user
        user = s.scalar(select(User).where(User.name == ident.name))
        if user is None:
            user = User(name=ident.name, password_hash="", auth_backend=ident.backend,
                        is_admin=bool(ident.is_admin))
            s.add(user)
            s.flush()
            log.info("created user %s from %s", ident.name, ident.backend)
        elif user.auth_backend != ident.backend:
            log.warning("%s login for %r refused: the user row belongs to the %s backend",
                        ident.backend, ident.name, user.auth_backend)
            return None
        if ident.groups is not None:
            user.directory_groups = list(ident.groups)
            user.groups_read_at = utcnow()
            group_store.sync_directory_groups(s, user.id, ident.groups)
        if ident.is_admin is not None and user.is_admin != ident.is_admin:
            log.info("%s %s admin by directory group", ident.name,
                     "becomes" if ident.is_admin else "is no longer")
            user.is_admin = ident.is_admin
        return user


def from_config(cfg: AuthConfig) -> Authenticator:
    return Authenticator(cfg)
