"""Errors of the virt layer, and a helper that turns libvirt's into them."""

from __future__ import annotations

import libvirt


class VirtError(RuntimeError):
    """A libvirt operation failed; ``str(err)`` is a clean one-line reason."""


class GuestNotFound(VirtError, LookupError):
    """No domain of that name (or it disappeared while we worked on it)."""


class VolumeExists(VirtError):
    """A new machine's volume name is taken (a volume Ravada must not touch)."""


class NotRunning(VirtError):
    """The domain is not running and the operation needs it to."""


def clean_message(err: libvirt.libvirtError) -> str:
    """libvirt's message without the noise: its first line (XML errors add the bad text and a
    caret line), whitespace squeezed, no trailing dot."""
    msg = (err.get_error_message() or str(err) or "unknown libvirt error").strip()
    return " ".join(msg.splitlines()[0].split()).rstrip(".")


def wrap(what: str, err: libvirt.libvirtError) -> VirtError:
    """A :class:`VirtError` (or :class:`GuestNotFound`) saying what failed and why."""
    code = err.get_error_code()
    cls = GuestNotFound if code == libvirt.VIR_ERR_NO_DOMAIN else VirtError
    return cls(f"{what}: {clean_message(err)}")
