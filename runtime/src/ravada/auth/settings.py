"""The ``auth`` section of /etc/ravada.conf: backend order and the LDAP/AD directory.

Only dataclasses and checks live here (no LDAP import), so ``ravada.config`` can
validate the section on load and name the bad key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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


@dataclass
class AuthConfig:
    order: list[str] = field(default_factory=lambda: ["local"])
    ldap: LdapConfig = field(default_factory=LdapConfig)


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
