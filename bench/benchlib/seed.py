"""The P4 fixture: a database with N users x M machines, plus API tokens and requests.

Written straight through ``ravada.db`` models (a benchmark fixture, not a product path):
a few public bases owned by an admin, one clone of each base per user (states mixed the
way a working day looks), a few finished requests per user, and one API token per user
whose plaintext is returned so the load generator can log in as every user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select

from ravada.db import ApiToken, Database, Machine, Request, User, utcnow
from ravada.db.migrate import upgrade
from ravada.passwords import hash_password

STATES = ("shutdown", "running", "shutdown", "hibernated", "shutdown")


def token_hash(token: str) -> str:
    """How rvd_front stores a token: its own function when it has one, else SHA-256 hex."""
    try:
        from ravada.front.accounts import token_hash as front_hash

        return front_hash(token)
    except (ImportError, AttributeError):
        return hashlib.sha256(token.encode()).hexdigest()


def token_prefix() -> str:
    """The prefix rvd_front requires of bearer tokens (none when it has no such rule)."""
    try:
        from ravada.front.accounts import TOKEN_PREFIX

        return str(TOKEN_PREFIX)
    except (ImportError, AttributeError):
        return ""


@dataclass
class Login:
    """One seeded user as the load generator sees them."""

    uid: int
    name: str
    token: str
    requests: list[int]  # finished requests
    machines: list[int]  # their clones
    pending: int  # a request that stays pending (no rvd_back): what a long-poll waits on


@dataclass
class Seeded:
    users: int
    machines: int
    requests: int
    password: str
    logins: list[Login]


def seed(db: Database, users: int = 1000, per_user: int = 5, requests_per_user: int = 3,
         prefix: str = "bench") -> Seeded:
    """Migrate ``db`` and fill it; refuses a database that already holds bench users."""
    upgrade(db.engine)
    password = secrets.token_urlsafe(12)
    pw_hash = hash_password(password)  # one hash for all: argon2 is slow on purpose
    now = utcnow()
    with db.session() as s:
        if s.scalar(select(func.count()).select_from(User).where(
                User.name.like(f"{prefix}-%"))):
            raise RuntimeError(f"the database already holds {prefix}-* users: use a fresh one")
        admin = User(name=f"{prefix}-admin", password_hash=pw_hash, is_admin=True)
        s.add(admin)
        s.flush()
        bases = [Machine(name=f"{prefix}-base{b}", owner_id=admin.id, is_base=True,
                         is_public=True, state="shutdown", memory_mb=1024, disk_gb=10)
                 for b in range(per_user)]
        s.add_all(bases)
        s.flush()
        s.execute(insert(User), [
            {"name": f"{prefix}-u{i:04d}", "password_hash": pw_hash, "created_at": now}
            for i in range(users)])
        uids = s.scalars(select(User.id).where(User.name.like(f"{prefix}-u%"))
                         .order_by(User.name)).all()
        rows = []
        for i, uid in enumerate(uids):
            for b, base in enumerate(bases):
                state = STATES[(i + b) % len(STATES)]
                display = ({"listen": "127.0.0.1", "spice": 5900 + 2 * (i * per_user + b) % 1000,
                            "spice_tls": None, "vnc": 5901 + 2 * (i * per_user + b) % 1000}
                           if state == "running" else None)
                rows.append({"name": f"{base.name}-u{i:04d}", "owner_id": uid,
                             "base_id": base.id, "state": state, "display": display,
                             "created_at": now, "updated_at": now})
        s.execute(insert(Machine), rows)
        mids = dict(s.execute(select(Machine.name, Machine.id)).all())
        reqs: list[dict[str, Any]] = []
        for i, uid in enumerate(uids):
            for r in range(requests_per_user):
                base = bases[r % len(bases)]
                reqs.append({"command": "start", "args": {"client_ip": "127.0.0.1"},
                             "machine_id": mids[f"{base.name}-u{i:04d}"], "user_id": uid,
                             "status": "done", "result": {"state": "running"},
                             "created_at": now, "started_at": now, "finished_at": now})
        for i, uid in enumerate(uids):  # one click each whose desktop is still on its way
            reqs.append({"command": "start", "args": {"client_ip": "127.0.0.1"},
                         "machine_id": mids[f"{bases[0].name}-u{i:04d}"], "user_id": uid,
                         "status": "requested", "created_at": now})
        s.execute(insert(Request), reqs)
        tokens = {uid: token_prefix() + secrets.token_urlsafe(32) for uid in uids}
        s.execute(insert(ApiToken), [
            {"user_id": uid, "name": "bench", "token_hash": token_hash(tok), "created_at": now}
            for uid, tok in tokens.items()])
        done: dict[int, list[int]] = {}
        pending: dict[int, int] = {}
        for rid, uid, status in s.execute(select(Request.id, Request.user_id, Request.status)
                                          .where(Request.user_id.in_(uids))).all():
            if status == "requested":
                pending[uid] = rid
            else:
                done.setdefault(uid, []).append(rid)
        owned: dict[int, list[int]] = {}
        for mid, uid in s.execute(select(Machine.id, Machine.owner_id)
                                  .where(Machine.owner_id.in_(uids))).all():
            owned.setdefault(uid, []).append(mid)
        logins = [Login(uid, f"{prefix}-u{i:04d}", tokens[uid], done.get(uid, []),
                        owned.get(uid, []), pending[uid]) for i, uid in enumerate(uids)]
    return Seeded(users=len(uids), machines=len(rows) + len(bases), requests=len(reqs),
                  password=password, logins=logins)
