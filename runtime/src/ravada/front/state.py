"""The front's shared objects (config, database, secret) and the signed-in viewer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app

from ravada.auth.service import Authenticator
from ravada.auth.totp import Totp
from ravada.config import Config
from ravada.db import Database
from ravada.front.touches import Touches


@dataclass
class FrontState:
    config: Config
    db: Database
    secret_key: str
    # The login backends of auth.order; directory connections live as long as the process.
    auth: Authenticator = field(default=None)  # type: ignore[assignment]
    totp: Totp = field(default=None)  # type: ignore[assignment]  # the second factor
    # bearer tokens' last_used_at, written off the request path
    touches: Touches = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.touches is None:
            self.touches = Touches(self.db)
        if self.auth is None:
            self.auth = Authenticator(self.config.auth)
        if self.totp is None:
            self.totp = Totp(self.config.auth.totp, os.path.join(
                os.path.dirname(self.config.front.secret_key_file), "totp.key"))


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a plain copy of the user row, safe to keep across sessions."""

    id: int
    name: str
    is_admin: bool
    session_version: int = 0  # the user's current one; older session cookies are void
    second_factor: bool = False  # TOTP is on: a login needs a code after the password
    locale: str | None = None  # the language picked on the account page (None: the browser's)


def front() -> FrontState:
    return current_app.extensions["ravada"]


def iso_time(value: datetime | None) -> str | None:
    """Naive-UTC database time → ISO-8601 with ``Z``."""
    return None if value is None else value.isoformat() + "Z"


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_time(value)
    return value
