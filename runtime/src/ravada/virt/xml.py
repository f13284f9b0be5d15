"""Domain XML from ``templates/domain.xml.j2`` (Jinja2, autoescaped).

``render_domain(name, memory_mb, vcpus, disks, iso, listen, domain_type="kvm", uuid=None,
spice_tls=False)``
gives a KVM domain with virtio qcow2 disks, a SATA cdrom for the ISO (boot order cdrom, then
hd), qxl video, SPICE and VNC graphics (autoport, listening on ``listen``), the SPICE agent
channel, USB redirection (qemu-xhci + 2 spicevmc redirdevs) and a tablet. Use
``domain_type="test"`` for libvirt's test driver (:attr:`Host.domain_type` picks it).
With ``spice_tls`` SPICE gets ``defaultMode='secure'``: every channel must use the TLS
port (qemu.conf ``spice_tls = 1``), and a client on the plain port is refused.

Both graphics get a random start password nobody knows: QEMU only accepts passwords set
later (:meth:`Guest.set_display_password`) when the display started with one, and until
then nobody can connect.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid as uuidlib
import zlib
from datetime import UTC, datetime
from functools import lru_cache

import jinja2

from ravada.hardware import options as hw_options

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
DOMAIN_TYPES = ("kvm", "qemu", "test")


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ravada.virt", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("domain.xml.j2")


def render_domain(
    name: str,
    memory_mb: int,
    vcpus: int,
    disks: list[str],
    iso: str | None,
    listen: str,
    domain_type: str = "kvm",
    uuid: str | None = None,
    spice_tls: bool = False,
    password: str | None = None,
    password_valid_to: datetime | None = None,
    hardware: dict | None = None,
) -> str:
    """The domain XML; raises ``ValueError`` naming the bad argument.

    ``password`` (with ``password_valid_to``, UTC) is the display password the domain
    starts with: a click that clones and starts gets its one-time password this way,
    without the two live device updates (one per graphics) a later change needs.
    ``hardware``: the row's switches (``ravada.hardware.options``: SPICE, VNC, sound, USB
    redirection); the defaults when None.
    """
    if not NAME_RE.match(name or ""):
        raise ValueError(f"bad machine name {name!r}: use letters, digits, '_', '.', '+', '-'")
    if not isinstance(memory_mb, int) or not 64 <= memory_mb <= 4 * 1024 * 1024:
        raise ValueError(f"bad memory_mb {memory_mb!r}: an integer from 64")
    if not isinstance(vcpus, int) or not 1 <= vcpus <= 256:
        raise ValueError(f"bad vcpus {vcpus!r}: an integer from 1 to 256")
    if domain_type not in DOMAIN_TYPES:
        raise ValueError(f"bad domain_type {domain_type!r}: one of {', '.join(DOMAIN_TYPES)}")
    if len(disks) > 26:
        raise ValueError("too many disks (at most 26)")
    for path in [*disks, *([iso] if iso else [])]:
        if not path.startswith("/"):
            raise ValueError(f"bad disk or ISO path {path!r}: must be absolute")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise ValueError(f"bad listen address {listen!r}: an IP address") from None
    uid = str(uuidlib.UUID(uuid)) if uuid else str(uuidlib.uuid4())
    if password is not None and (not password.isalnum() or not password.isascii()):
        raise ValueError("bad display password: letters and digits only")
    valid_to = None
    if password_valid_to is not None:
        if password is None:
            raise ValueError("password_valid_to needs a password")
        if password_valid_to.tzinfo is not None:
            password_valid_to = password_valid_to.astimezone(UTC).replace(tzinfo=None)
        valid_to = password_valid_to.strftime("%Y-%m-%dT%H:%M:%S")
    return _template().render(
        name=name,
        uuid=uid,
        memory_kib=memory_mb * 1024,
        vcpus=vcpus,
        disks=[{"path": p, "dev": "vd" + chr(ord("a") + i)} for i, p in enumerate(disks)],
        iso=iso,
        listen=listen,
        domain_type=domain_type,
        password=password or secrets.token_urlsafe(6),  # 8 characters: the VNC limit
        vnc_password=(password or secrets.token_urlsafe(6))[:8],  # QEMU's VNC takes 8
        valid_to=valid_to,
        fixed_ports=_test_driver_ports(name) if domain_type == "test" else None,
        spice_tls=bool(spice_tls),
        **hw_options(hardware),
    )


def _test_driver_ports(name: str) -> tuple[int, int, int]:
    """Display ports (SPICE, VNC, SPICE-TLS) for libvirt's test driver, which never
    allocates autoports.

    Nothing listens on them; they only let the broker's display flow run hermetically.
    """
    slot = zlib.crc32(name.encode()) % 333
    return 5900 + 3 * slot, 5901 + 3 * slot, 5902 + 3 * slot
