"""Checks for user input from forms (strings) and JSON (typed values)."""

from __future__ import annotations

import re
from typing import Any

from flask import Request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from ravada import limits
from ravada.front.errors import BadInput, Invalid

USERNAME_RE = limits.USERNAME_RE
MACHINE_NAME_RE = limits.MACHINE_NAME_RE
PASSWORD_MIN, PASSWORD_MAX = limits.PASSWORD_MIN, limits.PASSWORD_MAX
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


def text(value: Any, name: str, *, max_len: int, min_len: int = 1,
         pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
    """A string of ``min_len``..``max_len`` characters, optionally matching ``pattern``."""
    if not isinstance(value, str):
        raise BadInput(_("%(name)s: expected a string", name=name))
    if "\x00" in value:
        raise Invalid(_("%(name)s: must not contain NUL characters", name=name))
    if not min_len <= len(value) <= max_len:
        raise Invalid(_("%(name)s: must be %(min_len)s to %(max_len)s characters long",
                        name=name, min_len=min_len, max_len=max_len))
    if pattern is not None and not pattern.fullmatch(value):
        raise Invalid(_("%(name)s: %(value)s",
                        name=name, value=hint or 'has characters that are not allowed'))
    return value


def integer(value: Any, name: str, *, lo: int, hi: int) -> int:
    """An integer in ``lo..hi``; form strings of digits are accepted."""
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(_("%(name)s: expected an integer", name=name))
    if not lo <= value <= hi:
        raise Invalid(_("%(name)s: must be between %(lo)s and %(hi)s", name=name, lo=lo, hi=hi))
    return value


def boolean(value: Any, name: str) -> bool:
    """A boolean; form strings like ``on``/``off``/``1``/``0`` are accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise BadInput(_("%(name)s: expected true or false", name=name))


def username(value: Any) -> str:
    return text(value, "name", max_len=limits.USERNAME_MAX, pattern=USERNAME_RE,
                hint=limits.USERNAME_HINT)


def password(value: Any, name: str = "password") -> str:
    return text(value, name, min_len=PASSWORD_MIN, max_len=PASSWORD_MAX)


def machine_name(value: Any) -> str:
    return text(value, "name", max_len=limits.MACHINE_NAME_MAX, pattern=MACHINE_NAME_RE,
                hint=limits.MACHINE_NAME_HINT)


def in_limits(value: Any, name: str, bounds: tuple[int, int]) -> int:
    """An integer within one of the shared ``ravada.limits`` ranges."""
    return integer(value, name, lo=bounds[0], hi=bounds[1])


def timeout(value: Any, maximum: int) -> int:
    """A request's ``timeout`` in seconds: at most the configured ``queue.request_timeout``."""
    seconds = integer(value, "timeout", lo=1, hi=2**31)
    if seconds > maximum:
        raise BadInput(_("timeout: at most %(maximum)s s (the configured maximum, "
                         "queue.request_timeout)", maximum=maximum))
    return seconds


def wait_seconds(value: Any, *, default: float = 0.0, maximum: float = 30.0) -> float:
    """The ``?wait=N`` long-poll parameter: 0..``maximum`` seconds."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(_("wait: expected a number of seconds")) from None
    if not 0 <= seconds <= maximum:  # also refuses nan and inf
        raise Invalid(_("wait: must be between 0 and %(maximum)s seconds",
                        maximum=format(maximum, 'g')))
    return seconds


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw`` (brackets in strings
    do not count). A loop over the brackets only: no recursion, whatever the input."""
    depth = deepest = 0
    for b in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if b in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class JsonRequest(Request):
    """Flask's request with a nesting limit on JSON bodies.

    Python's json parser recurses once per level, so a body nested ~1,000 deep raised
    RecursionError (a 500 and a traceback per request); it is a 400 before parsing now.
    """

    def get_json(self, force: bool = False, silent: bool = False,
                 cache: bool = True) -> Any:
        if (force or self.is_json) and json_depth(self.get_data(cache=True)) > \
                limits.JSON_MAX_DEPTH:
            raise BadRequest(f"the JSON body is nested deeper than {limits.JSON_MAX_DEPTH} "
                             "levels")
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            raise BadRequest("the JSON body is nested too deeply") from None
