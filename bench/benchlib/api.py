"""A small stdlib client for rvd_front's JSON API (``/api/v1``), through Apache or direct.

Every route the benchmarks use is named once in :data:`ROUTES`, so a change in the API is a
one-line change here. Auth is a bearer token; :meth:`Api.login` gets one from a user name
and password (``POST /api/v1/tokens`` with ``{name, password}``).
"""

from __future__ import annotations

import http.cookiejar
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

ROUTES = {
    "tokens": ("POST", "/api/v1/tokens"),
    "users": ("GET", "/api/v1/users"),
    "create_user": ("POST", "/api/v1/users"),
    "bases": ("GET", "/api/v1/bases"),
    "start_base": ("POST", "/api/v1/bases/{id}/start"),
    "machines": ("GET", "/api/v1/machines"),
    "machine": ("GET", "/api/v1/machines/{id}"),
    "action": ("POST", "/api/v1/machines/{id}/{action}"),
    "request": ("GET", "/api/v1/requests/{id}"),
    "create_machine": ("POST", "/api/v1/machines"),
    "policy": ("PATCH", "/api/v1/bases/{id}/policy"),
    "version": ("GET", "/healthz"),
}
FINAL = ("done", "failed")


class ApiError(RuntimeError):
    """A non-2xx answer: ``status`` and the server's ``{error, detail}``."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status, self.body = status, body
        detail = body.get("detail") or body.get("error") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {str(detail)[:300]}")


class Api:
    """One API client: base URL, optional bearer token, TLS not verified (self-signed)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 120,
                 verify_tls: bool = False) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        ctx = ssl.create_default_context()
        if not verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx),
            urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, route: str, body: Any = None, query: dict[str, Any] | None = None,
             **params: Any) -> Any:
        """Call ``ROUTES[route]`` with path ``params``; return the decoded JSON answer."""
        method, path = ROUTES[route]
        path = path.format(**params)
        if query:
            path += "?" + urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err: Any = json.loads(raw)
            except ValueError:
                err = raw.decode(errors="replace")
            raise ApiError(method, path, e.code, err) from None
        return json.loads(raw) if raw else None

    def login(self, username: str, password: str) -> str:
        """A bearer token for ``username`` (kept for the next calls); returns it."""
        tok = self.call("tokens", {"name": username, "password": password, "label": "bench"})
        self.token = tok["token"]
        return self.token

    # ------------------------------------------------------------ requests

    def wait_request(self, request_id: int, timeout: float = 300) -> dict[str, Any]:
        """Long-poll the request until it ends; raise when it failed or timed out."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            req = self.call("request", id=request_id, query={"wait": max(1, min(30, int(left)))})
            req = req.get("request", req)
            if req["status"] in FINAL:
                if req["status"] == "failed":
                    raise RuntimeError(f"request {request_id} ({req.get('command')}) failed: "
                                       f"{req.get('error')}")
                return req
            if left <= 0:
                raise TimeoutError(f"request {request_id} still {req['status']} after {timeout} s")

    def click(self, base_id: int, wait: int = 60) -> tuple[dict[str, Any], int | None, int]:
        """The user's "Start" on a base until display info: (display, machine_id, request_id)."""
        ans = self.call("start_base", id=base_id, query={"wait": wait}, body={})
        display = display_of(ans)
        mid = ans.get("machine_id")
        if display is None:
            req = self.wait_request(ans["request_id"], timeout=wait * 5)
            display = display_of(req)
            mid = mid or (req.get("result") or {}).get("machine_id") or req.get("machine_id")
        if display is None:
            raise RuntimeError(f"start of base {base_id} ended without display info: {ans}")
        return display, mid, ans["request_id"]

    def remove(self, machine_id: int, timeout: float = 120) -> None:
        """Remove a machine (and wait until it is gone)."""
        ans = self.call("action", id=machine_id, action="remove", body={})
        self.wait_request(ans["request_id"], timeout)


def display_of(ans: Any) -> dict[str, Any] | None:
    """The display info anywhere in an answer: itself, ``display``, ``result``, ``request``."""
    if not isinstance(ans, dict):
        return None
    if "password" in ans and "host" in ans:
        return ans
    for key in ("display", "result", "request"):
        found = display_of(ans.get(key))
        if found:
            return found
    return None


def display_port(display: dict[str, Any], kind: str = "vnc") -> int:
    """The port of ``kind`` (vnc or spice) in display info."""
    section = display.get(kind) or {}
    port = section.get("port") if isinstance(section, dict) else section
    if not port:
        raise LookupError(f"no {kind} port in the display info: {display}")
    return int(port)
