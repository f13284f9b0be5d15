"""Client addresses behind a reverse proxy: trust X-Forwarded-* only from configured proxies."""

from __future__ import annotations

import ipaddress
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

    def __init__(self, app: Callable[..., Any], trusted: list[str]) -> None:
        self.app = app
        self.trusted = parse_networks(trusted)

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
            host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
            if host:
                environ["HTTP_HOST"] = host
        environ["ravada.proxied"] = proxied
        return self.app(environ, start_response)
