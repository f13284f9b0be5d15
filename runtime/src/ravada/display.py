"""Display access: one-time passwords, connection info and remote-viewer ``.vv`` files.

The backend sets a fresh password on a machine's SPICE/VNC display each time a
user opens it (:func:`new_password`, valid until :func:`valid_until`) and hands
the front :func:`connection_info`; the front turns that into a ``.vv`` file with
:func:`render_vv` (the INI dialect of virt-viewer, read by GLib's GKeyFile).
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

# Letters and digits only: safe in URLs, in GKeyFile values and in libvirt's XML.
_ALPHABET = string.ascii_letters + string.digits
MIN_PASSWORD_LENGTH = 16

RELEASE_CURSOR = "shift+f12"
TOGGLE_FULLSCREEN = "shift+f11"


def new_password(length: int = 20) -> str:
    """A random display password of ``length`` (>= 16) letters and digits.

    Note: QEMU's VNC authentication only uses the first 8 characters.
    """
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError("password length must be an int")
    if length < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password length must be at least {MIN_PASSWORD_LENGTH}, got {length}")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def valid_until(lifetime_s: int) -> datetime:
    """Aware UTC datetime ``lifetime_s`` seconds from now."""
    if isinstance(lifetime_s, bool) or not isinstance(lifetime_s, int | float):
        raise TypeError("lifetime must be a number of seconds")
    if lifetime_s <= 0:
        raise ValueError(f"lifetime must be positive, got {lifetime_s}")
    return datetime.now(UTC) + timedelta(seconds=lifetime_s)


def format_expires(expires: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix (seconds precision); refuses naive datetimes."""
    if expires.tzinfo is None or expires.utcoffset() is None:
        raise ValueError("expires must be timezone-aware (UTC)")
    return expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _port(value: Any, what: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what}: expected a TCP port 1-65535, got {value!r}")
    return value


VNC_PASSWORD_LENGTH = 8


def connection_info(machine_name: str, display: dict[str, Any], host: str, password: str,
                    expires: datetime, host_subject: str | None = None) -> dict[str, Any]:
    """The display info of the runtime contract for ``display`` (``Machine.display``).

    ``display`` is ``{"listen": ip, "spice": port, "spice_tls": port|None, "vnc": port}``;
    ``host`` is what clients connect to (``display.public_host`` or the listen address).
    ``host_subject``: the SPICE-TLS certificate subject of the host the machine runs on
    (each hypervisor node has its own certificate, so the ``.vv`` must name that one).
    """
    if not isinstance(display, dict):
        raise ValueError("display must be a dict with listen/spice/spice_tls/vnc")
    missing = [k for k in ("spice", "vnc") if k not in display]
    if missing:
        raise ValueError(f"display is missing {', '.join(missing)}")
    for what, value in (("machine name", machine_name), ("host", host), ("password", password)):
        _check_value(what, value)
    info: dict[str, Any] = {
        "host": host,
        "password": password,
        "expires": format_expires(expires),
        # With SPICE-TLS (defaultMode='secure') libvirt allocates no plain port: None.
        "spice": {
            "port": _port(display["spice"], "display.spice",
                          optional=display.get("spice_tls") is not None),
            "tls_port": _port(display.get("spice_tls"), "display.spice_tls", optional=True),
        },
        # VNC authentication uses 8 characters at most (libvirt refuses longer ones).
        "vnc": {"port": _port(display["vnc"], "display.vnc"),
                "password": password[:VNC_PASSWORD_LENGTH]},
        "machine": machine_name,
    }
    if host_subject:
        info["spice"]["host_subject"] = _check_value("host_subject", host_subject)
    return info


def _check_value(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected a non-empty string, got {value!r}")
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what}: must not contain newlines or NUL characters")
    return value


def _keyfile_escape(value: str) -> str:
    """Escape a string for GKeyFile: backslash, tab and a leading space."""
    out = value.replace("\\", "\\\\").replace("\t", "\\t")
    if out.startswith(" "):
        out = "\\s" + out[1:]
    return out


def render_vv(info: dict[str, Any], title: str, *, tls: bool = False, ca_pem: str | None = None,
              host_subject: str | None = None, fullscreen: bool = True,
              usb_redirect: bool = True) -> str:
    """The ``.vv`` file (``[virt-viewer]`` INI) for a SPICE connection described by ``info``.

    With ``tls=True`` the file points at the TLS port, embeds ``ca_pem`` (newlines
    written as ``\\n`` as virt-viewer expects) and requires every channel to be secure.
    Raises ValueError on missing TLS data or on values that could inject lines.
    """
    host = _check_value("host", info.get("host"))
    password = _check_value("password", info.get("password"))
    title = _check_value("title", title)
    spice = info.get("spice") or {}
    lines = ["[virt-viewer]", "type=spice", f"host={_keyfile_escape(host)}"]
    if tls:
        tls_port = spice.get("tls_port")
        if tls_port is None:
            raise ValueError("TLS requested but the machine has no SPICE TLS port")
        if not ca_pem or "-----BEGIN" not in ca_pem:
            raise ValueError("TLS requested but no CA certificate (PEM) was given")
        lines.append(f"tls-port={_port(tls_port, 'spice.tls_port')}")
    else:
        lines.append(f"port={_port(spice.get('port'), 'spice.port')}")
    lines += [
        f"password={_keyfile_escape(password)}",
        f"title={_keyfile_escape(title)}",
        "delete-this-file=1",
        f"fullscreen={1 if fullscreen else 0}",
        f"release-cursor={RELEASE_CURSOR}",
        f"toggle-fullscreen={TOGGLE_FULLSCREEN}",
    ]
    if usb_redirect:
        lines += ["enable-usbredir=1", "enable-usb-autoshare=1"]
    else:
        lines += ["enable-usbredir=0", "enable-usb-autoshare=0"]
    if tls:
        assert ca_pem is not None
        pem = ca_pem.replace("\r\n", "\n").strip()
        if "\\" in pem or "\x00" in pem:
            raise ValueError("ca_pem: unexpected characters in the PEM text")
        lines.append("ca=" + pem.replace("\n", "\\n"))
        if host_subject:
            subject = _check_value("host_subject", host_subject)
            lines.append(f"host-subject={_keyfile_escape(subject)}")
        lines.append("secure-channels=all")
    return "\n".join(lines) + "\n"
