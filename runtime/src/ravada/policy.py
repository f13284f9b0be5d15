"""Per-base classroom policies and per-user limits: data and pure rules, no I/O.

A base carries its policy (volatile clones, a pool of pre-made clones, a run timeout,
shutdown after the display was left); the front validates an admin's change with
:func:`check_policy`, the backend decides with the other functions here. Times are naive
UTC datetimes (as stored in the database) and durations are seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from ravada.texts import Refusal

# bounds of every field: (lo, hi)
POOL_MAX = 200
RUN_TIMEOUT_MAX = 7 * 86400
GRACE_MIN, GRACE_MAX = 10, 86400
WARN_BEFORE = 300  # the user page warns this long before a run timeout
RUNNING_LIMIT_MAX = 1000
# A pool clone is named <base>-pool-<n>; admins see what it is from the name.
POOL_INFIX = "-pool-"


class PolicyError(Refusal):
    """A bad policy value; the message names the field and the allowed values."""


@dataclass(frozen=True)
class Policy:
    """What a base asks of its clones (all off by default)."""

    volatile: bool = False
    pool_size: int = 0
    pool_started: int = 0
    run_timeout: int = 0  # seconds; 0 = no limit
    shutdown_disconnected: bool = False
    shutdown_grace: int = 300  # seconds nobody is connected before the shutdown

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(Policy))


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PolicyError("%(name)s: an integer from %(lo)s to %(hi)s", name=name, lo=lo, hi=hi)
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "on", "yes", "0", "false",
                                                    "off", "no", ""):
        return value.lower() in ("1", "true", "on", "yes")
    raise PolicyError("%(name)s: true or false", name=name)


def check_policy(current: Policy, changes: Mapping[str, Any]) -> Policy:
    """``current`` with ``changes`` applied, every field checked; unknown keys refused."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise PolicyError("unknown policy field(s): %(value)s (known: %(value2)s)",
                          value=', '.join(unknown)[:200], value2=', '.join(FIELDS))
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("volatile", "shutdown_disconnected"):
            values[key] = _bool(value, key)
        elif key in ("pool_size", "pool_started"):
            values[key] = _int(value, key, 0, POOL_MAX)
        elif key == "run_timeout":
            values[key] = _int(value, key, 0, RUN_TIMEOUT_MAX)
        else:
            values[key] = _int(value, key, GRACE_MIN, GRACE_MAX)
    policy = replace(current, **values)
    if policy.pool_started > policy.pool_size:
        raise PolicyError("pool_started (%(pool_started)s) cannot exceed pool_size "
                          "(%(pool_size)s)",
                          pool_started=policy.pool_started, pool_size=policy.pool_size)
    return policy


# -- limits -----------------------------------------------------------------------------

def running_limit(global_limit: int, group_limits: Iterable[int] = ()) -> int:
    """The running-machines limit of one user: the most generous of their groups' limits,
    else the global one; 0 means no limit (and wins when any applicable limit is 0)."""
    limits = list(group_limits)
    if limits:
        return 0 if 0 in limits else max(limits)
    return global_limit


GLOBAL_LIMIT = "max_running_per_user"


def user_limit(global_limit: int, group_limits: Mapping[str, int]) -> tuple[int, str]:
    """(limit, what sets it) for a user in groups ``name -> max_running`` (only the groups
    that set one): the group with the most generous limit (by name on a tie), else the
    global ``max_running_per_user``. 0 means no limit."""
    limit = running_limit(global_limit, group_limits.values())
    if not group_limits:
        return limit, GLOBAL_LIMIT
    name = min(n for n, v in group_limits.items() if v == limit)
    return limit, f"max_running of group {name}"


def check_limit(value: Any, name: str = "max_running") -> int | None:
    """A group's ``max_running``: None (or "") for no limit of its own, else 0..1000."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _int(value, name, 0, RUNNING_LIMIT_MAX)


def over_limit(running: int, limit: int, source: str = GLOBAL_LIMIT) -> str | None:
    """Why one more running machine is refused (None when it is allowed); ``source`` names
    the setting the limit comes from."""
    if limit > 0 and running >= limit:
        return (f"you already have {running} machine(s) running and the limit is {limit} "
                f"({source}): shut one down first")
    return None


# -- pools ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolCounts:
    """Unassigned pool clones of one base: made (any state) and running."""

    made: int = 0
    running: int = 0
    creating: int = 0


@dataclass(frozen=True)
class PoolWork:
    create: int  # clones to make
    start: int  # made clones to start


def pool_work(policy: Policy, counts: PoolCounts) -> PoolWork:
    """What the pool keeper still has to do for one base."""
    create = max(0, policy.pool_size - counts.made - counts.creating)
    start = max(0, min(policy.pool_started, policy.pool_size) - counts.running)
    return PoolWork(create=create, start=start)


def pool_name(base: str, n: int, max_len: int = 64) -> str:
    suffix = f"{POOL_INFIX}{n}"
    return base[: max_len - len(suffix)] + suffix


# -- deadlines --------------------------------------------------------------------------

def run_deadline(policy: Policy, started: datetime) -> datetime | None:
    """When a clone started (or handed out) at ``started`` must stop."""
    return started + timedelta(seconds=policy.run_timeout) if policy.run_timeout else None


def idle_deadline(policy: Policy, since: datetime) -> datetime | None:
    """When a clone nobody is connected to since ``since`` is shut down."""
    if not policy.shutdown_disconnected:
        return None
    return since + timedelta(seconds=policy.shutdown_grace)


def next_deadline(deadlines: Iterable[datetime | None]) -> datetime | None:
    found = [d for d in deadlines if d is not None]
    return min(found) if found else None


def seconds_left(deadline: datetime | None, now: datetime) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - now).total_seconds()))


def notices(policy: Policy, *, running: bool, connected: bool, run_until: datetime | None,
            idle_until: datetime | None, now: datetime) -> list[str]:
    """Sentences for the user's desktop card."""
    out: list[str] = []
    if policy.volatile:
        out.append("This desktop is volatile: your changes are discarded when it shuts down.")
    if not running:
        return out
    left = seconds_left(run_until, now)
    if left is not None:
        minutes = (left + 59) // 60
        text = f"Time left: {minutes} min."
        if left <= WARN_BEFORE:
            text = f"Time is almost up: it shuts down in {minutes} min. Save your work."
        out.append(text)
    idle = seconds_left(idle_until, now)
    if idle is not None and not connected:
        out.append(f"It will shut down in {(idle + 59) // 60} min unless you reconnect.")
    return out
