"""A client of rvd_front's JSON API (``/api/v1``) as an automation user sees it.

Over HTTPS through Apache (the self-signed certificate is accepted: the test
runs against a fresh container). Authentication, both kinds the API offers:
``login`` opens a session (``POST /session``: cookie) and keeps the CSRF token
it hands out, sent back as ``X-CSRFToken`` on every state-changing call;
``login_token`` trades name and password for a bearer token
(``POST /tokens``), which needs no CSRF token. Nothing here touches the database: every action is
a request the product itself accepts or refuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PREFIX = "/api/v1"
FINAL = ("done", "failed")


class ApiError(AssertionError):
    """The API answered with an error status (its JSON ``error``/``detail`` included)."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text[:500]
        super().__init__(f"{response.request.method} {response.url} -> {self.status}: "
                         f"{self.body}")


@dataclass
class Api:
    """One logged-in (or anonymous) API user on ``https://<host>``."""

    host: str
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)
    csrf: str | None = None

    def __post_init__(self) -> None:
        self.session.verify = False
        self.base = f"https://{self.host}"

    # ------------------------------------------------------------ transport
    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202),
             **kw: Any) -> requests.Response:
        """Send one request; raise :class:`ApiError` unless the status is in *ok*."""
        headers = kw.pop("headers", {})
        if method not in ("GET", "HEAD") and self.csrf:
            headers["X-CSRFToken"] = self.csrf
        url = path if path.startswith("http") else self.base + path
        # verify=False per call: REQUESTS_CA_BUNDLE in the environment would override the
        # session's setting, and the server's certificate is the role's self-signed default.
        resp = self.session.request(method, url, headers=headers, verify=False,
                                    timeout=kw.pop("timeout", self.timeout), **kw)
        if resp.status_code not in ok:
            raise ApiError(resp)
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", PREFIX + path, **kw).json()

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        resp = self.call("POST", PREFIX + path, json=body or {}, **kw)
        return resp.json() if resp.content else {}

    # ------------------------------------------------------------ auth
    def login(self, username: str, password: str, code: str | None = None) -> Api:
        """Open a session; remember the CSRF token for later state-changing calls.

        *code*: the second factor's code, for accounts with two-factor login."""
        body = {"name": username, "password": password}
        data = self.post("/session", {**body, "code": code} if code else body)
        self.csrf = data["csrf_token"]
        return self

    def login_token(self, username: str, password: str, code: str | None = None) -> Api:
        """Get a bearer token for *username* and use it (no cookie, no CSRF token)."""
        body = {"name": username, "password": password, "label": "e2e"}
        data = self.post("/tokens", {**body, "code": code} if code else body)
        self.session.headers["Authorization"] = f"Bearer {data['token']}"
        return self

    def openapi(self) -> dict[str, Any]:
        return self.get("/openapi.json")

    # ------------------------------------------------------------ requests
    def wait_request(self, request_id: int, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for a request to finish (the server long-polls: ``?wait=``); return its JSON."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            wait = round(max(0.0, min(left, 25.0)), 1)
            req = self.get(f"/requests/{request_id}", params={"wait": wait},
                           timeout=self.timeout + 30)
            if req["status"] in FINAL or left <= 0:
                return req

    def done(self, request_id: int, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for a request and assert it succeeded; return its JSON."""
        req = self.wait_request(request_id, timeout)
        assert req["status"] == "done", f"request {request_id} ({req['command']}): {req}"
        return req

    # ------------------------------------------------------------ admin
    def isos(self) -> list[str]:
        return self.get("/isos")

    def create_machine(self, **args: Any) -> int:
        return self.post("/machines", args)["request_id"]

    def action(self, machine_id: int, action: str, **args: Any) -> int:
        return self.post(f"/machines/{machine_id}/{action}", args)["request_id"]

    def set_public(self, machine_id: int, public: bool = True) -> dict[str, Any]:
        return self.post(f"/machines/{machine_id}/public", {"public": public})

    def create_user(self, name: str, password: str, is_admin: bool = False) -> dict[str, Any]:
        return self.post("/users", {"name": name, "password": password, "is_admin": is_admin})

    # ------------------------------------------------------------ user
    def machines(self) -> list[dict[str, Any]]:
        return self.get("/machines")

    def machine(self, machine_id: int) -> dict[str, Any]:
        return self.get(f"/machines/{machine_id}")

    def bases(self) -> list[dict[str, Any]]:
        return self.get("/bases")

    def start_base(self, base_id: int) -> dict[str, Any]:
        """The user's click on "Start": ``{request_id, status, machine_id, display, request}``.

        Answers at once (202 while the request is pending); 409 when it failed.
        """
        return self.post(f"/bases/{base_id}/start")

    def open_display(self, machine_id: int) -> dict[str, Any]:
        """A fresh one-time password and a firewall opening for this client's IP."""
        return self.post(f"/machines/{machine_id}/display")

    def console_ticket(self, machine_id: int) -> dict[str, Any]:
        """The browser console's signed websocket ticket."""
        return self.post(f"/machines/{machine_id}/console")

    def vv_file(self, machine_id: int) -> str:
        """The ``.vv`` file the display page offers for download."""
        resp = self.call("POST", f"{PREFIX}/machines/{machine_id}/display.vv")
        return resp.text
