"""What P1 and P5 share against a deployed host: options, admin login, base, users, timing.

The scripts run on the host itself (the raw-libvirt baseline needs its libvirtd), against the
API through Apache (``--url``, default ``https://127.0.0.1``). Admin credentials come from
``--admin-user``/``--admin-password`` or ``RAVADA_ADMIN_USER``/``RAVADA_ADMIN_PASSWORD``
(or a token in ``RAVADA_ADMIN_TOKEN``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchlib import api as bapi
from benchlib import env as benv
from benchlib.raw import wait_tcp

BASE_NAME = "bench-base"


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("RAVADA_URL", "https://127.0.0.1"),
                   help="the front through Apache (env RAVADA_URL)")
    p.add_argument("--admin-user", default=os.environ.get("RAVADA_ADMIN_USER", "admin"))
    p.add_argument("--admin-password", default=os.environ.get("RAVADA_ADMIN_PASSWORD"),
                   help="env RAVADA_ADMIN_PASSWORD")
    p.add_argument("--admin-token", default=os.environ.get("RAVADA_ADMIN_TOKEN"))
    p.add_argument("--base", help="name or id of a base to clone (default: make bench-base)")
    p.add_argument("--base-memory-mb", type=int, default=256)
    p.add_argument("--display-kind", default="vnc", choices=("vnc", "spice"))
    p.add_argument("--display-host", help="connect to displays here (default: from the info, "
                   "or the URL's host when the info says 0.0.0.0)")
    p.add_argument("--libvirt-uri", default="qemu:///system")
    p.add_argument("--wait", type=int, default=30, help="?wait= of the start call (<= 30 s)")


@dataclass
class Session:
    args: argparse.Namespace
    admin: bapi.Api
    base_id: int

    def user(self, prefix: str) -> bapi.Api:
        """A new user made through the admin API, logged in with a token of their own."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(16)
        self.admin.call("create_user", {"name": name, "password": password, "is_admin": False})
        client = bapi.Api(self.args.url)
        client.login(name, password)
        return client

    def display_host(self, display: dict[str, Any]) -> str:
        if self.args.display_host:
            return self.args.display_host
        host = display.get("host") or ""
        if host in ("", "0.0.0.0", "::"):
            return urlsplit(self.args.url).hostname or "127.0.0.1"
        return host

    def click(self, client: bapi.Api) -> dict[str, Any]:
        """One timed click: start call until display info, then until the port accepts."""
        t0 = time.perf_counter()
        display, mid, rid = client.click(self.base_id, wait=self.args.wait)
        t_api = time.perf_counter()
        port = bapi.display_port(display, self.args.display_kind)
        wait_tcp(self.display_host(display), port)
        t_end = time.perf_counter()
        return {"total_s": t_end - t0, "api_s": t_api - t0, "port_wait_s": t_end - t_api,
                "machine_id": mid, "machine": display.get("machine"), "request_id": rid}


def connect(args: argparse.Namespace) -> Session:
    """Log the admin in and find (or make) the base."""
    admin = bapi.Api(args.url, token=args.admin_token)
    if not args.admin_token:
        if not args.admin_password:
            raise SystemExit("give the admin password: --admin-password or RAVADA_ADMIN_PASSWORD")
        admin.login(args.admin_user, args.admin_password)
    return Session(args, admin, find_base(admin, args))


def find_base(admin: bapi.Api, args: argparse.Namespace) -> int:
    """The id of ``--base`` (name or id), or of ``bench-base``, made when missing."""
    wanted = args.base or BASE_NAME
    for m in _list(admin.call("machines")):
        if str(m["id"]) == wanted or m["name"] == wanted:
            if not m.get("is_base"):
                raise SystemExit(f"{m['name']} is not a base: prepare it first")
            return int(m["id"])
    if args.base:
        raise SystemExit(f"no base named {args.base!r} on {args.url}")
    ans = admin.call("create_machine", {"name": BASE_NAME, "memory_mb": args.base_memory_mb,
                                        "vcpus": 1, "disk_gb": 1})
    req = admin.wait_request(ans["request_id"], timeout=300)
    mid = (req.get("result") or {}).get("machine_id") or req.get("machine_id")
    ans = admin.call("action", id=mid, action="prepare_base", body={})
    admin.wait_request(ans["request_id"], timeout=300)
    admin.call("action", id=mid, action="public", body={"public": True})
    return int(mid)


def _list(ans: Any) -> list[dict[str, Any]]:
    if isinstance(ans, dict):
        for key in ("machines", "items", "data"):
            if isinstance(ans.get(key), list):
                return ans[key]
    return ans if isinstance(ans, list) else []


def environment(args: argparse.Namespace, admin: bapi.Api | None = None) -> dict[str, Any]:
    """Machine and versions of this host; the server's own version when it tells it."""
    extra = {}
    if admin is not None:
        try:
            health = admin.call("version")
            if isinstance(health, dict) and health.get("version"):
                extra["ravada_server"] = str(health["version"])
        except (bapi.ApiError, OSError):
            pass
    return {"machine": benv.machine(), "versions": benv.versions(args.libvirt_uri, **extra)}
