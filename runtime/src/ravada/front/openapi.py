"""The OpenAPI 3 document of /api/v1 (a test checks it against the real url_map)."""

from __future__ import annotations

import re
from typing import Any

from ravada import limits
from ravada.front.machines import ADMIN_ACTIONS, USER_ACTIONS

P = "/api/v1"
_obj = {"type": "object"}
_int, _str, _bool = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


# method, path, summary, tag, response schema, options
ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, Any]]] = [
    ("get", "/openapi.json", "This document", "meta", _obj, {"public": True}),
    ("post", "/session", "Log in (sets the session cookie; returns the CSRF token)", "auth",
     _ref("SessionInfo"), {"public": True, "body": _ref("Credentials")}),
    ("get", "/session", "Who am I (and the CSRF token for cookie sessions)", "auth",
     _ref("SessionInfo"), {}),
    ("delete", "/session", "Log out", "auth", None, {"status": "204"}),
    ("post", "/password", "Change my password", "auth", None,
     {"status": "204", "body": {"type": "object", "required": ["password", "new_password"],
                                "properties": {"password": _str, "new_password": _str}}}),
    ("get", "/totp", "My second factor: on, required, recovery codes left", "auth",
     _ref("TotpStatus"), {}),
    ("post", "/totp", "Start two-factor enrolment: secret, otpauth URI, QR code (SVG)", "auth",
     _ref("TotpEnrolment"), {"status": "201"}),
    ("post", "/totp/confirm", "Turn two-factor login on with a first code; returns the ten "
     "recovery codes (shown once)", "auth", _ref("TotpConfirmed"),
     {"body": {"type": "object", "required": ["code"], "properties": {"code": _str}}}),
    ("get", "/tokens", "My API tokens", "auth", _list("Token"), {}),
    ("post", "/tokens", "Create an API token (with a session, a token, or {name, password})",
     "auth", _ref("NewToken"), {"public": True, "status": "201", "body": {
         "type": "object", "properties": {"name": _str, "password": _str, "code": _str,
                                          "label": _str}}}),
    ("delete", "/tokens/{token_id}", "Revoke one of my API tokens", "auth", None,
     {"status": "204"}),
    ("get", "/bases", "Bases I may use, with the state of my own clone", "desktops",
     _list("Base"), {}),
    ("post", "/bases/{base_id}/start", "Start my desktop from a base (clone on first use)",
     "desktops", _ref("StartReply"), {"wait": True, "status": "202"}),
    ("get", "/bases/{base_id}/policy", "A base's classroom policy (admin)", "machines",
     _ref("Policy"), {"admin": True}),
    ("patch", "/bases/{base_id}/policy",
     "Change a base's policy: volatile clones, pool, run timeout, shutdown when disconnected "
     "(admin)", "machines", _ref("Policy"), {"admin": True, "body": _ref("Policy")}),
    ("get", "/machines", "My machines (every machine for admins)", "machines",
     _list("Machine"), {}),
    ("post", "/machines", "Create a machine from an ISO of iso_dir or a blank disk (admin)",
     "machines", _ref("RequestReply"), {"wait": True, "status": "202", "admin": True,
                                        "body": _ref("NewMachine")}),
    ("get", "/machines/{machine_id}", "One machine", "machines", _ref("Machine"), {}),
    ("post", "/machines/{machine_id}/display",
     "Open the display for my address (fresh password, firewall) and return its info",
     "desktops", _ref("Display"), {"wait": True}),
    ("post", "/machines/{machine_id}/display.vv", "remote-viewer file (SPICE, or SPICE-TLS)",
     "desktops", None, {"wait": True, "mime": "application/x-virt-viewer"}),
    ("post", "/machines/{machine_id}/console", "Browser-console ticket (noVNC token and URL)",
     "desktops", _ref("ConsoleTicket"), {"wait": True}),
    ("post", "/machines/{machine_id}/screenshot", "Take a screenshot", "desktops",
     _ref("RequestReply"), {"wait": True, "status": "202"}),
    ("get", "/machines/{machine_id}/screenshot.png", "The newest screenshot", "desktops", None,
     {"mime": "image/png"}),
    ("post", "/machines/{machine_id}/public", "Publish or hide a base (admin)", "machines",
     _ref("Machine"), {"admin": True, "body": {"type": "object",
                                               "properties": {"public": _bool}}}),
    *[("post", f"/machines/{{machine_id}}/{a}", f"Submit {a} for a machine"
       + (" (admin)" if a in ADMIN_ACTIONS else ""), "machines", _ref("RequestReply"),
       {"wait": True, "status": "202", "admin": a in ADMIN_ACTIONS,
        **({"body": {"type": "object", "properties": {"timeout": _int}}}
           if a == "shutdown" else {})})
      for a in USER_ACTIONS + ADMIN_ACTIONS],
    ("get", "/machines/{machine_id}/hardware", "A machine's hardware: memory, vCPUs, disks, "
     "ISO, display types, sound, USB redirection, what waits for the next start, and why a "
     "change would be refused (admin)", "hardware", _ref("Hardware"), {"admin": True}),
    ("patch", "/machines/{machine_id}/hardware", "Change a machine's hardware (the hardware "
     "request of the machine page: live where libvirt allows it, else at next start); a 422 "
     "names the field, a base with clones is a 409 with reason base_has_clones (admin)",
     "hardware", _ref("RequestReply"), {"wait": True, "status": "202", "admin": True,
                                        "body": _ref("HardwareChange")}),
    ("get", "/isos", "ISO images available for new machines (admin)", "machines",
     {"type": "array", "items": _str}, {"admin": True}),
    ("get", "/requests", "Requests I submitted (all for admins)", "requests", _list("Request"),
     {"query": {"status": _str, "command": _str, "limit": _int}}),
    ("get", "/requests/{req_id}", "One request; ?wait=N long-polls until it ends", "requests",
     _ref("Request"), {"wait": True}),
    ("get", "/users", "Users (admin)", "users", _list("User"), {"admin": True}),
    ("post", "/users", "Create a local user (admin)", "users", _ref("User"),
     {"admin": True, "status": "201", "body": {
         "type": "object", "required": ["name", "password"],
         "properties": {"name": _str, "password": _str, "is_admin": _bool}}}),
    ("patch", "/users/{user_id}", "Set admin, disable, reset the password, or link the account "
     "to single sign-on (auth_backend: oidc) (admin)", "users",
     _ref("User"), {"admin": True, "body": {"type": "object", "properties": {
         "is_admin": _bool, "is_disabled": _bool, "password": _str,
         "auth_backend": {"type": "string", "enum": ["oidc"]}}}}),
    ("delete", "/users/{user_id}/totp", "Reset a user's second factor (admin; written to the "
     "requests log as totp_reset)", "users", _ref("User"), {"admin": True}),
    ("get", "/groups", "Groups with their members (admin)", "groups", _list("Group"),
     {"admin": True}),
    ("post", "/groups", "Create a local group (admin)", "groups", _ref("Group"),
     {"admin": True, "status": "201", "body": {
         "type": "object", "required": ["name"],
         "properties": {"name": _str, "description": _str,
                        "max_running": {**_int, "nullable": True}}}}),
    ("patch", "/groups/{group_id}", "Set a group's running-machines limit (admin): its "
     "members may run max_running machines each (the most generous of their groups'; 0: no "
     "limit; null: the group sets none and max_running_per_user applies)", "groups",
     _ref("Group"), {"admin": True, "body": {
         "type": "object", "required": ["max_running"],
         "properties": {"max_running": {**_int, "nullable": True}}}}),
    ("delete", "/groups/{group_id}", "Delete a group (admin)", "groups", None,
     {"admin": True, "status": "204"}),
    ("put", "/groups/{group_id}/members/{user_id}", "Put a user in a local group (admin)",
     "groups", _ref("Group"), {"admin": True}),
    ("delete", "/groups/{group_id}/members/{user_id}", "Take a user out of a local group "
     "(admin)", "groups", _ref("Group"), {"admin": True}),
    ("get", "/bases/{base_id}/access", "A base's access list (admin)", "groups",
     _ref("AccessList"), {"admin": True}),
    ("put", "/bases/{base_id}/access", "Replace a base's access list; [] is everyone (admin)",
     "groups", _ref("AccessList"), {"admin": True, "body": {
         "type": "object", "required": ["groups"],
         "properties": {"groups": {"type": "array", "items": _int}}}}),
    ("get", "/nodes", "Hypervisor nodes: state, load, memory, desktops (admin)", "nodes",
     _list("Node"), {"admin": True}),
    ("get", "/nodes/{node_id}", "One hypervisor node (admin)", "nodes", _ref("Node"),
     {"admin": True}),
    ("patch", "/nodes/{node_id}", "Enable, disable or drain a node: only new placements "
     "change (admin)", "nodes", _ref("Node"), {"admin": True, "body": {
         "type": "object", "properties": {"enabled": _bool, "draining": _bool}}}),
    ("get", "/settings", "Site settings (admin)", "settings", _ref("Settings"), {"admin": True}),
    ("patch", "/settings", "Change site settings (admin)", "settings", _ref("Settings"),
     {"admin": True, "body": _ref("Settings")}),
]

