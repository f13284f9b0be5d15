"""ravada: a VDI broker for KVM/libvirt (rvd_back, rvd_front, rvd_console)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ravada")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
