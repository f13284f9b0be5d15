"""What an ISO of the library is: its file name, its checksum, its first bytes.

Shared by rvd_front (checks what an admin typed before anything is written) and
rvd_back (checks again, as root, before a file enters the ISO directory). Standard
library only.
"""

from __future__ import annotations

import re

NAME_MAX = 255
SHA256_RE = re.compile(r"[0-9a-f]{64}")

# Volume descriptors start at byte 32768 (sector 16 of 2048 bytes); each one begins
# with a type byte, then a five-byte standard identifier.
DESCRIPTORS_AT = 32768
SECTOR = 2048
ISO9660_ID = b"CD001"
# UDF's volume recognition sequence is BEA01, NSR02 (UDF <= 1.50) or NSR03, TEA01; the
# NSR descriptor is what says UDF (BEA01 alone is any extended area). Its descriptors
# are a sector apart: stepping by 2048 bytes also finds them on 4096-byte sectors.
UDF_IDS = (b"NSR02", b"NSR03")
SCAN_SECTORS = 16
# What a check needs of the head of a file.
HEAD_BYTES = DESCRIPTORS_AT + SCAN_SECTORS * SECTOR


def name_error(name: object) -> str | None:
    """Why ``name`` cannot be an ISO's file name, or None: a plain printable name ending
    in ``.iso``, no directory part, not hidden (hidden names are transfers in progress)."""
    if not isinstance(name, str) or not name:
        return "a file name is required"
    if len(name.encode()) > NAME_MAX:
        return f"at most {NAME_MAX} bytes"
    if "/" in name or "\\" in name or "\0" in name or not name.isprintable():
        return "a plain file name: no '/', '\\' or control characters"
    if name.startswith("."):
        return "must not start with '.'"
    if not name.lower().endswith(".iso") or len(name) < 5:
        return "must end in .iso"
    return None


def sha256_error(value: object) -> str | None:
    """Why ``value`` is not a SHA-256 in hex (64 digits), or None."""
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value.strip().lower()):
        return "a SHA-256 is 64 hexadecimal digits"
    return None


def image_kind(head: bytes) -> str | None:
    """``"iso9660"`` or ``"udf"`` from the first bytes of a file (HEAD_BYTES are enough);
    None when neither volume descriptor is there."""
    if head[DESCRIPTORS_AT + 1:DESCRIPTORS_AT + 6] == ISO9660_ID:
        return "iso9660"
    for i in range(SCAN_SECTORS):
        at = DESCRIPTORS_AT + i * SECTOR + 1
        if head[at:at + 5] in UDF_IDS:
            return "udf"
    return None


URL_MAX = 2048


def url_error(url: object) -> str | None:
    """Why ``url`` cannot be downloaded, or None: http(s) with a host, printable, short."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url or len(url) > URL_MAX or not url.isprintable():
        return f"an http:// or https:// URL of at most {URL_MAX} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "only http:// and https:// URLs with a host"
    return None
