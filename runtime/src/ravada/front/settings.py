"""Site settings kept in the ``settings`` table: known keys, defaults and checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada.db import Setting
from ravada.front import validate
from ravada.front.errors import Invalid
from ravada.front.i18n import N_


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    help: str
    check: Callable[[Any], Any]
    kind: str = "text"  # text | int


def _ws_url(value: Any) -> str:
    url = validate.text(value, "console_ws_url", min_len=0, max_len=255)
    if url and not re.fullmatch(r"wss?://[^\s\"'<>]+", url):
        raise Invalid(_("console_ws_url: expected ws://… or wss://… (or empty to derive it)"))
    return url


KEYS: dict[str, Key] = {k.name: k for k in (
    Key("site_title", "Ravada VDI", N_("Name shown in the page header."),
        lambda v: validate.text(v, "site_title", max_len=64)),
    Key("motd", "", N_("Message shown above the desktop list (plain text)."),
        lambda v: validate.text(v, "motd", min_len=0, max_len=1000)),
    Key("login_max_failures", 10,
        N_("Failed logins allowed per address (IPv6: per /64) in the window."),
        lambda v: validate.integer(v, "login_max_failures", lo=1, hi=1000), "int"),
    Key("login_window_seconds", 300, N_("Length of the login rate-limit window."),
        lambda v: validate.integer(v, "login_window_seconds", lo=10, hi=86400), "int"),
    Key("login_account_free", 5,
        N_("Failures per user name in the window before tries for it from addresses that "
           "failed too must wait (1, 2, 4 … 60 s); clean addresses never wait."),
        lambda v: validate.integer(v, "login_account_free", lo=1, hi=1000), "int"),
    Key("console_ws_url", "",
        N_("Browser-console websocket URL; empty derives it from the request."),
        _ws_url),
    Key("max_running_per_user", 0,
        N_("Machines one user may have running at once (0: no limit)."),
        lambda v: validate.integer(v, "max_running_per_user", lo=0, hi=1000), "int"),
)}


def get_all(s: Session) -> dict[str, Any]:
    """Every known key with its stored value, or its default."""
    values = {k: key.default for k, key in KEYS.items()}
    for row in s.scalars(select(Setting).where(Setting.key.in_(list(KEYS)))):
        try:
            values[row.key] = KEYS[row.key].check(row.value)
        except Exception:  # a bad stored value falls back to the default
            pass
    return values


def update(s: Session, changes: dict[str, Any]) -> dict[str, Any]:
    """Validate every change first, then store them all; unknown keys are refused."""
    unknown = sorted(set(changes) - set(KEYS))
    if unknown:
        raise Invalid(_("unknown setting(s): %(value)s", value=', '.join(unknown)[:200]))
    checked = {k: KEYS[k].check(v) for k, v in changes.items()}
    for key, value in checked.items():
        row = s.get(Setting, key)
        if row is None:
            s.add(Setting(key=key, value=value))
        else:
            row.value = value
    s.flush()
    return get_all(s)
