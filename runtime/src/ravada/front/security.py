"""Password checks for logins (argon2 through ``ravada.passwords``); the secret key file
is read by ``ravada.keyfile`` (re-exported here for the front)."""

from __future__ import annotations

import secrets

from ravada import passwords
from ravada.keyfile import load_secret_key

__all__ = ["hash_password", "load_secret_key", "needs_rehash", "verify_password"]

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
