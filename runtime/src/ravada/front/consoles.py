"""Browser-console tickets: display info + a signed token + the websocket URL for noVNC."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from ravada import console
from ravada.config import parse_listen
from ravada.db import Node
from ravada.front import displays
from ravada.front.state import FrontState, Viewer

ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def _host_only(host: str) -> str:
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def ws_url(fs: FrontState, configured: str, token: str) -> str:
    """Where noVNC connects: the ``console_ws_url`` setting, else derived from the request.

    Through a trusted proxy (Apache) it is ``wss://<host>/console/ws``; without one
    it is rvd_console's own port on the host the browser used.
    """
    if configured:
        base = configured
    elif request.environ.get("ravada.proxied"):
        base = f"{'wss' if request.is_secure else 'ws'}://{request.host}/console/ws"
    else:
        _, port = parse_listen(fs.config.console.listen)
        base = f"ws://{_host_only(request.host)}:{port}/"
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def _cluster_address(fs: FrontState, node_id: int | None) -> str:
    """Where rvd_console reaches the VNC ports of a node ("": on this host)."""
    if node_id is None:
        return ""
    with fs.db.sessionmaker() as s:
        return s.scalar(select(Node.cluster_address).where(Node.id == node_id)) or ""


def ticket(fs: FrontState, viewer: Viewer, machine_id: int, client_ip: str,
           configured_url: str, wait: float = 10.0) -> dict[str, Any]:
    """A fresh display password and a console token for the machine's VNC port.

    No firewall opening: rvd_console reaches VNC on the server itself (loopback).
    """
    info, m = displays.open_display(fs, viewer, machine_id, client_ip, wait, console=True)
    listen = (m.display or {}).get("listen") or ""
    host = "127.0.0.1" if listen in ANY_ADDRESS else listen
    cluster = _cluster_address(fs, m.node_id)
    if cluster:  # the machine runs on another hypervisor: rvd_console goes there
        host = cluster
    port = (info.get("vnc") or {}).get("port") or (m.display or {}).get("vnc")
    token = console.make_token(fs.secret_key, user_id=viewer.id, machine_id=machine_id,
                               host=host, port=int(port),
                               lifetime=fs.config.console.token_lifetime)
    vnc_password = (info.get("vnc") or {}).get("password") or info.get("password")
    return {"machine": {"id": m.id, "name": m.name}, "password": vnc_password,
            "expires": info.get("expires"), "token": token,
            "token_lifetime": min(fs.config.console.token_lifetime, console.MAX_LIFETIME),
            "ws_url": ws_url(fs, configured_url, token)}
