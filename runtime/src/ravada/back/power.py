"""Power and display handlers: start, shut down, hibernate, resume, reboot, screenshots."""

from __future__ import annotations

from collections.abc import Callable

from ravada.back import files, limits
from ravada.back.args import bool_arg, client_ip_arg, int_arg
from ravada.back.context import Context, Job
from ravada.back.errors import RequestError
from ravada.back.steps import (
    Result,
    guest_of,
    load,
    need_running,
    open_display_for,
    record,
    start_machine,
)
from ravada.virt import Guest


def start(ctx: Context, job: Job) -> Result:
    client_ip = client_ip_arg(job.args, required=False)
    machine = load(ctx, job)
    if machine.owner_id is None or machine.state in limits.RUNNING:
        return start_machine(ctx, machine, client_ip, job.user_id)
    with limits.user_lock(machine.owner_id):
        limits.check(ctx, machine.owner_id, exclude=machine.id)
        return start_machine(ctx, machine, client_ip, job.user_id)


def open_display(ctx: Context, job: Job) -> Result:
    client_ip = client_ip_arg(job.args, required=True)
    assert client_ip is not None
    console = bool_arg(job.args, "console")
    return open_display_for(ctx, load(ctx, job).id, client_ip, job.user_id, console)


# What a shutdown keeps of its deadline for the power-off and the bookkeeping after the
# ACPI wait (at least FORCE_MARGIN s, else this share of the time left): the request ends,
# forced, before its timeout instead of outliving it.
FORCE_MARGIN = 2.0
FORCE_SHARE = 0.4


def shutdown(ctx: Context, job: Job) -> Result:
    """ACPI shutdown, powered off when the guest ignores it; all within the deadline."""
    maximum = ctx.config.queue.request_timeout
    default = min(ctx.config.queue.shutdown_timeout, maximum)
    timeout = int_arg(job.args, "timeout", 1, maximum, default)
    assert timeout is not None
    machine = load(ctx, job)
    guest = guest_of(ctx, machine)
    forced = False
    if guest.state() in ("running", "paused"):
        left = job.remaining()
        wait = min(float(timeout), max(0.0, left - max(FORCE_MARGIN, left * FORCE_SHARE)))
        if not guest.shutdown(wait):
            guest.force_shutdown()
            forced = True
    return {"state": record(ctx, machine.id, guest), "forced": forced}


def _power(ctx: Context, job: Job, action: Callable[[Guest], None],
           running: str | None = None) -> Result:
    """Run one power action on the request's machine and record its new state.

    ``running`` names the action when the machine must be running for it.
    """
    machine = load(ctx, job)
    guest = guest_of(ctx, machine)
    if running:
        need_running(guest, running)
    action(guest)
    return {"state": record(ctx, machine.id, guest)}


def force_shutdown(ctx: Context, job: Job) -> Result:
    return _power(ctx, job, Guest.force_shutdown)


def reboot(ctx: Context, job: Job) -> Result:
    return _power(ctx, job, Guest.reboot, running="reboot")


def hibernate(ctx: Context, job: Job) -> Result:
    """Managed save, aborted (and the machine left running) when the deadline comes."""
    if load(ctx, job).volatile:
        raise RequestError("a volatile desktop cannot hibernate: shut it down instead "
                           "(its changes are discarded)")
    return _power(ctx, job, lambda g: g.hibernate(timeout=job.remaining()),
                  running="hibernate")


def resume(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    if machine.is_base:
        raise RequestError(f"machine {machine.name!r} is a base: clone it, or remove_base first")
    guest = guest_of(ctx, machine)
    guest.resume()
    return {"state": record(ctx, machine.id, guest)}


def screenshot(ctx: Context, job: Job) -> Result:
    machine = load(ctx, job)
    guest = guest_of(ctx, machine)
    need_running(guest, "take a screenshot of")
    png = guest.screenshot()
    path = files.write_private(ctx.screenshot_dir, f"{machine.id}.png", png)
    return {"path": str(path)}
