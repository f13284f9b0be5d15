"""Request plumbing shared by the blueprints: who is asking, decorators, error rendering."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, ValidationError

from ravada.front import accounts, settings
from ravada.front.errors import Forbidden, FrontError
from ravada.front.state import Viewer, front

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
log = logging.getLogger("ravada.front")
API_PREFIX = "/api/v1"


class IdConverter(BaseConverter):
    """``<id:name>``: a positive database id (1..2**31-1); anything else is a 404."""

    regex = r"[1-9][0-9]{0,9}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > 2**31 - 1:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


def is_api() -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def client_ip() -> str:
    """The viewer's address (X-Forwarded-For is already resolved by TrustedProxyMiddleware)."""
    return request.remote_addr or ""


def browser_host() -> str:
    """The host name the browser used to reach the broker (X-Forwarded-Host from a trusted
    proxy is already applied), without the port."""
    return urlsplit("//" + request.host).hostname or ""


def viewer() -> Viewer | None:
    return g.get("viewer")


def current() -> Viewer:
    """The signed-in viewer (views behind login_required / API auth only)."""
    v = g.get("viewer")
    assert v is not None
    return v


def site() -> dict[str, Any]:
    """Settings for templates, read once per request."""
    if "site" not in g:
        with front().db.sessionmaker() as s:
            g.site = settings.get_all(s)
    return g.site


def load_viewer() -> None:
    """before_request: authenticate by bearer token or by session (with idle timeout)."""
    g.viewer, g.auth = None, None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            g.viewer = accounts.viewer_for_token(front(), token.strip())
            g.auth = "token" if g.viewer else "bad_token"
        else:
            g.auth = "bad_token"
        return
    uid = session.get("uid")
    if uid is None:
        return
    now = int(time.time())
    conf = front().config.front
    seen, since = session.get("seen"), session.get("since")
    if (not isinstance(seen, int) or now - seen > conf.session_idle_minutes * 60
            or not isinstance(since, int) or now - since > conf.session_max_hours * 3600):
        session.clear()  # idle too long, or older than the absolute lifetime
        g.session_expired = True
        return
    with front().db.sessionmaker() as s:
        g.viewer = accounts.load_viewer(s, uid)
    if g.viewer is None or session.get("sv") != g.viewer.session_version:
        # a disabled user, or a logout/password change/reset elsewhere ended this session
        g.viewer = None
        session.clear()
        g.session_expired = True
        return
    g.auth = "session"
    # A live list's long-poll is not the user's activity, and its answer must never carry a
    # session cookie: it may end after a form POST of the same page and would overwrite the
    # cookie holding that POST's flash message with the older session it started with.
    if now - seen >= 5 and not request.path.startswith("/live/"):
        session["seen"] = now


def sign_in(v: Viewer) -> None:
    """A fresh session cookie bound to the user's current session version."""
    session.clear()
    session.permanent = True
    session["uid"] = v.id
    session["sv"] = v.session_version
    session["since"] = session["seen"] = int(time.time())


def sign_out() -> None:
    """Log out: end this session and every other session of the same user."""
    uid = session.get("uid")
    if isinstance(uid, int) and g.get("auth") == "session":
        accounts.logout_everywhere(front(), uid)
    session.clear()


def keep_session(session_version: int) -> None:
    """After the viewer's own password change: this session stays, the others end."""
    if g.get("auth") == "session":
        session["sv"] = session_version


def safe_next(target: str | None) -> str:
    """Only local paths are followed after login (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("user.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("user.index")
    return target


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("viewer") is None or g.get("auth") != "session":
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current().is_admin:
            raise Forbidden(_("This page is for administrators."))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def form_post(call: Callable[[], T], success: str | Callable[[T], str],
              endpoint: str | Callable[[T | None], Any], **url_kw: Any) -> Any:
    """The pages' form POST: run the service ``call``; flash ``success`` (a text, or made
    from the call's result) or the refusal's detail; then redirect to ``endpoint`` (with
    ``url_kw``), or answer what ``endpoint(result)`` returns (``None`` after a refusal)."""
    result: T | None = None
    try:
        result = call()
    except FrontError as exc:
        flash(exc.detail, "error")
    else:
        flash(success(result) if callable(success) else success, "ok")
    if callable(endpoint):
        return endpoint(result)
    return redirect(url_for(endpoint, **url_kw))


def no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---------------------------------------------------------------- errors

def _error(status: int, code: str, detail: str, extra: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> Any:
    if is_api():
        resp = jsonify({"error": code, "detail": detail, **(extra or {})})
        resp.status_code = status
    else:
        resp = Response(render_template("error.html", status=status, detail=detail), status)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def handle_front_error(exc: FrontError) -> Any:
    headers = dict(exc.headers)
    if exc.status == 401 and is_api():
        headers.setdefault("WWW-Authenticate", 'Bearer realm="ravada"')
    return _error(exc.status, exc.code, exc.detail, exc.extra, headers)


def handle_csrf(exc: CSRFError) -> Any:
    return _error(400, "csrf_failed",
                  _("The CSRF token is missing or invalid (%(reason)s). "
                    "Reload the page and try again.", reason=exc.description))


# werkzeug's own texts for the statuses the front meets, in the reader's language.
HTTP_TEXTS = {
    400: lazy_gettext("The request could not be understood."),
    404: lazy_gettext("Nothing is at this address. Check the link or go back to your "
                      "desktops."),
    405: lazy_gettext("This address does not accept that method."),
    413: lazy_gettext("The request is larger than the server accepts."),
    415: lazy_gettext("The request's content type is not accepted here."),
}


def handle_http(exc: HTTPException) -> Any:
    code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    detail = exc.description or exc.name or "error"
    if exc.code in HTTP_TEXTS and detail == type(exc).description:
        detail = str(HTTP_TEXTS[exc.code])
    return _error(exc.code or 500, code, detail,
                  headers={k: v for k, v in exc.get_headers() if k.lower() == "allow"})


def handle_unexpected(exc: Exception) -> Any:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(500, "internal",
                  _("Internal error; the administrator can find it in the log."))
