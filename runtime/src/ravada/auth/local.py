"""The ``local`` backend: users whose row says ``auth_backend = local``, argon2 hashes."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada import passwords
from ravada.auth.base import Identity
from ravada.db import User

# Checked for unknown users (and rows of other backends) so every failure costs the same.
_DUMMY_HASH = passwords.hash_password(secrets.token_hex(16))


class LocalAuth:
    name = "local"

    def authenticate(self, s: Session, username: str, password: str) -> Identity | None:
        user = s.scalar(select(User).where(User.name == username)) if len(username) <= 64 else None
        if user is None or user.auth_backend != self.name or not user.password_hash:
            passwords.verify_password(_DUMMY_HASH, password)
            return None
        if not passwords.verify_password(user.password_hash, password):
            return None
        new_hash = None
        if passwords.needs_rehash(user.password_hash):
            new_hash = passwords.hash_password(password)
        return Identity(backend=self.name, name=user.name, user_id=user.id, new_hash=new_hash)
