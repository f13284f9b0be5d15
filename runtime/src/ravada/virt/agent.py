"""What the QEMU guest agent inside a running domain reports, through libvirt's agent APIs.

``read_info(dom)`` -> ``{"hostname": str | None, "addresses": ["10.0.0.5/24", ...]}`` or
``None`` when no agent answers (none installed, not started yet, no agent channel, the
domain is not running). Loopback and link-local addresses are left out: they tell a user
nothing. Only libvirt's typed agent calls are used (``guestInfo``, ``interfaceAddresses``),
never raw ``qemu-agent-command``: rvd_back asks, the guest cannot make it run anything.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import libvirt

__all__ = ["NO_AGENT", "read_info"]

log = logging.getLogger(__name__)

# libvirt's answers when there is no agent to ask (or it does not answer in time).
NO_AGENT = frozenset(
    code for code in (
        getattr(libvirt, "VIR_ERR_AGENT_UNRESPONSIVE", None),
        getattr(libvirt, "VIR_ERR_AGENT_UNSYNCED", None),
        libvirt.VIR_ERR_OPERATION_INVALID,       # not running
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,    # no agent channel in the domain
        libvirt.VIR_ERR_NO_SUPPORT,              # a driver without agent calls
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
        libvirt.VIR_ERR_OPERATION_TIMEOUT,
        libvirt.VIR_ERR_INTERNAL_ERROR,          # the agent's own error replies
    ) if code is not None
)


def _shown(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def _addresses(ifaces: dict[str, Any]) -> list[str]:
    out = []
    for _name, iface in sorted((ifaces or {}).items()):
        for a in iface.get("addrs") or []:
            addr = str(a.get("addr") or "")
            if _shown(addr):
                out.append(f"{addr}/{a.get('prefix')}" if a.get("prefix") is not None else addr)
    return out


def read_info(dom: libvirt.virDomain) -> dict[str, Any] | None:
    """Hostname and addresses from the guest agent; ``None`` when no agent answers.

    Other libvirt errors (the connection broke, the domain vanished) are raised.
    """
    try:
        try:
            info = dom.guestInfo(libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME, 0)
            hostname = (info or {}).get("hostname") or None
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            hostname = None  # a driver that has the addresses call only (test:///)
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    except libvirt.libvirtError as err:
        if err.get_error_code() in NO_AGENT:
            log.debug("no guest agent answer from %s: %s", dom.name(), err)
            return None
        raise
    return {"hostname": hostname, "addresses": _addresses(ifaces)}
