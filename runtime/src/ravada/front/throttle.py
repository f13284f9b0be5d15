"""Password-guess throttling, for every auth backend's logins and for password checks.

Two rules, both counted in ``login_attempts`` so every front worker sees them:

- per address: ``login_max_failures`` failures in ``login_window_seconds`` from one
  network (an IPv4 address, or an IPv6 /64: one host owns a whole /64) block further
  tries from it, whatever the user name;
- per account: after ``login_account_free`` failures for a name in the window, tries for
  that name from an address that itself failed in the window must wait 1, 2, 4 … up to
  60 s after the name's last failure. A clean address is never held back, so guesses from
  elsewhere cannot lock the real user out.

The checks only read; :func:`record` writes one short row. Nothing here hashes.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ravada.db import LoginAttempt, utcnow
from ravada.front import settings

MAX_ACCOUNT_DELAY = 60


def network_of(client_ip: str) -> str:
    """The throttled unit for ``client_ip``: the IPv4 address, or the IPv6 /64."""
    try:
        addr = ipaddress.ip_address(client_ip.strip().strip("[]"))
    except ValueError:
        return client_ip[:45]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _failures(s: Session, since: datetime, *cond: object) -> tuple[int, datetime | None,
                                                                  datetime | None]:
    count, oldest, newest = s.execute(
        select(func.count(), func.min(LoginAttempt.at), func.max(LoginAttempt.at))
        .where(LoginAttempt.ok.is_(False), LoginAttempt.at >= since, *cond)).one()
    return int(count or 0), oldest, newest


def retry_after(s: Session, client_ip: str, username: str) -> int:
    """Seconds before this address may try this name again (0: now).

    Unknown and known names are treated alike, so the answer tells nothing about
    which names exist.
    """
    conf = settings.get_all(s)
    window, limit = conf["login_window_seconds"], conf["login_max_failures"]
    free = conf["login_account_free"]
    now = utcnow()
    since = now - timedelta(seconds=window)
    net = network_of(client_ip)
    by_net, oldest, _ = _failures(s, since, LoginAttempt.client_ip == net)
    if by_net >= limit and oldest is not None:
        return max(1, int(window - (now - oldest).total_seconds()) + 1)
    if by_net == 0:
        return 0  # a clean address is never held back by someone else's guesses
    by_name, _, last = _failures(s, since, LoginAttempt.username == username[:64])
    if by_name < free or last is None:
        return 0
    delay = min(2 ** (by_name - free), MAX_ACCOUNT_DELAY)
    wait = delay - (now - last).total_seconds()
    return int(wait) + 1 if wait > 0 else 0


def record(s: Session, client_ip: str, username: str, ok: bool) -> None:
    """One login (or password check) outcome."""
    s.add(LoginAttempt(client_ip=network_of(client_ip), username=username[:64], ok=ok,
                       at=utcnow()))
