"""Log in with an OpenID Connect provider: the authorization code flow through Authlib.

``/login/oidc`` finds the provider by its discovery document and sends the browser to
it with ``state``, ``nonce`` and a PKCE challenge (S256), all kept in the signed session
cookie. ``/login/oidc/callback`` checks ``state`` (and the ``iss`` response parameter),
exchanges the code with the PKCE verifier and the client secret, verifies the ID token
(signature from the provider's JWKS, issuer, audience, expiry, nonce), reads the
userinfo endpoint, and signs the user in (``ravada.auth.oidc``). Every way this can go
wrong is a login page with the reason and a 4xx/5xx status, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import (
    Blueprint,
    Flask,
    current_app,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from joserfc.errors import BadSignatureError, JoseError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ravada.auth import oidc as claims_map
from ravada.auth.settings import OidcConfig
from ravada.db import User, utcnow
from ravada.front import accounts, totp
from ravada.front.dbutil import write_session
from ravada.front.errors import (
    BadInput,
    Conflict,
    Forbidden,
    FrontError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from ravada.front.state import front

bp = Blueprint("oidc", __name__)
log = logging.getLogger("ravada.front.oidc")
EXTENSION = "ravada_oidc"
NEXT_KEY, ID_TOKEN_KEY = "oidc_next", "oidc_id_token"


class ProviderError(FrontError):
    """The provider answered, but not as OpenID Connect says it must."""

    status, code = 502, "provider_error"


class _Client(FlaskOAuth2App):
    """Authlib's client, and one more JWKS fetch when a signature does not verify.

    The JWKS is kept per process and fetched again only for an unknown key id; a provider
    whose keys were replaced under the same id would otherwise be refused until restart.
    A forged token costs one extra JWKS fetch and is still refused.
    """

    def parse_id_token(self, token: Any, nonce: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().parse_id_token(token, nonce, *args, **kwargs)
        except BadSignatureError:
            self.fetch_jwk_set(force=True)
            return super().parse_id_token(token, nonce, *args, **kwargs)


class _OAuth(OAuth):
    oauth2_client_cls = _Client


def init_app(app: Flask, cfg: OidcConfig) -> None:
    """Register the provider with Authlib (nothing is fetched until the first login)."""
    oauth = _OAuth(app)
    kwargs: dict[str, Any] = {
        "scope": " ".join(cfg.scopes),
        "code_challenge_method": "S256",
        "token_endpoint_auth_method": "client_secret_basic",
        "default_timeout": cfg.timeout,
    }
    if cfg.ca_file:
        kwargs["verify"] = cfg.ca_file
    app.extensions[EXTENSION] = oauth.register(
        "oidc", client_id=cfg.client_id, client_secret=cfg.client_secret,
        server_metadata_url=cfg.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs=kwargs)


def _cfg() -> OidcConfig:
    cfg = front().config.auth.oidc
    if not cfg.issuer or EXTENSION not in current_app.extensions:
        raise NotFound(_("Single sign-on is not configured here."))
    return cfg


def _client() -> Any:
    return current_app.extensions[EXTENSION]


def _unreachable(cfg: OidcConfig) -> Unavailable:
    return Unavailable(_("The sign-in provider (%(label)s) cannot be reached right now, so "
                         "nobody can log in with it. Try again in a few minutes.",
                         label=cfg.label),
                       extra={"reason": "provider_unreachable"})


def metadata(cfg: OidcConfig) -> dict[str, Any]:
    """The provider's discovery document (fetched once per process, then kept).

    Its ``issuer`` must be the configured one (OpenID Connect Discovery 4.3); a bad
    document is not kept, so the next login asks again.
    """
    client = _client()
    try:
        meta = client.load_server_metadata()
    except requests.HTTPError as exc:
        raise ProviderError(_("The sign-in provider's discovery document could not be read "
                              "(HTTP %(status_code)s); check auth.oidc.issuer.",
                              status_code=exc.response.status_code)) from None
    except requests.RequestException as exc:
        log.warning("OpenID provider %s unreachable: %s", cfg.issuer, exc)
        raise _unreachable(cfg) from None
    except ValueError:
        client.server_metadata.clear()
        raise ProviderError(_("The sign-in provider's discovery document is not JSON.")) from None
    if str(meta.get("issuer", "")).rstrip("/") != cfg.issuer.rstrip("/"):
        client.server_metadata.clear()
        raise ProviderError(_("The discovery document names the issuer %(value)s, not "
                              "%(issuer)s: refused (check auth.oidc.issuer).",
                              value=repr(meta.get('issuer')), issuer=repr(cfg.issuer)))
    return meta


def _page(exc: FrontError) -> Any:
    """A refusal as the login page with its reason (the button to try again is on it)."""
    log.info("single sign-on refused (%s): %s", exc.status, exc.detail)
    return render_template("login.html", error=exc.detail, next=""), exc.status, exc.headers


@bp.get("/login/oidc")
def start() -> Any:
    try:
        cfg = _cfg()
        metadata(cfg)
        nxt = request.args.get("next", "")
        session[NEXT_KEY] = nxt[:512] if isinstance(nxt, str) else ""
        try:
            return _client().authorize_redirect(url_for("oidc.callback", _external=True))
        except requests.RequestException:
            raise _unreachable(cfg) from None
    except FrontError as exc:
        return _page(exc)


@bp.get("/login/oidc/callback")
def callback() -> Any:
    try:
        return _finish(_cfg())
    except FrontError as exc:
        return _page(exc)


def _exchange(cfg: OidcConfig) -> dict[str, Any]:
    """state, code exchange (PKCE verifier) and the ID token's verification by Authlib."""
    meta = metadata(cfg)
    error = request.args.get("error")
    if error:
        raise Unauthorized(_("The sign-in provider did not log you in (%(value)s: %(value2)s).",
                             value=error[:64],
                             value2=request.args.get('error_description', '')[:200]))
    iss = request.args.get("iss")
    if iss is not None and iss != meta.get("issuer"):  # RFC 9207: mix-up defence
        raise BadInput(_("This sign-in answer comes from another issuer than the one this "
                         "server uses. Nothing was signed in."))
    try:
        token = _client().authorize_access_token()
    except MismatchingStateError:
        raise BadInput(_("This sign-in answer does not belong to a sign-in started in this "
                         "browser (its state does not match). Start again from the login page."),
                       extra={"reason": "state_mismatch"}) from None
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            raise BadInput(_("This sign-in code was already used or has expired. Start again "
                             "from the login page."), extra={"reason": "code_invalid"}) from None
        raise ProviderError(_("The sign-in provider refused the code exchange (%(error)s: "
                              "%(value)s).",
                              error=exc.error, value=(exc.description or '')[:200])) from None
    except JoseError as exc:
        log.warning("ID token from %s refused: %r", cfg.issuer, exc)
        raise Unauthorized(_("The sign-in provider's ID token failed verification (signature, "
                             "issuer, audience, expiry or nonce). Nothing was signed in."),
                           extra={"reason": "id_token_invalid"}) from None
    except requests.RequestException:
        raise _unreachable(cfg) from None
    except ValueError:
        raise ProviderError(_("The sign-in provider's token answer is not JSON.")) from None
    if not token.get("id_token") or not token.get("userinfo"):
        raise ProviderError(_("The sign-in provider sent no ID token: is the openid scope "
                              "allowed for this client?"))
    return token


