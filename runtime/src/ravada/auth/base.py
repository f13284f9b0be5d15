"""What every login backend returns, and the one failure that is not "wrong password"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session


class DirectoryUnavailable(Exception):
    """No directory server answered (down, timed out, TLS refused): not a wrong password."""


@dataclass(frozen=True)
class Identity:
    """Who the credentials belong to, as a backend sees it (no password in here).

    ``user_id`` is set by the local backend (the row exists). A directory sets
    ``groups`` (read now) and ``is_admin`` (None: no admin group configured, the
    flag is left alone).
    """

    backend: str
    name: str
    user_id: int | None = None
    new_hash: str | None = None
    groups: tuple[str, ...] | None = None
    is_admin: bool | None = None


class AuthBackend(Protocol):
    name: str

    def authenticate(self, s: Session, username: str, password: str) -> Identity | None:
        """The identity when the credentials are right, else None.

        Raises DirectoryUnavailable when the backend could not ask its server; never
        raises for bad input. ``s`` is a read-only session.
        """
