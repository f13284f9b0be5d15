"""Logins (with rate limiting), users and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import false, select, update
from sqlalchemy.orm import Session

from ravada import queue
from ravada.auth.base import DirectoryUnavailable
from ravada.auth.local import LocalAuth
from ravada.db import ApiToken, User, utcnow
from ravada.front import throttle, validate
from ravada.front.dbutil import write_session
from ravada.front.errors import (
    BadInput,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from ravada.front.i18n import N_
from ravada.front.security import hash_password
from ravada.front.state import FrontState, Viewer, iso_time
from ravada.front.touches import TOKEN_TOUCH_SECONDS

BAD_LOGIN = N_("Invalid user name or password.")
UNREACHABLE = N_("The user directory is unreachable, so directory accounts cannot log in "
                 "right now. Try again in a few minutes.")
TOKEN_PREFIX = "rvd_"
CLOSE_USER = "close_user"  # rvd_back: close a disabled user's display openings and consoles


def viewer_of(user: User) -> Viewer:
    return Viewer(id=user.id, name=user.name, is_admin=user.is_admin,
                  session_version=user.session_version or 0,
                  second_factor=user.totp_enabled_at is not None, locale=user.locale)


def user_json(u: User) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "is_admin": u.is_admin, "is_disabled": u.is_disabled,
            "auth_backend": u.auth_backend, "created_at": iso_time(u.created_at),
            "last_login_at": iso_time(u.last_login_at),
            "directory_groups": u.directory_groups,
            "groups_read_at": iso_time(u.groups_read_at),
            "totp_enabled": u.totp_enabled_at is not None}


# ---------------------------------------------------------------- login

def throttled(fs: FrontState, client_ip: str, username: str) -> None:
    """429 when this address must wait before another try for ``username`` (a read only)."""
    with fs.db.sessionmaker() as s:
        wait = throttle.retry_after(s, client_ip, username)
    if wait:
        raise TooManyRequests(_("Too many failed logins; try again in %(wait)s s.", wait=wait),
                              headers={"Retry-After": str(wait)})


def _check_password(fs: FrontState, username: str, password: str) -> User | None:
    """The local user when the password is right (argon2 runs here, in a read
    transaction: no database write lock is held while hashing)."""
    with fs.db.sessionmaker() as s:
        ident = LocalAuth().authenticate(s, username, password) if password else None
        user = s.get(User, ident.user_id) if ident is not None and ident.user_id else None
        if user is not None:
            s.expunge(user)
    return user


def login(fs: FrontState, username: Any, password: Any, client_ip: str) -> Viewer:
    """Check credentials through the auth backends; record the attempt either way.

    Throttled per address and per account (``ravada.front.throttle``). The backends of
    ``auth.order`` (argon2, a directory over the network) run outside any write
    transaction, which is only opened to record the outcome and create or refresh the
    user row. A directory that does not answer is a 503 with a message, unless the name
    is a local account.
    """
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadInput(_("name and password must be strings"))
    if len(password) > validate.PASSWORD_MAX or len(username) > 256:
        password = ""  # never spend argon2 time on megabytes
    throttled(fs, client_ip, username)
    try:
        ident = fs.auth.check(fs.db.sessionmaker, username, password) if password else None
    except DirectoryUnavailable:  # no password was checked: not a failed attempt either
        raise Unavailable(_(UNREACHABLE), extra={"reason": "directory_unreachable"}) from None
    with write_session(fs.db) as s:
        user = fs.auth.record(s, ident) if ident is not None else None
        ok = user is not None and not user.is_disabled
        throttle.record(s, client_ip, username, ok)
        if not ok or user is None:
            s.commit()
            raise Unauthorized(_(BAD_LOGIN))
        user.last_login_at = utcnow()
        return viewer_of(user)


def end_sessions(s: Session, user_id: int) -> int:
    """Void every session cookie of the user (the caller commits); the new version."""
    s.execute(update(User).where(User.id == user_id)
              .values(session_version=User.session_version + 1))
    return int(s.scalar(select(User.session_version).where(User.id == user_id)) or 0)


def session_version(fs: FrontState, user_id: int) -> int:
    with fs.db.sessionmaker() as s:
        return int(s.scalar(select(User.session_version).where(User.id == user_id)) or 0)


def logout_everywhere(fs: FrontState, user_id: int) -> None:
    """Logout ends every session of the user, not only this browser's."""
    with fs.db.session() as s:
        end_sessions(s, user_id)


def load_viewer(s: Session, user_id: Any) -> Viewer | None:
    """The session's user, when it still exists and is enabled."""
    if not isinstance(user_id, int):
        return None
    user = s.get(User, user_id)
    return viewer_of(user) if user is not None and not user.is_disabled else None


# ---------------------------------------------------------------- users

def list_users(s: Session) -> list[dict[str, Any]]:
    return [user_json(u) for u in s.scalars(select(User).order_by(User.name))]


def create_user(fs: FrontState, viewer: Viewer, data: dict[str, Any]) -> dict[str, Any]:
    _admin(viewer)
    name = validate.username(data.get("name"))
    password = validate.password(data.get("password"))
    is_admin = validate.boolean(data.get("is_admin", False), "is_admin")
    with write_session(fs.db) as s:
        if s.scalar(select(User.id).where(User.name == name)) is not None:
            raise Conflict(_("a user named %(name)s already exists", name=name))
        user = User(name=name, password_hash=hash_password(password), is_admin=is_admin,
                    auth_backend="local")
        s.add(user)
        s.flush()
        return user_json(user)


