"""OpenID Connect: what a provider's verified claims make of a user here.

No web code: the front's ``oidc`` blueprint runs the code flow (Authlib) and hands the
claims of the verified ID token (and of the userinfo endpoint) to :func:`identity`,
whose result goes through ``Authenticator.record`` like a directory login: the first
login creates the row with ``auth_backend = oidc``, groups and the admin flag follow
the claims at every login, and a row of another backend is never taken over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ravada import limits
from ravada.auth.base import Identity
from ravada.auth.settings import OidcConfig

BACKEND = "oidc"
MAX_GROUPS = 1000
GROUP_MAX = 128


class ClaimsRefused(Exception):
    """The provider vouched for someone, but the claims cannot name a user here."""


def merge_userinfo(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """The userinfo answer completed by the ID token's claims (which win).

    Providers that conform to the spec keep profile claims out of the ID token of a code
    flow; the userinfo answer must be about the same subject (OpenID Connect Core 5.3.2).
    """
    if userinfo.get("sub") != id_claims.get("sub"):
        raise ClaimsRefused("the provider's userinfo answer is about another subject")
    return {**userinfo, **id_claims}


def group_names(raw: Any) -> tuple[str, ...]:
    """Group names from a groups claim: a list of strings (or one string).

    Keycloak's group mapper sends full paths (``/students``): the leading slash goes.
    """
    if isinstance(raw, str):
        raw = [raw]
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ClaimsRefused("the groups claim is not a list of names")
    names = {}
    for item in raw[:MAX_GROUPS]:
        if isinstance(item, str):
            name = item.lstrip("/").strip()
            if 0 < len(name) <= GROUP_MAX and name.isprintable():
                names.setdefault(name.lower(), name)
    return tuple(sorted(names.values()))


def identity(cfg: OidcConfig, claims: Mapping[str, Any]) -> Identity:
    """The identity the claims describe; ClaimsRefused with the reason otherwise."""
    name = claims.get(cfg.username_claim)
    if not isinstance(name, str) or not name:
        raise ClaimsRefused(f"the provider sent no {cfg.username_claim} claim to name the "
                            "account (check auth.oidc.username_claim and the client's scopes)")
    if not limits.username_ok(name):
        raise ClaimsRefused(f"the user name {name[:80]!r} from the provider is not usable here "
                            f"({limits.USERNAME_HINT}, at most {limits.USERNAME_MAX})")
    groups: tuple[str, ...] | None = None
    is_admin: bool | None = None
    if cfg.groups_claim:
        groups = group_names(claims.get(cfg.groups_claim))
        if cfg.admin_group:
            wanted = cfg.admin_group.lstrip("/").lower()
            is_admin = any(g.lower() == wanted for g in groups)
    return Identity(backend=BACKEND, name=name, groups=groups, is_admin=is_admin)
