"""rvd_front: the web broker (Flask). ``create_app(config)`` builds the WSGI app.

The front never calls libvirt and never runs as root: it reads machines, users
and requests from the database and writes requests for rvd_back.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from ravada.config import Config
from ravada.db import Database
from ravada.front import i18n, validate, web
from ravada.front.errors import FrontError
from ravada.front.netutil import TrustedProxyMiddleware
from ravada.front.security import load_secret_key
from ravada.front.state import FrontState

csrf = CSRFProtect()


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure exactly when the request arrived over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:  # type: ignore[override]
        return bool(request and request.is_secure)


def create_app(config: Config, db: Database | None = None) -> Flask:
    """The rvd_front WSGI application for ``config`` (``db`` defaults to config.database.url)."""
    from ravada.front import (  # noqa: F401 (importing them registers their views)
        admin_nodes,
        api_hardware,
        api_machines,
        api_nodes,
        api_requests,
        api_session,
        api_users,
        totp_routes,
    )
    from ravada.front.admin import bp as admin_bp
    from ravada.front.api import bp as api_bp
    from ravada.front.auth import bp as auth_bp
    from ravada.front.isos import bp as isos_bp
    from ravada.front.isos import data_bp as isos_data_bp
    from ravada.front.live import bp as live_bp
    from ravada.front.markdown import render as markdown
    from ravada.front.oidc import bp as oidc_bp
    from ravada.front.oidc import init_app as init_oidc
    from ravada.front.ops import bp as ops_bp
    from ravada.front.server import THREADS_PER_WORKER
    from ravada.front.totp import bp as totp_bp
    from ravada.front.totp import enforce as enforce_totp
    from ravada.front.user import bp as user_bp

    app = Flask(__name__)
    app.request_class = validate.JsonRequest  # deeply nested JSON is a 400, not a 500
    secret = load_secret_key(config.front.secret_key_file)
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="ravada_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.front.session_idle_minutes),
        MAX_CONTENT_LENGTH=config.front.max_request_bytes,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=False,  # behind Apache the Host may differ from the Referer
        JSON_SORT_KEYS=False,
    )
    app.session_interface = SessionInterface()
    app.url_map.converters["id"] = web.IdConverter
    app.url_map.strict_slashes = False
    # one pooled connection per gunicorn thread of the worker
    db = db or Database(config.database.url, pool_size=THREADS_PER_WORKER)
    app.extensions["ravada"] = FrontState(config=config, db=db, secret_key=secret)
    app.wsgi_app = TrustedProxyMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, config.front.trusted_proxies, config.display.public_host)

    app.before_request(web.load_viewer)
    app.before_request(enforce_totp)  # auth.totp.required_for: enrolment first
    csrf.init_app(app)
    i18n.init_app(app)  # Flask-Babel: the language of each request, the picker
    app.add_template_filter(markdown, "markdown")
    for bp in (auth_bp, oidc_bp, totp_bp, user_bp, admin_bp, isos_bp, isos_data_bp, api_bp,
               ops_bp, live_bp):
        app.register_blueprint(bp)
    if config.auth.oidc.issuer:
        init_oidc(app, config.auth.oidc)
    csrf.exempt(api_bp)  # the API checks X-CSRFToken itself for cookie sessions
    csrf.exempt(ops_bp)

    app.register_error_handler(FrontError, web.handle_front_error)
    app.register_error_handler(CSRFError, web.handle_csrf)
    app.register_error_handler(HTTPException, web.handle_http)
    app.register_error_handler(Exception, web.handle_unexpected)

    @app.context_processor
    def _globals() -> dict[str, object]:
        return {"viewer": web.viewer(), "site": web.site(), "csrf_token": generate_csrf}

    @app.after_request
    def _headers(resp):  # type: ignore[no-untyped-def]
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        return resp

    return app
