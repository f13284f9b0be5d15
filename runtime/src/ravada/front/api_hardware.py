"""/api/v1 machine hardware: what the admin machine page's hardware forms do, as JSON.

The same service code as the page (:mod:`ravada.front.machine_settings`): the change is
checked by :func:`ravada.hardware.check_change` (a 422 whose ``field`` names the setting),
refused for a base with clones (409, ``reason: base_has_clones``) and queued as the one
``hardware`` request rvd_back applies (live where libvirt allows it, else at next start).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from ravada.front import machine_settings, web
from ravada.front.api import body, bp, request_reply, require_admin, wait_arg
from ravada.front.state import front


@bp.get("/machines/<id:machine_id>/hardware")
def machine_hardware_get(machine_id: int) -> Any:
    require_admin()
    return jsonify(machine_settings.hardware_json(front(), web.current(), machine_id))


@bp.patch("/machines/<id:machine_id>/hardware")
def machine_hardware_update(machine_id: int) -> Any:
    """Any of memory_mb, vcpus, spice, vnc, sound, usb_redirect, iso (null ejects),
    add_disk_gb, grow_disk {dev, gb}; with ?wait=N, waits for rvd_back's answer."""
    require_admin()
    rid = machine_settings.submit_hardware(front(), web.current(), machine_id, body())
    return request_reply(rid, wait_arg())