def _claims(cfg: OidcConfig, token: dict[str, Any]) -> dict[str, Any]:
    """The verified ID token's claims, completed by the userinfo endpoint when offered."""
    id_claims = dict(token["userinfo"])
    if not metadata(cfg).get("userinfo_endpoint"):
        return id_claims
    try:
        userinfo = _client().userinfo(token=token)
    except requests.HTTPError as exc:
        raise ProviderError(_("The sign-in provider's userinfo endpoint answered HTTP "
                              "%(status_code)s.", status_code=exc.response.status_code)) from None
    except requests.RequestException:
        raise _unreachable(cfg) from None
    except ValueError:
        raise ProviderError(_("The sign-in provider's userinfo answer is not JSON.")) from None
    try:
        return claims_map.merge_userinfo(id_claims, userinfo)
    except claims_map.ClaimsRefused as exc:
        raise ProviderError(str(exc)) from None


def _finish(cfg: OidcConfig) -> Any:
    token = _exchange(cfg)
    try:
        ident = claims_map.identity(cfg, _claims(cfg, token))
    except claims_map.ClaimsRefused as exc:
        raise Forbidden(_("Signed in at the provider, but %(exc)s.", exc=exc)) from None
    subject = str(token["userinfo"]["sub"])
    fs = front()
    with write_session(fs.db) as s:
        _check_subject(s, cfg, ident.name, subject)
        user = fs.auth.record(s, ident)
        if user is None:
            raise Conflict(_("An account named %(name)s already exists here and is not a "
                             "%(label)s account; an administrator must link it before it can "
                             "log in with %(label)s.", name=ident.name, label=cfg.label),
                           extra={"reason": "name_taken"})
        if user.is_disabled:
            raise Forbidden(_("This account is disabled."))
        user.oidc_subject = subject
        user.last_login_at = utcnow()
        viewer = accounts.viewer_of(user)
    nxt = session.get(NEXT_KEY)
    log.info("%s logged in with %s", ident.name, cfg.issuer)
    # an enrolled second factor is asked here too (ravada.front.totp)
    return totp.after_first_factor(viewer, nxt if isinstance(nxt, str) else None,
                                   keep={ID_TOKEN_KEY: token["id_token"]})


