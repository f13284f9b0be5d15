"""Checks of request arguments; each failure is a RequestError naming the argument."""

from __future__ import annotations

from typing import Any

from ravada import limits
from ravada.back import isolib, isos
from ravada.back.context import Context
from ravada.back.errors import RequestError
from ravada.firewall import check_ip

# The same ranges the front checks (one module for both sides).
MEMORY_MB = limits.MEMORY_MB
DISK_GB = limits.DISK_GB
VCPUS = limits.VCPUS


def int_arg(args: dict[str, Any], key: str, lo: int, hi: int, default: int | None) -> int | None:
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(f"bad {key} {value!r}: an integer from {lo} to {hi}")
    return value


def bool_arg(args: dict[str, Any], key: str) -> bool:
    value = args.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(f"bad {key} {value!r}: true or false")
    return value


def client_ip_arg(args: dict[str, Any], required: bool) -> str | None:
    ip = args.get("client_ip")
    if ip in (None, ""):
        if required:
            raise RequestError("client_ip is required")
        return None
    try:
        return str(check_ip(ip))
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def iso_path(ctx: Context, iso: Any) -> str | None:
    """The checked path of a request's ``iso`` argument (ravada.back.isos)."""
    if iso in (None, ""):
        return None
    path = isos.resolve(ctx.config.front.iso_dir, iso)
    isolib.check_usable(ctx, iso)
    return path
