"""Secret key files (0600, created on first use) and encryption with such a key.

Neutral: rvd_front (session cookies, TOTP secrets) and rvd_console (its tickets) both
read keys here, and neither imports the other's web code.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


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


class SecretBox:
    """Authenticated encryption (Fernet: AES-128-CBC + HMAC-SHA256) under one key file.

    Sub-keys are derived per purpose, so the key file can also key :meth:`mac` (e.g.
    recovery-code hashes) without using one key for two jobs.
    """

    def __init__(self, key: str, purpose: str) -> None:
        root = key.encode("ascii")
        enc = hmac.new(root, f"ravada {purpose} encryption".encode(), hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(enc))
        self._mac_key = hmac.new(root, f"ravada {purpose} mac".encode(), hashlib.sha256).digest()

    @classmethod
    def from_file(cls, path: str, purpose: str) -> SecretBox:
        return cls(load_secret_key(path), purpose)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plain text; ValueError when it was not made with this key (or was altered)."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise ValueError("cannot decrypt: wrong key or altered data") from exc

    def mac(self, data: str) -> str:
        """A keyed hash (hex): a stolen database alone cannot test guesses against it."""
        return hmac.new(self._mac_key, data.encode("utf-8"), hashlib.sha256).hexdigest()
