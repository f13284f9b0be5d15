"""The ``hardware`` request: memory, vCPUs, displays, sound, USB redirection, ISO, disks.

The domain's persistent definition is rendered again from the template with the new values
(the same function that made it), so what a machine gets at its next start is always what
its row says. A running machine also gets the change live where libvirt can (balloon down,
vCPUs up to the maximum, cdrom, hot-plugged disk, block resize); the rest is listed in
``hardware.next_start`` until it next starts. A failed change leaves the definition and the
row as they were and removes a volume it made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ravada import hardware
from ravada.back import isos
from ravada.back.args import iso_path
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.steps import Result, domain_xml, guest_of, load
from ravada.db import Machine
from ravada.virt import hardware as live
from ravada.virt.guest import Guest


def _refuse(ctx: Context, machine: Machine, change: dict[str, Any]) -> None:
    if machine.state not in hardware.CHANGEABLE:
        raise RequestError(f"cannot change the hardware of {machine.name!r} while it is "
                           f"{machine.state}")
    if machine.state == "hibernated":
        raise RequestError(f"{machine.name!r} is hibernated: its saved memory needs the same "
                           "hardware; resume it and shut it down first")
    if machine.is_base:
        with ctx.db.session() as s:
            clones = s.scalar(select(func.count()).select_from(Machine)
                              .where(Machine.base_id == machine.id)) or 0
        refusal = hardware.base_refusal(machine.name, clones)
        if refusal:
            raise RequestError(refusal)
        if "add_disk_gb" in change or "grow_disk" in change:
            raise RequestError(f"{machine.name!r} is a base: its disk is a read-only image; "
                               "remove the base before changing its disks")


def _disks(ctx: Context, machine: Machine, guest: Guest, change: dict[str, Any],
           running: bool) -> tuple[list[str], str | None, str | None, dict[str, int]]:
    """(disk paths after the change, new volume, its device, sizes in GiB by device);
    grows a disk in place (live when running)."""
    sizes = live.disk_sizes(guest)
    paths = [p for _dev, (p, _cap) in sorted(sizes.items())]
    gib = {dev: cap >> 30 for dev, (_p, cap) in sizes.items()}
    grow = change.get("grow_disk")
    if grow:
        dev, size = grow["dev"], grow["gb"]
        if dev not in sizes:
            raise RequestError(f"{machine.name!r} has no disk {dev} "
                               f"(it has {', '.join(sorted(sizes)) or 'none'})")
        if size <= gib[dev]:
            raise RequestError(f"disk {dev} of {machine.name!r} is {gib[dev]} GiB: a disk only "
                               f"grows (asked {size} GiB)")
        if running:
            if not live.resize_disk(guest, dev, size << 30):
                raise RequestError(f"this host cannot grow a disk of the running "
                                   f"{machine.name!r}: shut it down first")
        else:
            ctx.storage.resize(sizes[dev][0], size << 30)
        gib[dev] = size
    new_path = new_dev = None
    if "add_disk_gb" in change:
        if len(paths) >= hardware.MAX_DISKS:
            raise RequestError(f"{machine.name!r} has {len(paths)} disks, the most a machine "
                               "may have")
        new_dev = hardware.DISK_DEVS[len(paths)]
        new_path = ctx.storage.create_disk(f"{machine.name}.{new_dev}", change["add_disk_gb"])
        paths.append(new_path)
        gib[new_dev] = change["add_disk_gb"]
    return paths, new_path, new_dev, gib


def change_hardware(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    current = hardware.options(machine.hardware)
    try:
        change = hardware.check_change(job.args, current)
    except hardware.HardwareError as exc:
        raise RequestError(str(exc)) from None
    _refuse(ctx, machine, change)
    guest = guest_of(ctx, machine)
    running = guest.state() in ("running", "paused")
    iso = iso_path(ctx, change["iso"]) if change.get("iso") else None
    if "iso" not in change and machine.iso:
        iso = isos.resolve(ctx.config.front.iso_dir, machine.iso, must_exist=False)
    switches = {k: change.get(k, current[k]) for k in hardware.SWITCHES}
    memory_mb = change.get("memory_mb", machine.memory_mb)
    vcpus = change.get("vcpus", machine.vcpus)
    paths, new_path, new_dev, gib = _disks(ctx, machine, guest, change, running)
    try:
        ctx.host.define(domain_xml(ctx, machine.name, memory_mb, vcpus, paths, iso,
                                   uuid=guest.uuid, hardware=switches))
    except BaseException:
        if new_path:
            ctx.storage.delete(new_path)
        raise
    waiting = dict((machine.hardware or {}).get("next_start") or {})
    applied: list[str] = []

    def done(key: str, now_live: bool, before: Any, after: Any) -> None:
        """Note whether ``key`` took effect now or waits for the next start."""
        if now_live or not running:
            waiting.pop(key, None)
            applied.append(key)
        else:
            waiting.setdefault(key, {"from": before})["to"] = after
            if waiting[key]["from"] == after:  # back to what it runs with
                waiting.pop(key)

    if "memory_mb" in change:
        done("memory_mb", running and live.set_memory(guest, memory_mb), machine.memory_mb,
             memory_mb)
    if "vcpus" in change:
        done("vcpus", running and live.set_vcpus(guest, vcpus), machine.vcpus, vcpus)
    if "iso" in change:
        done("iso", running and live.set_cdrom(guest, iso), machine.iso, change["iso"])
    if new_path and new_dev:
        done(f"disk {new_dev}", running and live.attach_disk(guest, new_path, new_dev),
             None, change["add_disk_gb"])
    if "grow_disk" in change:
        done(f"grow {change['grow_disk']['dev']}", True, None, None)
    for key in hardware.SWITCHES:
        if key in change and change[key] != current[key]:
            done(key, False, current[key], change[key])
    row = {**switches, "disks": [{"dev": d, "gb": g} for d, g in sorted(gib.items())]}
    if waiting:
        row["next_start"] = waiting
    with ctx.db.session() as s:
        m = s.get(Machine, machine.id)
        if m is None:
            raise RequestError(f"machine {machine.name!r} was removed meanwhile")
        m.memory_mb, m.vcpus, m.hardware = memory_mb, vcpus, row
        if "iso" in change:
            m.iso = change["iso"]
        if gib:
            m.disk_gb = gib.get("vda", m.disk_gb)
    return {"applied": applied, "next_start": sorted(waiting)}
