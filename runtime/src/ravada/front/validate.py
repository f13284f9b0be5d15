"""Checks for user input from forms (strings) and JSON (typed values)."""

from __future__ import annotations

import re
from typing import Any

from ravada.front.errors import BadInput, Invalid

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MACHINE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


def text(value: Any, name: str, *, max_len: int, min_len: int = 1,
         pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
    """A string of ``min_len``..``max_len`` characters, optionally matching ``pattern``."""
    if not isinstance(value, str):
        raise BadInput(f"{name}: expected a string")
    if "\x00" in value:
        raise Invalid(f"{name}: must not contain NUL characters")
    if not min_len <= len(value) <= max_len:
        raise Invalid(f"{name}: must be {min_len} to {max_len} characters long")
    if pattern is not None and not pattern.match(value):
        raise Invalid(f"{name}: {hint or 'has characters that are not allowed'}")
    return value


def integer(value: Any, name: str, *, lo: int, hi: int) -> int:
    """An integer in ``lo..hi``; form strings of digits are accepted."""
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name}: expected an integer")
    if not lo <= value <= hi:
        raise Invalid(f"{name}: must be between {lo} and {hi}")
    return value


def boolean(value: Any, name: str) -> bool:
    """A boolean; form strings like ``on``/``off``/``1``/``0`` are accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise BadInput(f"{name}: expected true or false")


def username(value: Any) -> str:
    return text(value, "name", max_len=64, pattern=USERNAME_RE,
                hint="letters, digits and . _ @ - only, starting with a letter or digit")


def password(value: Any, name: str = "password") -> str:
    return text(value, name, min_len=PASSWORD_MIN, max_len=PASSWORD_MAX)


def machine_name(value: Any) -> str:
    return text(value, "name", max_len=48, pattern=MACHINE_NAME_RE,
                hint="letters, digits and _ . - only, starting with a letter or digit")


def timeout(value: Any, maximum: int) -> int:
    """A request's ``timeout`` in seconds: at most the configured ``queue.request_timeout``."""
    seconds = integer(value, "timeout", lo=1, hi=2**31)
    if seconds > maximum:
        raise BadInput(f"timeout: at most {maximum} s (the configured maximum, "
                       "queue.request_timeout)")
    return seconds


def wait_seconds(value: Any, *, default: float = 0.0, maximum: float = 30.0) -> float:
    """The ``?wait=N`` long-poll parameter: 0..``maximum`` seconds."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput("wait: expected a number of seconds") from None
    if not 0 <= seconds <= maximum:  # also refuses nan and inf
        raise Invalid(f"wait: must be between 0 and {maximum:g} seconds")
    return seconds
