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
from ravada.texts import Text

# Each language is named in itself: a reader who cannot read the page still finds theirs.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español"}
DEFAULT = "en"
COOKIE = "ravada_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600

bp = Blueprint("i18n", __name__)


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where shown."""
    return message


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
    "up": lazy_gettext("up"), "down": lazy_gettext("down"), "disabled": lazy_gettext("disabled"),
    "draining": lazy_gettext("draining"),
}
ACTIONS = {
    "start": lazy_gettext("Start"), "shutdown": lazy_gettext("Shut down"),
    "hibernate": lazy_gettext("Hibernate"), "reboot": lazy_gettext("Reboot"),
    "resume": lazy_gettext("Resume"), "force_shutdown": lazy_gettext("Force shutdown"),
    "remove": lazy_gettext("Remove"), "prepare_base": lazy_gettext("Prepare base"),
    "remove_base": lazy_gettext("Remove base"),
}


# Every text the scripts (static/*.js) show through t(): base.html hands them the
# translations (test_i18n_catalog checks that each t("…") of a script is listed here).
SCRIPT_TEXTS = (
    N_("Queued…"), N_("Working…"), N_("Ready"), N_("Failed"), N_("the request failed"),
    N_("Starting…"), N_("Ready — opening the display…"), N_("Could not start: %(reason)s"),
    N_(" (at next start: %(changes)s)"), N_("%(command)s: done"),
    N_("Request %(id)s failed: %(reason)s"), N_("%(action)s: done"),
    N_("%(action)s failed: %(reason)s"), N_("Taking a screenshot…"),
    N_("No screenshot: %(reason)s"), N_("New token (copy it now, it is shown once): %(token)s"),
    N_("Password changed."), N_("Connected"), N_("Disconnected"),
    N_("Connection lost — reload the page for a new ticket"),
    N_("Authentication failed: %(reason)s"), N_("%(name)s · console"),
    # static/isos.js
    N_("network error at byte %(offset)s: %(reason)s"),
    N_("Connection lost at %(size)s; retrying…"), N_("Resuming at %(size)s…"),
    N_("%(done)s of %(size)s (%(percent)s, %(rate)s/s)"),
    N_("Uploaded %(name)s; the server is checking it…"),
    N_("%(name)s is larger than the limit (%(size)s)."),
    N_("%(name)s is ready. SHA-256 %(sha256)s"), N_("%(name)s was refused: %(reason)s"),
    N_("removed"), N_("Upload failed: %(reason)s"),
)


def script_texts() -> dict[str, str]:
    """SCRIPT_TEXTS in this request's language, for base.html's JSON block: only those
    that differ from the scripts' own (English) words."""
    said = {text: _(text) for text in SCRIPT_TEXTS}
    return {text: there for text, there in said.items() if there != text}


def state_label(code: Any) -> str:
    """A state or status code in the reader's language (unknown codes as they are)."""
    label = STATES.get(code) if isinstance(code, str) else None
    return str(label) if label is not None else str(code or "")


def action_label(code: Any) -> str:
    """A machine action's button text (``prepare_base`` → "Prepare base")."""
    label = ACTIONS.get(code) if isinstance(code, str) else None
    return str(label) if label is not None else str(code).replace("_", " ").capitalize()


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


def say(value: Any) -> str:
    """A :class:`ravada.texts.Text` (or a Refusal carrying one) in the reader's language:
    its template looked up in the catalogue, its values (Texts too) filled in; anything
    else as it is."""
    text = getattr(value, "text", value)
    if not isinstance(text, Text):
        return str(value)
    values = {k: say(v) if isinstance(v, Text) else v for k, v in text.values.items()}
    return _(text.template, **values) if values else _(text.template)


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.add_template_filter(state_label, "state")
    app.add_template_filter(action_label, "action")
    app.add_template_filter(say, "say")

    @app.context_processor
    def _languages() -> dict[str, Any]:
        return {"languages": LANGUAGES, "current_locale": current,
                "script_texts": script_texts}


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
