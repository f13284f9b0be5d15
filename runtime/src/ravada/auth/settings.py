"""The ``auth`` section of /etc/ravada.conf: backend order, the LDAP/AD directory, OpenID.

Only dataclasses and checks live here (no LDAP import), so ``ravada.config`` can
validate the section on load and name the bad key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

BACKENDS = ("local", "ldap")
MEMBERSHIP_STYLES = ("memberOf", "member", "memberUid", "ad_nested")
# Filters and the attribute the user row is named after, per directory kind.
PRESETS: dict[str, dict[str, str]] = {
    "openldap": {
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "name_attribute": "uid",
    },
    "ad": {  # sAMAccountName or userPrincipalName (alice or alice@example.org)
        "user_filter": "(&(objectClass=user)(objectCategory=person)"
                       "(|(sAMAccountName={username})(userPrincipalName={username})))",
        "name_attribute": "sAMAccountName",
    },
}


@dataclass
class LdapConfig:
    uris: list[str] = field(default_factory=list)
    start_tls: bool = False
    ca_file: str = ""
    tls_verify: bool = True
    bind_dn: str = ""
    bind_password: str = ""
    preset: str = ""
    user_base: str = ""
    user_filter: str = ""
    name_attribute: str = ""
    group_base: str = ""
    group_membership: str = ""
    admin_group: str = ""
    connect_timeout: float = 3.0
    timeout: float = 5.0
    # After every URI failed, logins skip the directory for this long (s).
    retry_after: float = 5.0


TOTP_REQUIRED_FOR = ("none", "admins", "all")


@dataclass
class TotpConfig:
    """The second factor (``ravada.auth.totp``)."""

    required_for: str = "none"  # none | admins | all: who must enrol before using the site
    issuer: str = "Ravada"  # the name authenticator apps show next to the account
    # The key the secrets are encrypted with, created (0600) on first use like front.key;
    # empty: totp.key next to front.secret_key_file.
    key_file: str = ""


@dataclass
class OidcConfig:
    """Single sign-on through an OpenID Connect provider (off while ``issuer`` is empty)."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile", "email"])
    username_claim: str = "preferred_username"
    # A claim holding a list of group names (Keycloak: "groups"); empty: groups not read.
    groups_claim: str = ""
    admin_group: str = ""
    label: str = "single sign-on"
    # false: the login page only shows the button (/login?local=1 still shows the form).
    local_login: bool = True
    ca_file: str = ""  # the provider's CA (PEM) when it is not in the system's trust store
    timeout: float = 5.0


@dataclass
class AuthConfig:
    order: list[str] = field(default_factory=lambda: ["local"])
    ldap: LdapConfig = field(default_factory=LdapConfig)
    oidc: OidcConfig = field(default_factory=OidcConfig)
    totp: TotpConfig = field(default_factory=TotpConfig)


def apply_preset(ldap: LdapConfig) -> None:
    """Fill the keys left empty from ``preset``."""
    for key, value in PRESETS.get(ldap.preset, {}).items():
        if not getattr(ldap, key):
            setattr(ldap, key, value)


def check(auth: AuthConfig) -> None:
    """Raise ValueError("auth.<key>: reason") for a bad value or combination."""
    if not auth.order:
        raise ValueError("auth.order: name at least one backend (local, ldap)")
    for i, name in enumerate(auth.order):
        if name not in BACKENDS:
            raise ValueError(f"auth.order[{i}]: unknown backend {name!r} (known: local, ldap)")
    if len(set(auth.order)) != len(auth.order):
        raise ValueError("auth.order: a backend is listed twice")
    ldap = auth.ldap
    if ldap.preset and ldap.preset not in PRESETS:
        raise ValueError(f"auth.ldap.preset: one of {', '.join(PRESETS)} (or empty)")
    apply_preset(ldap)
    if "ldap" in auth.order:
        _check_ldap(ldap)
    if auth.oidc.issuer:
        _check_oidc(auth.oidc)
    _check_totp(auth.totp)


def _check_totp(totp: TotpConfig) -> None:
    if totp.required_for not in TOTP_REQUIRED_FOR:
        raise ValueError(f"auth.totp.required_for: one of {', '.join(TOTP_REQUIRED_FOR)}, "
                         f"got {totp.required_for!r}")
    if not totp.issuer or len(totp.issuer) > 64 or ":" in totp.issuer:
        raise ValueError("auth.totp.issuer: 1-64 characters, no ':'")
    if totp.key_file and not totp.key_file.startswith("/"):
        raise ValueError(f"auth.totp.key_file: an absolute path, got {totp.key_file!r}")


