"""Password hashes (argon2) and the front's secret key file.

TODO: switch hash/verify to ``ravada.passwords`` when the backend's module lands.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against unknown users so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or broken hash is just a mismatch."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return False


def load_secret_key(path: str) -> str:
    """Read the secret key, creating the file (0600, 64 hex chars) when it is missing.

    Safe when several processes start at once: the first creator wins, the others read.
    """
    p = Path(path)
    for _ in range(50):
        with contextlib.suppress(FileNotFoundError):
            key = p.read_text(encoding="ascii").strip()
            if len(key) >= 32:
                return key
            if key:
                raise ValueError(f"{path}: secret key is too short (need 32+ characters)")
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # another process is writing it; read again
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
    raise RuntimeError(f"{path}: could not read or create the secret key")
