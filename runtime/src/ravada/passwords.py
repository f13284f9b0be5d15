"""Password hashing shared by rvd_back (``--add-user``) and rvd_front (login): argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_LENGTH = 8


class PasswordError(ValueError):
    """A password that may not be used (too short, empty...)."""


def check_policy(password: str) -> None:
    """Raise :class:`PasswordError` when ``password`` is not acceptable."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"password too short: at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (salted; different every call)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; False for any mismatch or bad hash."""
    if not stored_hash:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