def _null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.0 spelling)."""
    return {**schema, "nullable": True}


def _object(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_time, _time_or_null = {"type": "string", "format": "date-time"}, _null(
    {"type": "string", "format": "date-time"})
_port_or_null = _null({"type": "integer", "minimum": 1, "maximum": 65535})
_MACHINE_KEYS = ["id", "name", "state", "owner_id", "owner", "base_id", "is_base", "is_public",
                 "memory_mb", "vcpus", "disk_gb", "iso", "description", "created_at",
                 "volatile", "is_pool", "connected", "last_connected_at", "run_until",
                 "idle_until", "guest"]
_REQUEST_KEYS = ["id", "command", "status", "error", "result", "machine_id", "user_id",
                 "created_at", "started_at", "finished_at", "duration_s"]

# Every key the API returns is listed as required; the ones that can be null say so.
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "detail"],
              "properties": {"error": _str, "detail": _str}},
    "Credentials": {"type": "object", "required": ["name", "password"],
                    # code: the TOTP or recovery code, for accounts with two-factor login
                    "properties": {"name": _str, "password": _str, "code": _str}},
    "TotpStatus": {"type": "object", "required": ["enabled", "required",
                                                  "recovery_codes_left"],
                   "properties": {"enabled": _bool, "required": _bool,
                                  "recovery_codes_left": _int}},
    "TotpEnrolment": _object(["secret", "otpauth_uri", "qr_svg"], secret=_str,
                             otpauth_uri=_str, qr_svg=_str),
    "TotpConfirmed": _object(["enabled", "recovery_codes"], enabled=_bool,
                             recovery_codes={"type": "array", "items": _str}),
    "SessionInfo": {"type": "object", "required": ["user"], "properties": {
        "user": _object(["id", "name", "is_admin"], id=_int, name=_str, is_admin=_bool),
        "auth": {"type": "string", "enum": ["session", "token"]}, "csrf_token": _str}},
    "Token": _object(["id", "name", "created_at", "last_used_at"], id=_int, name=_str,
                     created_at=_time, last_used_at=_time_or_null),
    "NewToken": {"allOf": [_ref("Token"), _object(["token"], token=_str)]},
    "Machine": _object(
        _MACHINE_KEYS, id=_int, name=_str,
        state={"type": "string", "enum": ["creating", "shutdown", "running", "paused",
                                          "hibernated", "removing", "failed", "unknown"]},
        owner_id=_null(_int), owner=_null(_str), base_id=_null(_int), is_base=_bool,
        is_public=_bool, memory_mb=_int, vcpus=_int, disk_gb=_int, iso=_null(_str),
        description=_str, created_at=_time, volatile=_bool, is_pool=_bool, connected=_bool,
        last_connected_at=_time_or_null, run_until=_time_or_null, idle_until=_time_or_null,
        policy=_ref("Policy"),  # policy: bases only
        # what the QEMU guest agent reports; null when none answers
        guest=_null(_object(["hostname", "addresses"], hostname=_null(_str),
                            addresses={"type": "array", "items": _str}))),
    "Base": _object(["id", "name", "description", "is_public", "clone", "pending_request",
                     "volatile", "notices"],
                    id=_int, name=_str, description=_str, is_public=_bool,
                    clone=_null(_ref("Machine")), pending_request=_null(_int),
                    volatile=_bool, notices={"type": "array", "items": _str},
                    # the rest only when the user has a clone
                    connected=_bool, last_connected_at=_time_or_null,
                    run_until=_time_or_null, idle_until=_time_or_null,
                    run_seconds_left=_null(_int), idle_seconds_left=_null(_int)),
    "Policy": {"type": "object", "properties": {  # also the body of a partial update
        "volatile": _bool, "pool_size": _int, "pool_started": _int, "run_timeout": _int,
        "shutdown_disconnected": _bool, "shutdown_grace": _int}},
    "NewMachine": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"},
        "iso": _str,
        "memory_mb": {"type": "integer", "minimum": limits.MEMORY_MB[0],
                      "maximum": limits.MEMORY_MB[1]},
        "vcpus": {"type": "integer", "minimum": limits.VCPUS[0], "maximum": limits.VCPUS[1]},
        "disk_gb": {"type": "integer", "minimum": limits.DISK_GB[0],
                    "maximum": limits.DISK_GB[1]}}},
    "Hardware": _object(
        ["machine_id", "state", "memory_mb", "vcpus", "iso", "disks", "spice", "vnc", "sound",
         "usb_redirect", "next_start", "changeable", "refusal"],
        machine_id=_int, state=_str, memory_mb=_int, vcpus=_int, iso=_null(_str),
        disks={"type": "array", "items": _object(["dev", "gb"], dev=_str, gb=_int)},
        spice=_bool, vnc=_bool, sound=_bool, usb_redirect=_bool,
        # {memory_mb: {from, to}, ...}: set in the definition, applied at the next start
        next_start={"type": "object"}, changeable=_bool, refusal=_null(_str)),
    "HardwareChange": {"type": "object", "properties": {
        "memory_mb": {"type": "integer", "minimum": limits.MEMORY_MB[0],
                      "maximum": limits.MEMORY_MB[1]},
        "vcpus": {"type": "integer", "minimum": limits.VCPUS[0], "maximum": limits.VCPUS[1]},
        "spice": _bool, "vnc": _bool, "sound": _bool, "usb_redirect": _bool,
        "iso": _null(_str),  # a name from GET /isos; null ejects
        "add_disk_gb": {"type": "integer", "minimum": limits.DISK_GB[0],
                        "maximum": limits.DISK_GB[1]},
        "grow_disk": _object(["dev", "gb"], dev={"type": "string", "pattern": "^vd[a-z]$"},
                             gb={"type": "integer", "minimum": limits.DISK_GB[0],
                                 "maximum": limits.DISK_GB[1]})}},
    "Request": _object(
        _REQUEST_KEYS, id=_int, command=_str,
        status={"type": "string", "enum": ["requested", "working", "done", "failed"]},
        error=_null(_str), result=_null({"type": "object"}), machine_id=_null(_int),
        user_id=_null(_int), created_at=_time, started_at=_time_or_null,
        finished_at=_time_or_null, duration_s=_null({"type": "number"})),
    "RequestReply": _object(["request_id", "status", "request"], request_id=_int,
                            status={"type": "string",
                                    "enum": ["requested", "working", "done", "failed"]},
                            request=_ref("Request")),
    "StartReply": {"allOf": [_ref("RequestReply"), _object(
        ["machine_id", "display"], machine_id=_null(_int), display=_null(_ref("Display")))]},
    "Display": _object(
        ["host", "password", "expires", "spice", "vnc"], host=_str, password=_str,
        expires=_str, machine=_str,
        # port is null with SPICE-TLS (secure mode: no plain port), tls_port without TLS
        # host_subject: the SPICE-TLS certificate subject of the machine's node
        spice=_object(["port", "tls_port"], port=_port_or_null, tls_port=_port_or_null,
                      host_subject=_str),
        vnc=_object(["port"], port=_int, password=_str)),
    "ConsoleTicket": _object(
        ["token", "ws_url", "password", "expires", "machine"], token=_str, ws_url=_str,
        password=_str, expires=_null(_str), token_lifetime=_int,
        machine=_object(["id", "name"], id=_int, name=_str)),
    "User": _object(["id", "name", "is_admin", "is_disabled", "auth_backend", "created_at",
                     "last_login_at", "directory_groups", "groups_read_at", "totp_enabled"],
                    id=_int, name=_str, is_admin=_bool, is_disabled=_bool,
                    auth_backend=_str, created_at=_time, last_login_at=_time_or_null,
                    directory_groups=_null({"type": "array", "items": _str}),
                    groups_read_at=_time_or_null, totp_enabled=_bool),
    "Group": _object(["id", "name", "source", "description", "max_running", "members"],
                     id=_int, name=_str,
                     source={"type": "string", "enum": ["local", "ldap"]}, description=_str,
                     max_running=_null(_int), members={"type": "array", "items": _str}),
    "Node": _object(
        ["id", "name", "state", "enabled", "draining", "display_address", "cluster_address",
         "running", "desktops", "bases", "vcpus", "mem_total_mb", "mem_free_mb",
         "max_desktops", "memory_mb", "heartbeat_timeout", "version", "heartbeat_at"],
        id=_int, name=_str,
        state={"type": "string", "enum": ["up", "down", "disabled", "draining"]},
        enabled=_bool, draining=_bool, display_address=_str, cluster_address=_str,
        running=_int, desktops=_int, bases=_int, vcpus=_int, mem_total_mb=_int,
        mem_free_mb=_int, max_desktops=_int, memory_mb=_int, heartbeat_timeout=_int,
        version=_str, heartbeat_at=_time_or_null),
    "AccessList": _object(["groups"], groups={"type": "array", "items": _object(
        ["id", "name", "source"], id=_int, name=_str, source=_str)}),
    "Settings": {"type": "object", "properties": {
        "site_title": _str, "motd": _str, "login_max_failures": _int,
        "login_window_seconds": _int, "login_account_free": _int, "console_ws_url": _str,
        "max_running_per_user": _int}},
}

_ERRORS = {
    "400": "Bad input", "401": "Not authenticated", "403": "Not allowed",
    "404": "Not found (or not yours)", "409": "Conflict with the machine's state",
    "413": "Request body too large", "422": "Invalid value",
    "429": "Too many failed logins or password checks, or too many waits at once",
    "503": "The backend is not answering, or the user directory did not answer",
}


def _operation(method: str, path: str, summary: str, tag: str, schema: dict[str, Any] | None,
               opts: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer",
                                                                   "minimum": 1}}
        for name in re.findall(r"{(\w+)}", path)]
    if opts.get("wait"):
        params.append({"name": "wait", "in": "query", "required": False,
                       "description": "Seconds to wait for the backend (0-30)",
                       "schema": {"type": "number", "minimum": 0, "maximum": 30}})
    for name, s in opts.get("query", {}).items():
        params.append({"name": name, "in": "query", "required": False, "schema": s})
    status = opts.get("status", "200")
    if status == "204":
        ok: dict[str, Any] = {"description": "Done"}
    elif schema is None:
        ok = {"description": "The file",
              "content": {opts.get("mime", "application/octet-stream"): {}}}
    else:
        ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    responses: dict[str, Any] = {status: ok}
    if status == "202":
        responses["200"] = {"description": "Finished (with ?wait)",
                            "content": {"application/json": {"schema": schema}}}
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": {
            "application/json": {"schema": _ref("Error")}}}
    op: dict[str, Any] = {
        "summary": summary + (" — administrators only" if opts.get("admin") else ""),
        "tags": [tag],
        "operationId": method + re.sub(r"\W+", "_", path).rstrip("_"),
        "parameters": params, "responses": responses}
    if opts.get("public"):
        op["security"] = [{}, {"bearer": []}, {"session": []}]
    if "body" in opts:
        op["requestBody"] = {"required": False,
                             "content": {"application/json": {"schema": opts["body"]}}}
    return op


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, tag, schema, opts in ROUTES:
        paths.setdefault(P + path, {})[method] = _operation(method, path, summary, tag, schema,
                                                            opts)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Ravada VDI API", "version": "1",
                 "description": "Bearer token (POST /api/v1/tokens) or session cookie with "
                                "an X-CSRFToken header on state-changing requests. Errors "
                                "are {error, detail}."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ravada_session"}}},
    }
