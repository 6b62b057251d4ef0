"""Who is calling: the client address admin logins are counted by.

Without ``TRUST_PROXY`` (the default) it is the connection's peer address. With it, and
when the peer is one of ``TRUSTED_PROXY_IPS``, it comes from ``X-Forwarded-For``, but only
from the entry a trusted proxy appended, never from one the client wrote: each proxy
appends the address it received the request from, so behind ``TRUSTED_PROXY_HOPS`` (n,
default 1) trusted proxies the client is the n-th entry from the right and everything to
its left is whatever the client sent. Common reverse-proxy middleware does the same
(Werkzeug's ``ProxyFix(x_for=n)``, Express' ``trust proxy`` set to n). A header with fewer
entries than hops, or an entry that is not an IP address, falls back to the peer: a
misconfigured proxy then counts all its clients as one, which is safe and shows.

The Node service takes the *leftmost* entry, which lets a client pick its own address:
unlimited guesses, and locking anyone out.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from cfgstore.model.config import MainConfig

DEFAULT_TRUSTED_PROXY_HOPS = 1


def client_address(request: web.Request, config: MainConfig) -> str:
    """The client's IP address as text (IPv4-mapped IPv6 addresses as IPv4)."""
    peer = request.remote or "unknown"
    if config.get("TRUST_PROXY") is not True:
        return _normal(peer) or peer
    trusted = config.get("TRUSTED_PROXY_IPS") or []
    if peer not in trusted and _normal(peer) not in trusted:
        return _normal(peer) or peer
    entries = [
        entry.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for entry in header.split(",")
    ]
    hops = trusted_proxy_hops(config)
    appended = entries[-hops] if len(entries) >= hops else ""
    return _normal(appended) or _normal(peer) or peer


def trusted_proxy_hops(config: MainConfig) -> int:
    """``TRUSTED_PROXY_HOPS``: how many trusted proxies stand in front of the gateway."""
    hops = config.get("TRUSTED_PROXY_HOPS")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        return DEFAULT_TRUSTED_PROXY_HOPS
    return hops


def _normal(text: str) -> str | None:
    """``text`` as a canonical IP address, or ``None`` when it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
