"""The TOTP second factor (RFC 6238 through pyotp): enrolment, code checks, recovery codes.

Plain functions over a SQLAlchemy session (no Flask), so the front's pages, its API and
the CLI share them. The secret is stored encrypted (``ravada.keyfile.SecretBox`` under
``auth.totp.key_file``); recovery codes are kept as keyed hashes only.

A code is accepted for the current 30 s step or one step either side, and only for a
step later than the last accepted one: a code seen once (shoulder-surfed, phished,
replayed) never opens a second session. The "later than" check is a conditional UPDATE,
so two front workers racing with the same code cannot both win.
"""

from __future__ import annotations

import hmac
import secrets
import time

import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ravada.auth.settings import TotpConfig
from ravada.db import RecoveryCode, Request, User, utcnow
from ravada.keyfile import SecretBox
from ravada.texts import Refusal

AUDIT_RESET = "totp_reset"  # the requests-log row of a reset
STEP = 30  # seconds (what every authenticator app uses)
WINDOW = 1  # steps accepted either side of now (clock drift, typing time)
RECOVERY_CODES = 10
# 32 symbols without 0/O/1/I: 16 of them = 80 bits, typed as XXXX-XXXX-XXXX-XXXX
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
RECOVERY_LENGTH = 16


class TotpError(Refusal):
    """A refusal the user can act on (already enrolled, nothing to confirm...)."""


class Totp:
    """The second factor for one configuration (``auth.totp``)."""

    def __init__(self, conf: TotpConfig, default_key_file: str) -> None:
        self.conf = conf
        self.key_file = conf.key_file or default_key_file
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        """Read (or create) the key file on first use: only processes that need it do."""
        if self._box is None:
            self._box = SecretBox.from_file(self.key_file, "totp")
        return self._box

    def required(self, is_admin: bool) -> bool:
        """Whether this user must have a second factor before using the site."""
        rule = self.conf.required_for
        return rule == "all" or (rule == "admins" and is_admin)

    # ------------------------------------------------------------ enrolment

    def begin(self, s: Session, user_id: int) -> str:
        """A fresh secret for the user, stored (encrypted) as not yet confirmed."""
        user = s.get(User, user_id)
        if user is None:
            raise TotpError("no such user")
        if user.totp_enabled_at is not None:
            raise TotpError("two-factor login is already on; an administrator can reset it")
        secret = pyotp.random_base32()
        user.totp_secret = self.box.encrypt(secret)
        return secret

    def pending_secret(self, s: Session, user_id: int) -> str | None:
        """The secret of an enrolment not confirmed yet (to show its QR code again)."""
        user = s.get(User, user_id)
        if user is None or user.totp_enabled_at is not None or not user.totp_secret:
            return None
        return self.box.decrypt(user.totp_secret)

    def uri(self, secret: str, name: str) -> str:
        """The otpauth:// URI authenticator apps read from the QR code."""
        return pyotp.TOTP(secret, interval=STEP).provisioning_uri(
            name=name, issuer_name=self.conf.issuer)

    @staticmethod
    def qr_data_uri(uri: str) -> str:
        """The QR code of ``uri`` as an SVG data: URI, made here (no outside service)."""
        return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)

    def confirm(self, s: Session, user_id: int, code: str,
                now: float | None = None) -> list[str] | None:
        """Turn the factor on when ``code`` matches the pending secret.

        Returns the new recovery codes (shown once, only their hashes are kept), or None
        for a wrong code. The code's step counts as used.
        """
        user = s.get(User, user_id)
        if user is None or user.totp_enabled_at is not None or not user.totp_secret:
            raise TotpError("there is no enrolment to confirm; start again")
        secret = self.box.decrypt(user.totp_secret)
        step = _matching_step(secret, _digits(code), now, None)
        if step is None:
            return None
        user.totp_enabled_at = utcnow()
        user.totp_last_step = step
        return self.new_recovery_codes(s, user_id)

    def new_recovery_codes(self, s: Session, user_id: int) -> list[str]:
        """Replace the user's recovery codes with ten new ones (plain text returned once)."""
        s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
                 for _ in range(RECOVERY_CODES)]
        s.add_all(RecoveryCode(user_id=user_id, code_hash=self._code_hash(user_id, c))
                  for c in codes)
        return ["-".join(c[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4)) for c in codes]

    # ------------------------------------------------------------ login

    def check(self, s: Session, user_id: int, code: str,
              now: float | None = None) -> str | None:
        """Accept a login code: ``"totp"``, ``"recovery"`` or None (wrong or used).

        Writes in ``s`` (the step or the recovery code is used up); the caller commits.
        """
        user = s.get(User, user_id)
        if user is None or user.totp_enabled_at is None or not user.totp_secret:
            return None
        if not isinstance(code, str) or len(code) > 64:
            return None
        compact = "".join(code.split())
        if compact.isdigit():
            secret = self.box.decrypt(user.totp_secret)
            step = _matching_step(secret, compact, now, user.totp_last_step)
            if step is None:
                return None
            won = s.execute(update(User).where(
                User.id == user_id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step))
                .values(totp_last_step=step)).rowcount
            return "totp" if won == 1 else None
        plain = "".join(ch for ch in code.upper() if ch.isalnum())
        if len(plain) != RECOVERY_LENGTH:
            return None
        used = s.execute(update(RecoveryCode).where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == self._code_hash(user_id, plain),
            RecoveryCode.used_at.is_(None)).values(used_at=utcnow())).rowcount
        return "recovery" if used == 1 else None

    @staticmethod
    def recovery_left(s: Session, user_id: int) -> int:
        return int(s.scalar(select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0)

    @staticmethod
    def reset(s: Session, user_id: int) -> bool:
        """Remove the user's second factor (secret, step, recovery codes); True if it was on
        or pending."""
        had = s.execute(update(User).where(User.id == user_id, User.totp_secret.is_not(None))
                        .values(totp_secret=None, totp_enabled_at=None,
                                totp_last_step=None)).rowcount
        s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        return had == 1

    def _code_hash(self, user_id: int, plain: str) -> str:
        return self.box.mac(f"recovery:{user_id}:{plain}")


def reset_audited(s: Session, user: User, by_id: int | None, by: str) -> bool:
    """Remove ``user``'s second factor and log it: a finished ``totp_reset`` row in the
    requests log (submitted by ``by_id``; ``by`` names who did it). True if it was set."""
    was_on = Totp.reset(s, user.id)
    now = utcnow()
    s.add(Request(command=AUDIT_RESET, args={"user_id": user.id, "user": user.name},
                  user_id=by_id, status="done", created_at=now, started_at=now,
                  finished_at=now, result={"user_id": user.id, "user": user.name, "by": by,
                                           "was_enabled": was_on}))
    s.flush()
    return was_on


def _digits(code: object) -> str:
    if not isinstance(code, str):
        return ""
    return "".join(ch for ch in code if ch.isdigit())[:8]


def _matching_step(secret: str, digits: str, now: float | None,
                   after: int | None) -> int | None:
    """The step within the window whose code is ``digits`` and that is later than
    ``after`` (None: no step used yet)."""
    if len(digits) != 6:
        return None
    totp = pyotp.TOTP(secret, interval=STEP)
    current = int((time.time() if now is None else now) // STEP)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.at(step * STEP), digits):
            return step
    return None