def update_user(fs: FrontState, viewer: Viewer, user_id: int,
                data: dict[str, Any]) -> dict[str, Any]:
    """Admin: change is_admin, is_disabled and/or the password of a user."""
    _admin(viewer)
    unknown = set(data) - {"is_admin", "is_disabled", "password", "auth_backend"}
    if unknown:
        raise BadInput(_("unknown field(s): %(value)s", value=', '.join(sorted(unknown))[:200]))
    changes: dict[str, Any] = {}
    for key in ("is_admin", "is_disabled"):
        if key in data:
            changes[key] = validate.boolean(data[key], key)
    if "password" in data:
        changes["password_hash"] = hash_password(validate.password(data["password"]))
    link = "auth_backend" in data
    if link:  # link the row to single sign-on: its next provider login binds it
        if data["auth_backend"] != "oidc" or "password" in data:
            raise BadInput(_("auth_backend: only \"oidc\" (link the account to single sign-on), "
                             "without a password"))
        if not fs.config.auth.oidc.issuer:
            raise Conflict(_("auth_backend: single sign-on is not configured (auth.oidc)"))
    if user_id == viewer.id and (changes.get("is_disabled") or changes.get("is_admin") is False):
        raise Conflict(_("you cannot disable yourself or drop your own admin flag"))
    disabling = bool(changes.get("is_disabled"))
    with write_session(fs.db) as s:
        user = s.get(User, user_id) if 0 < user_id < 2**31 else None
        if user is None:
            raise NotFound(_("no user %(user_id)s", user_id=user_id))
        was_disabled = user.is_disabled
        if "password_hash" in changes and user.auth_backend != "local":
            raise Conflict(_("%(name)s's password is kept in the directory, not here",
                             name=user.name))
        for key, value in changes.items():
            setattr(user, key, value)
        if link:
            user.auth_backend, user.password_hash, user.oidc_subject = "oidc", "", None
        if disabling or "password_hash" in changes or link:
            s.flush()
            end_sessions(s, user.id)  # a reset or a disable ends every session
            s.refresh(user)
        if disabling:
            s.execute(ApiToken.__table__.delete().where(ApiToken.user_id == user.id))
            if not was_disabled:  # rvd_back closes the firewall openings and consoles
                queue.enqueue(s, CLOSE_USER, {"user_id": user.id}, user_id=viewer.id)
        s.flush()
        out = user_json(user)
    if disabling and not was_disabled:
        queue.notify(fs.config.queue.socket)
    return out


def change_own_password(fs: FrontState, viewer: Viewer, old: Any, new: Any,
                        client_ip: str) -> int:
    """Check the current password (throttled like a login), store the new one and end
    every other session; returns the new session version for the caller's cookie."""
    new_pw = validate.password(new, "new_password")
    with fs.db.sessionmaker() as s:
        backend = s.scalar(select(User.auth_backend).where(User.id == viewer.id))
    if backend is not None and backend != "local":
        raise Conflict(_("your password is kept in the directory; change it there"))
    throttled(fs, client_ip, viewer.name)
    old_pw = old if isinstance(old, str) and len(old) <= validate.PASSWORD_MAX else ""
    user = _check_password(fs, viewer.name, old_pw)
    ok = user is not None and user.id == viewer.id
    new_hash = hash_password(new_pw) if ok else ""
    with write_session(fs.db) as s:
        throttle.record(s, client_ip, viewer.name, ok)
        if not ok:
            s.commit()
            raise Forbidden(_("the current password is wrong"))
        s.execute(update(User).where(User.id == viewer.id).values(password_hash=new_hash))
        return end_sessions(s, viewer.id)


def _admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise Forbidden(_("administrators only"))


# ---------------------------------------------------------------- API tokens

def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(fs: FrontState, viewer: Viewer, name: Any) -> dict[str, Any]:
    """A new bearer token; the plain text is returned once, only its sha256 is stored."""
    label = validate.text(name if name is not None else "", "name", min_len=0, max_len=64)
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with fs.db.session() as s:
        row = ApiToken(user_id=viewer.id, name=label, token_hash=token_hash(plain),
                       created_at=utcnow())
        s.add(row)
        s.flush()
        return {**token_json(row), "token": plain}


def token_json(t: ApiToken) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "created_at": iso_time(t.created_at),
            "last_used_at": iso_time(t.last_used_at)}


def list_tokens(s: Session, viewer: Viewer) -> list[dict[str, Any]]:
    rows = s.scalars(select(ApiToken).where(ApiToken.user_id == viewer.id).order_by(ApiToken.id))
    return [token_json(t) for t in rows]


def delete_token(fs: FrontState, viewer: Viewer, token_id: int) -> None:
    with write_session(fs.db) as s:
        row = s.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
        if row is None or row.user_id != viewer.id:
            raise NotFound(_("no token %(token_id)s", token_id=token_id))
        s.delete(row)


def viewer_for_token(fs: FrontState, token: str) -> Viewer | None:
    """The enabled user a bearer token belongs to: one SELECT (token joined to its user).

    ``last_used_at`` is refreshed at most once per :data:`TOKEN_TOUCH_SECONDS` per token,
    and not by this request: it notes the token, and :mod:`ravada.front.touches` writes the
    noted tokens of the process in one conditional UPDATE a second (no write on a GET).
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    with fs.db.sessionmaker() as s:
        row = s.execute(
            select(ApiToken.id, ApiToken.last_used_at, User.id, User.name, User.is_admin,
                   User.locale)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == token_hash(token), User.is_disabled == false())
        ).first()
    if row is None:
        return None
    token_id, last_used, user_id, name, is_admin, locale = row
    if last_used is None or (utcnow() - last_used).total_seconds() > TOKEN_TOUCH_SECONDS:
        fs.touches.note(token_id)  # written by the process's writer thread, not here
    return Viewer(id=user_id, name=name, is_admin=bool(is_admin), locale=locale)