def _check_subject(s: Session, cfg: OidcConfig, name: str, subject: str) -> None:
    """A row stays bound to the provider account (``sub``) of its first login.

    User names can change or be reused at a provider; the subject cannot. So another
    provider account never takes a row over, and one provider account never gets two.
    """
    if len(subject) > 255:
        raise ProviderError(_("The provider's subject identifier is longer than 255 characters."))
    bound = s.scalar(select(User).where(User.oidc_subject == subject))
    if bound is not None and bound.name != name:
        raise Conflict(_("This %(label)s account is already linked to the account %(name)s "
                         "here (was its user name changed at the provider?); an administrator "
                         "can link it again.", label=cfg.label, name=bound.name),
                       extra={"reason": "subject_linked"})
    row = s.scalar(select(User).where(User.name == name))
    if row is not None and row.oidc_subject not in (None, subject):
        raise Conflict(_("The account %(name)s here belongs to another %(label)s account; an "
                         "administrator can link it again.", name=name, label=cfg.label),
                       extra={"reason": "name_taken"})


def end_session_url() -> str | None:
    """Where logout sends the browser: the provider's end-session endpoint when this
    session came from the provider and it offers one (else None: local logout only)."""
    id_token = session.get(ID_TOKEN_KEY)
    cfg = front().config.auth.oidc
    if not id_token or not cfg.issuer or EXTENSION not in current_app.extensions:
        return None
    try:
        endpoint = metadata(cfg).get("end_session_endpoint")
    except FrontError:
        return None  # the provider is down: the local session still ends
    if not endpoint:
        return None
    query = urlencode({"id_token_hint": id_token, "client_id": cfg.client_id,
                       "post_logout_redirect_uri": url_for("auth.login", _external=True)})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


@bp.app_context_processor
def _button() -> dict[str, Any]:
    """The login page's "Log in with <label>" button (and whether the form shows)."""
    cfg = front().config.auth.oidc
    if not cfg.issuer:
        return {"sso": None}
    local = cfg.local_login or request.args.get("local") == "1"
    return {"sso": {"label": cfg.label, "local": local}}
