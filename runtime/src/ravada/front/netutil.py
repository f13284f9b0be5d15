"""Client addresses behind a reverse proxy: trust X-Forwarded-* only from configured proxies."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> list[Network]:
    """``["127.0.0.1", "10.0.0.0/8"]`` → networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(item, strict=False) for item in items]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\])"
                      r"(?::[0-9]{1,5})?")


def valid_host(value: str) -> bool:
    """A host name, IPv4 address or [IPv6] literal, with an optional port: nothing else."""
    if len(value) > 255 or not _HOST_RE.fullmatch(value):
        return False
    port = value.rpartition("]")[2] if value.startswith("[") else value
    if ":" in port and not 0 < int(port.rpartition(":")[2]) < 65536:
        return False
    if value.startswith("["):
        return _address(value[1:value.index("]")]) is not None
    return True


def forwarded_host(header: str, fallback: str) -> str:
    """The host a trusted proxy says the browser used.

    The proxy appends the Host it received to any X-Forwarded-Host the client sent, so
    only the last value is the proxy's own; the client's are ignored. A malformed last
    value gives ``fallback`` (the configured public host; empty: keep the Host header).
    """
    last = header.split(",")[-1].strip()
    return last if valid_host(last) else fallback


def is_trusted(ip: str, trusted: Iterable[Network]) -> bool:
    addr = _address(ip)
    return addr is not None and any(addr in net for net in trusted)


def client_ip(peer: str, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The client's address for a request that arrived from ``peer``.

    When ``peer`` is a trusted proxy, walk ``X-Forwarded-For`` from the right
    (the hop the proxy itself added) and return the first address that is not a
    trusted proxy. A malformed hop stops the walk at the last good address. An
    untrusted peer's header is ignored: anyone can send one.
    """
    peer_addr = _address(peer)
    current = str(peer_addr) if peer_addr is not None else peer
    if not is_trusted(peer, trusted) or not forwarded_for:
        return current
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        addr = _address(hop)
        if addr is None:
            return current
        current = str(addr)
        if not any(addr in net for net in trusted):
            return current
    return current


class TrustedProxyMiddleware:
    """WSGI middleware: REMOTE_ADDR, scheme and host from a trusted proxy's X-Forwarded-* headers.

    The original peer stays in ``environ["ravada.peer"]``; ``environ["ravada.proxied"]``
    is True when the request came through a trusted proxy that forwarded it.
    """

    def __init__(self, app: Callable[..., Any], trusted: list[str],
                 public_host: str = "") -> None:
        self.app = app
        self.trusted = parse_networks(trusted)
        self.public_host = public_host

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterator[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        environ["ravada.peer"] = peer
        proxied = False
        if is_trusted(peer, self.trusted):
            xff = environ.get("HTTP_X_FORWARDED_FOR")
            if xff:
                proxied = True
                environ["REMOTE_ADDR"] = client_ip(peer, xff, self.trusted)
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            header = environ.get("HTTP_X_FORWARDED_HOST", "")
            host = forwarded_host(header, self.public_host) if header.strip() else ""
            if host:
                environ["HTTP_HOST"] = host
        environ["ravada.proxied"] = proxied
        return self.app(environ, start_response)
