"""Reader for the header of a libvirt QEMU save image (``virsh save`` / managed save).

Layout (libvirt ``src/qemu/qemu_saveimage.h``, ``virQEMUSaveHeader``): a 16-byte
magic ``LibvirtQemudSave`` (``LibvirtQemudPart`` while still being written), then
native-endian uint32 fields ``version``, ``data_len`` (XML length),
``was_running``, ``compressed`` (called ``format`` in newer libvirt),
``cookieOffset`` and 14 unused ones. ``compressed`` is an on-disk enum.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"LibvirtQemudSave"
PARTIAL = b"LibvirtQemudPart"
HEADER = struct.Struct("<16s5I14I")  # x86_64 hosts: little-endian
HEADER_SIZE = HEADER.size  # 92 bytes

# virQEMUSaveFormat: values are ABI, never renumbered.
FORMATS = {0: "raw", 1: "gzip", 2: "bzip2", 3: "xz", 4: "lzop", 5: "zstd", 6: "sparse"}


class SaveImageError(ValueError):
    """The bytes are not a complete libvirt QEMU save image header."""


@dataclass(frozen=True)
class SaveHeader:
    """The decoded header fields."""

    version: int
    xml_len: int
    was_running: bool
    compressed: int
    cookie_offset: int

    @property
    def format_name(self) -> str:
        """The compression as ``qemu.conf``'s ``save_image_format`` spells it."""
        return FORMATS.get(self.compressed, f"unknown({self.compressed})")


def parse(data: bytes) -> SaveHeader:
    """Decode the first :data:`HEADER_SIZE` bytes of a save image."""
    if len(data) < HEADER_SIZE:
        raise SaveImageError(f"save image header needs {HEADER_SIZE} bytes, got {len(data)}")
    magic, version, xml_len, was_running, compressed, cookie, *_ = HEADER.unpack_from(data)
    if magic == PARTIAL:
        raise SaveImageError("save image is incomplete (magic LibvirtQemudPart)")
    if magic != MAGIC:
        raise SaveImageError(f"not a libvirt QEMU save image (magic {magic!r})")
    return SaveHeader(version, xml_len, bool(was_running), compressed, cookie)
