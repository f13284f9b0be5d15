"""A machine's hardware settings and the checks of a change: shared by rvd_front and rvd_back.

One module, standard library only, so the front refuses exactly what the backend would
(the backend checks again: the row and the request are written by the web account).

``Machine.hardware`` keeps the options the domain template needs besides memory, vCPUs, disks
and the ISO (which have columns): which displays a machine offers, sound, USB redirection,
and ``next_start``: the memory / vCPUs the running domain does not have yet (libvirt keeps
them in the persistent definition; they apply when the machine next starts).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ravada import limits
from ravada.texts import Refusal, Text

DEFAULTS: dict[str, bool] = {"spice": True, "vnc": True, "sound": False, "usb_redirect": True}
SWITCHES = tuple(DEFAULTS)
# One change request may carry any of these keys.
KEYS = ("memory_mb", "vcpus", *SWITCHES, "iso", "add_disk_gb", "grow_disk")
DISK_DEVS = tuple("vd" + chr(c) for c in range(ord("a"), ord("z") + 1))
MAX_DISKS = 4  # disks of one machine (the template's virtio devices vda..)
# States in which the hardware may change: not while a request makes or removes it.
CHANGEABLE = ("shutdown", "running", "paused", "hibernated")


class HardwareError(Refusal):
    """A change that cannot be made; the message says why, for the admin, and ``field``
    names the setting at fault so an API client can point at it."""

    def __init__(self, template: str, field: str | None = None, **values: Any) -> None:
        super().__init__(template, **values)
        self.field = field


def options(hardware: dict[str, Any] | None) -> dict[str, Any]:
    """The switches of a row's ``hardware`` with the defaults filled in."""
    out: dict[str, Any] = dict(DEFAULTS)
    for key in SWITCHES:
        value = (hardware or {}).get(key)
        if isinstance(value, bool):
            out[key] = value
    return out


def base_refusal(name: str, clones: int) -> str | None:
    """Why a base's hardware must not change, or None: its clones' disks are overlays on its
    disk and their domains copy its devices, so a change would split them from it."""
    if clones:
        return Text("%(name)s is a base with %(clones)s clone(s): its hardware is what they "
                    "were made from; remove the clones (or make a new base) before changing "
                    "it", name=name, clones=clones)
    return None


def _int(value: Any, key: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not limits.in_range(value, bounds):
        raise HardwareError("%(key)s: an integer from %(lo)s to %(hi)s, not %(got)s", key,
                            key=key, lo=bounds[0], hi=bounds[1], got=repr(value))
    return int(value)


def check_change(args: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The normalised change of ``args`` against ``current`` (the switches of
    :func:`options`); raises HardwareError naming the bad key. An empty change is an error."""
    if not isinstance(args, dict):
        raise HardwareError("a hardware change is an object", "body")
    unknown = sorted(set(args) - set(KEYS))
    if unknown:
        raise HardwareError("unknown hardware setting(s): %(value)s", unknown[0],
                            value=', '.join(unknown))
    out: dict[str, Any] = {}
    if "memory_mb" in args:
        out["memory_mb"] = _int(args["memory_mb"], "memory_mb", limits.MEMORY_MB)
    if "vcpus" in args:
        out["vcpus"] = _int(args["vcpus"], "vcpus", limits.VCPUS)
    for key in SWITCHES:
        if key in args:
            if not isinstance(args[key], bool):
                raise HardwareError("%(key)s: true or false, not %(value)s", key,
                                    key=key, value=repr(args[key]))
            out[key] = args[key]
    if not {**current, **out}.get("spice", True) and not {**current, **out}.get("vnc", True):
        raise HardwareError("display: keep at least one of SPICE and VNC", "spice")
    if "iso" in args:
        iso = args["iso"]
        if iso is not None and (not isinstance(iso, str) or len(iso) > 255):
            raise HardwareError("iso: an ISO file name, or null to eject", "iso")
        out["iso"] = iso or None
    if "add_disk_gb" in args:
        out["add_disk_gb"] = _int(args["add_disk_gb"], "add_disk_gb", limits.DISK_GB)
    if "grow_disk" in args:
        grow = args["grow_disk"]
        if not isinstance(grow, dict) or grow.get("dev") not in DISK_DEVS:
            raise HardwareError("grow_disk: {\"dev\": \"vda\".., \"gb\": new size in GiB}",
                                "grow_disk")
        out["grow_disk"] = {"dev": grow["dev"],
                            "gb": _int(grow.get("gb"), "grow_disk.gb", limits.DISK_GB)}
    if not out:
        raise HardwareError("nothing to change", "body")
    return out


def on_state(machine: Any, before: str) -> None:
    """After a machine row's state changed from ``before``: a boot applies what waited for
    the next start (and is its last start); a stop leaves nothing waiting. A resume or a
    restore from hibernation is no boot (the saved machine keeps its old hardware)."""
    if machine.state == before:
        return
    booted = machine.state == "running" and before in ("shutdown", "unknown", "creating")
    if booted:
        machine.last_started_at = datetime.now(UTC).replace(tzinfo=None)
    if (booted or machine.state == "shutdown") and (machine.hardware or {}).get("next_start"):
        machine.hardware = {k: v for k, v in machine.hardware.items() if k != "next_start"}
