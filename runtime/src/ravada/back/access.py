"""Who may reach a machine's display: the ports a viewer gets and the viewers a machine keeps.

A machine keeps up to ``firewall.max_viewers`` viewer addresses (the owner's two devices,
an admin helping): opening the display adds the viewer's address, or makes it the newest
again, and pushes the oldest out past the cap. IPv4 and IPv6 addresses count alike, so a
viewer arriving over IPv6 keeps a working IPv4 opening. Openings end when

- the machine stops (shutdown, hibernate, crash: lifecycle events and refresh) or is removed;
- the user who opened them is disabled or removed (:func:`close_user`);
- newer viewers push them out (the cap, oldest first);
- rvd_back starts and finds them for a machine that is no longer running (reconcile).

The end of an opening only refuses NEW connections: the firewall role accepts established
ones ahead of its DROP, so a live session is never frozen.

Ports: with SPICE-TLS on only the TLS port is opened (the domain's SPICE is
``defaultMode='secure'``, its plain port refuses channels anyway); VNC is reached through
rvd_console's proxy on loopback and is opened to viewers only with ``display.direct_vnc``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ravada.back.context import Context
from ravada.back.nodes import mine
from ravada.db import FirewallRule, Machine, utcnow
from ravada.firewall import normalize_ip


def viewer_ports(ctx: Context, display: dict[str, Any]) -> list[int]:
    """The display ports opened to a viewer of a machine with this ``display``."""
    cfg = ctx.config.display
    # With TLS on, the plain port is never opened (the domain is defaultMode='secure').
    ports = [display.get("spice_tls") if cfg.spice_tls else display.get("spice")]
    if cfg.direct_vnc:
        ports.append(display.get("vnc"))
    return [p for p in ports if p]


def _viewers(ctx: Context, machine_id: int) -> list[tuple[str, int | None, datetime]]:
    """(client_ip, user_id, opened_at) of a machine's viewers, oldest first."""
    latest: dict[str, tuple[int | None, datetime]] = {}
    with ctx.db.sessionmaker() as s:  # a read: no transaction to commit
        rows = s.execute(select(FirewallRule.client_ip, FirewallRule.user_id,
                                FirewallRule.created_at)
                         .where(FirewallRule.machine_id == machine_id)
                         .order_by(FirewallRule.created_at, FirewallRule.id)).all()
    for ip, user_id, at in rows:
        latest[ip] = (user_id, at)
    return sorted(((ip, uid, at) for ip, (uid, at) in latest.items()), key=lambda v: v[2])


def _apply(ctx: Context, machine: Machine, ports: list[int],
           viewers: list[tuple[str, int | None, datetime]]) -> None:
    """The firewall side: one batch for the viewers kept (or none: closed)."""
    if viewers:
        ctx.firewall.allow(machine.name, ports, [ip for ip, _, _ in viewers])
    else:
        ctx.firewall.close(machine.name)


def write_rows(s: Session, machine_id: int, ports: list[int],
               viewers: list[tuple[str, int | None, datetime]], fresh: bool = False) -> None:
    """The database side, in the caller's transaction (``fresh``: no rows to replace)."""
    if not fresh:
        s.execute(delete(FirewallRule).where(FirewallRule.machine_id == machine_id))
    s.add_all(FirewallRule(machine_id=machine_id, client_ip=ip, port=p, user_id=uid,
                           created_at=at)
              for ip, uid, at in viewers for p in ports)


def _write(ctx: Context, machine: Machine, ports: list[int],
           viewers: list[tuple[str, int | None, datetime]]) -> None:
    """The firewall first (one batch), then the rows; no DB transaction spans iptables."""
    _apply(ctx, machine, ports, viewers)
    with ctx.db.session() as s:
        write_rows(s, machine.id, ports, viewers)


def allow(ctx: Context, machine: Machine, ports: list[int], client_ip: str,
          user_id: int | None, fresh: bool = False) -> list[tuple[str, int | None, datetime]]:
    """Add ``client_ip`` as the machine's newest viewer in iptables; returns the viewers
    kept, whose rows the caller writes (:func:`write_rows`) in a transaction of its own
    choosing. ``fresh``: a machine made by this request has no viewers yet (none read)."""
    ip = normalize_ip(client_ip)
    viewers = [] if fresh else [v for v in _viewers(ctx, machine.id) if v[0] != ip]
    viewers.append((ip, user_id, utcnow()))
    viewers = viewers[-ctx.config.firewall.max_viewers:]
    _apply(ctx, machine, ports, viewers)
    return viewers


def open_for(ctx: Context, machine: Machine, ports: list[int], client_ip: str,
             user_id: int | None) -> list[str]:
    """Add ``client_ip`` as the machine's newest viewer; returns the viewers kept."""
    viewers = allow(ctx, machine, ports, client_ip, user_id)
    with ctx.db.session() as s:
        write_rows(s, machine.id, ports, viewers)
    return [v[0] for v in viewers]


def close_user(ctx: Context, user_id: int) -> int:
    """Close every opening made by ``user_id`` (disabled or removed); returns how many machines."""
    with ctx.db.session() as s:
        machines = s.scalars(select(Machine).join(
            FirewallRule, FirewallRule.machine_id == Machine.id)
            .where(FirewallRule.user_id == user_id, mine(ctx)).distinct()).all()
        ports = {m.id: sorted(set(s.scalars(select(FirewallRule.port).where(
            FirewallRule.machine_id == m.id)))) for m in machines}
    for machine in machines:
        viewers = [v for v in _viewers(ctx, machine.id) if v[1] != user_id]
        _write(ctx, machine, ports[machine.id] or [], viewers)
    return len(machines)
