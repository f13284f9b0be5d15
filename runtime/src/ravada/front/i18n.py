"""The front's languages (Flask-Babel): which one a request is answered in, and the picker.

The language is, in order: the signed-in user's stored choice (``users.locale``, set on the
account page), the ``ravada_lang`` cookie (the login page's picker, before anyone is signed
in), the best match of the browser's ``Accept-Language``, else English. Catalogues live in
``front/translations/<lang>/LC_MESSAGES/messages.po`` with their compiled ``.mo`` beside them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, g, make_response, redirect, request
from flask_babel import Babel, get_locale, lazy_gettext
from flask_babel import gettext as _

from ravada.db.models import User
from ravada.front.dbutil import write_session
from ravada.front.errors import Invalid
from ravada.front.state import front

# Each language is named in itself: a reader who cannot read the page still finds theirs.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español"}
DEFAULT = "en"
COOKIE = "ravada_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600

bp = Blueprint("i18n", __name__)

# Words the database keeps in English (machine and ISO states, request statuses, actions):
# pages show them through the ``state`` and ``action`` filters, CSS and scripts keep the codes.
STATES = {
    "creating": lazy_gettext("creating"), "running": lazy_gettext("running"),
    "shutdown": lazy_gettext("shutdown"), "paused": lazy_gettext("paused"),
    "hibernated": lazy_gettext("hibernated"), "removing": lazy_gettext("removing"),
    "unknown": lazy_gettext("unknown"), "crashed": lazy_gettext("crashed"),
    "failed": lazy_gettext("failed"), "requested": lazy_gettext("requested"),
    "working": lazy_gettext("working"), "done": lazy_gettext("done"),
    "uploading": lazy_gettext("uploading"), "downloading": lazy_gettext("downloading"),
    "verifying": lazy_gettext("verifying"), "ready": lazy_gettext("ready"),
}
ACTIONS = {
    "start": lazy_gettext("Start"), "shutdown": lazy_gettext("Shut down"),
    "hibernate": lazy_gettext("Hibernate"), "reboot": lazy_gettext("Reboot"),
    "resume": lazy_gettext("Resume"), "force_shutdown": lazy_gettext("Force shutdown"),
    "remove": lazy_gettext("Remove"), "prepare_base": lazy_gettext("Prepare base"),
    "remove_base": lazy_gettext("Remove base"),
}


def state_label(code: Any) -> str:
    """A state or status code in the reader's language (unknown codes as they are)."""
    label = STATES.get(code) if isinstance(code, str) else None
    return str(label) if label is not None else str(code or "")


def action_label(code: Any) -> str:
    """A machine action's button text (``prepare_base`` → "Prepare base")."""
    label = ACTIONS.get(code) if isinstance(code, str) else None
    return str(label) if label is not None else str(code).replace("_", " ").capitalize()


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where shown."""
    return message


def select_locale() -> str:
    """Flask-Babel's locale selector: stored choice, then cookie, then Accept-Language."""
    viewer = g.get("viewer")
    if viewer is not None and viewer.locale in LANGUAGES:
        return viewer.locale
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT


def current() -> str:
    """The language of this request (``en`` outside one)."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT


def checked(value: Any) -> str:
    """A language code from a form: one of LANGUAGES, else a 422 naming the field."""
    if not isinstance(value, str) or value not in LANGUAGES:
        raise Invalid(_("language: one of %(codes)s", codes=", ".join(LANGUAGES)))
    return value


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.add_template_filter(state_label, "state")
    app.add_template_filter(action_label, "action")

    @app.context_processor
    def _languages() -> dict[str, Any]:
        return {"languages": LANGUAGES, "current_locale": current}


@bp.post("/language")
def set_language() -> Any:
    """Both pickers post here (with the CSRF token): the account page's stores the choice on
    the user; before login it lives in a cookie. Either way the next page is in it."""
    from ravada.front import web  # web imports the services, which import this module

    lang = checked(request.form.get("lang"))
    viewer = web.viewer()
    if viewer is not None and g.get("auth") == "session":
        with write_session(front().db) as s:
            user = s.get(User, viewer.id)
            if user is not None:
                user.locale = lang
    resp = make_response(redirect(web.safe_next(request.form.get("next"))))
    resp.set_cookie(COOKIE, lang, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                    secure=request.is_secure)
    return resp
