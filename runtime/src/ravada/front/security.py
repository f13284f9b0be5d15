"""Password checks for logins (argon2 through ``ravada.passwords``) and the secret key file."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ravada import passwords

hash_password = passwords.hash_password
needs_rehash = passwords.needs_rehash
# Checked for unknown users (and users without a hash) so every failure costs the same time.
_DUMMY_HASH = passwords.hash_password(secrets.token_hex(16))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or broken hash is just a (slow) mismatch."""
    if not stored_hash:
        passwords.verify_password(_DUMMY_HASH, password)
        return False
    return passwords.verify_password(stored_hash, password)


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