def _check_ldap(ldap: LdapConfig) -> None:
    p = "auth.ldap."
    if not ldap.uris:
        raise ValueError(p + "uris: at least one ldap:// or ldaps:// URI (ldap is in auth.order)")
    schemes = set()
    for i, uri in enumerate(ldap.uris):
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in ("ldap", "ldaps") or not rest.strip("/"):
            raise ValueError(f"{p}uris[{i}]: expected ldap://host[:port] or ldaps://host[:port], "
                             f"got {uri!r}")
        if " " in uri:
            raise ValueError(f"{p}uris[{i}]: one URI per list item")
        schemes.add(scheme)
    if ldap.start_tls and "ldaps" in schemes:
        raise ValueError(p + "start_tls: StartTLS goes with ldap:// URIs, not ldaps://")
    if "ldap" in schemes and not ldap.start_tls:
        raise ValueError(p + "start_tls: ldap:// without StartTLS would send passwords in clear; "
                         "set start_tls: true or use ldaps://")
    if ldap.tls_verify:
        if not ldap.ca_file:
            raise ValueError(p + "ca_file: the CA certificate (PEM) that signed the directory's "
                             "certificate is required (or tls_verify: false, not recommended)")
        if not os.path.isfile(ldap.ca_file):
            raise ValueError(f"{p}ca_file: no such file: {ldap.ca_file}")
    if bool(ldap.bind_dn) != bool(ldap.bind_password):
        raise ValueError(p + "bind_password: give bind_dn and bind_password together "
                         "(both empty: anonymous search)")
    if not ldap.user_base:
        raise ValueError(p + "user_base: the DN users are searched under")
    f = ldap.user_filter
    if "{username}" not in f:
        raise ValueError(p + "user_filter: must contain {username} (or set preset)")
    if not (f.startswith("(") and f.endswith(")")) or f.count("(") != f.count(")"):
        raise ValueError(p + "user_filter: not a parenthesised LDAP filter")
    if not ldap.name_attribute:
        raise ValueError(p + "name_attribute: the attribute that names the user row (uid, "
                         "sAMAccountName)")
    style = ldap.group_membership
    if style and style not in MEMBERSHIP_STYLES:
        raise ValueError(f"{p}group_membership: one of {', '.join(MEMBERSHIP_STYLES)} (or empty)")
    if style in ("member", "memberUid", "ad_nested") and not ldap.group_base:
        raise ValueError(f"{p}group_base: needed with group_membership: {style}")
    if ldap.admin_group and not style:
        raise ValueError(p + "admin_group: needs group_membership to read groups")
    for key in ("connect_timeout", "timeout"):
        value = getattr(ldap, key)
        if not 0 < value <= 60:
            raise ValueError(f"{p}{key}: between 0 and 60 seconds")
    if not 0 <= ldap.retry_after <= 300:
        raise ValueError(p + "retry_after: between 0 and 300 seconds")


_CLAIM_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_SCOPE_RE = re.compile(r"[!#-\[\]-~]{1,64}")  # RFC 6749 scope-token characters


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_oidc(oidc: OidcConfig) -> None:
    p = "auth.oidc."
    try:
        url = urlsplit(oidc.issuer)
        host = url.hostname or ""
    except ValueError as exc:
        raise ValueError(f"{p}issuer: not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not host:
        raise ValueError(f"{p}issuer: expected https://host[/path], got {oidc.issuer!r}")
    if url.scheme == "http" and not is_loopback(host):
        raise ValueError(p + "issuer: must be https:// (http:// only on a loopback address)")
    if url.query or url.fragment or url.username or url.password:
        raise ValueError(p + "issuer: no query, fragment or credentials in the issuer URL")
    if not oidc.client_id or len(oidc.client_id) > 255 or not oidc.client_id.isprintable():
        raise ValueError(p + "client_id: the client id registered at the provider (required)")
    if not oidc.client_secret:
        raise ValueError(p + "client_secret: the client secret registered at the provider "
                         "(required: ravada is a confidential client)")
    if "openid" not in oidc.scopes:
        raise ValueError(p + "scopes: must include openid")
    for i, scope in enumerate(oidc.scopes):
        if not _SCOPE_RE.fullmatch(scope):
            raise ValueError(f"{p}scopes[{i}]: one scope per item, no spaces or quotes")
    if not _CLAIM_RE.fullmatch(oidc.username_claim):
        raise ValueError(p + "username_claim: a claim name such as preferred_username")
    if oidc.groups_claim and not _CLAIM_RE.fullmatch(oidc.groups_claim):
        raise ValueError(p + "groups_claim: a claim name such as groups (or empty)")
    if oidc.admin_group and not oidc.groups_claim:
        raise ValueError(p + "admin_group: needs groups_claim to read groups")
    if not oidc.label.strip() or len(oidc.label) > 64:
        raise ValueError(p + "label: 1-64 characters (the button says \"Log in with <label>\")")
    if oidc.ca_file and not os.path.isfile(oidc.ca_file):
        raise ValueError(f"{p}ca_file: no such file: {oidc.ca_file}")
    if not 0 < oidc.timeout <= 60:
        raise ValueError(p + "timeout: between 0 and 60 seconds")
