"""The virt layer: everything rvd_back does to libvirt goes through here.

Split after Nova's libvirt driver:

- :mod:`ravada.virt.host` -- :class:`Host`, one libvirt connection: lifecycle events
  (``on_state(name, state)``), reconnect after libvirtd restarts, lookup / define of guests.
- :mod:`ravada.virt.guest` -- :class:`Guest`, one domain: start, shutdown (waits for the
  event), force_shutdown, reboot, hibernate (managed save), resume, screenshot (PNG),
  display ports and one-time display passwords, remove.
- :mod:`ravada.virt.storage` -- :class:`Storage`, disks through one libvirt storage pool:
  blank qcow2 disks, O(1) qcow2 overlays on a base image, read-only base images.
- :mod:`ravada.virt.xml` -- :func:`render_domain`, the domain XML from a Jinja2 template.

Every libvirt failure surfaces as :class:`VirtError` (a ``RuntimeError`` with a clean
message meant for the request's error text); a missing domain is :class:`GuestNotFound`.

States reported by :meth:`Guest.state`, :meth:`Host.list_guests` and ``on_state``:
``running``, ``shutdown``, ``paused``, ``hibernated`` (shut off with a managed save).
"""

from ravada.virt.errors import GuestNotFound, NotRunning, VirtError, VolumeExists
from ravada.virt.guest import Guest
from ravada.virt.host import Host
from ravada.virt.storage import Storage
from ravada.virt.xml import render_domain

__all__ = ["Guest", "GuestNotFound", "Host", "NotRunning", "Storage", "VirtError",
           "VolumeExists", "render_domain"]
