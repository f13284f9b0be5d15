"""Authentication backends: who may log in. ``LocalAuth`` checks argon2 hashes in ``users``.

A backend only answers "which user is this, if the password is right"; the caller
refuses disabled users and records the attempt. LDAP will be a second backend.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada.db import User
from ravada.front.security import hash_password, needs_rehash, verify_password


class AuthBackend(Protocol):
    name: str

    def authenticate(self, s: Session, username: str, password: str) -> User | None:
        """The user when the credentials are right, else None (never raises for bad input)."""


class LocalAuth:
    """Users whose ``auth_backend`` is ``local``, with an argon2 ``password_hash``."""

    name = "local"

    def authenticate(self, s: Session, username: str, password: str) -> User | None:
        user = s.scalar(select(User).where(User.name == username)) if len(username) <= 64 else None
        if user is None or user.auth_backend != self.name:
            verify_password(None, password)  # same work as a real check
            return None
        if not verify_password(user.password_hash, password):
            return None
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        return user


BACKENDS: list[AuthBackend] = [LocalAuth()]


def authenticate(s: Session, username: str, password: str,
                 backends: list[AuthBackend] | None = None) -> User | None:
    """Try each backend in turn; the first that knows the credentials wins."""
    for backend in backends or BACKENDS:
        user = backend.authenticate(s, username, password)
        if user is not None:
            return user
    return None
