"""Who the client is: the TCP peer, or, behind a trusted reverse proxy, the address that
proxy saw (X-Forwarded-For). The header is believed only from the proxies named in
`Settings.trusted_proxies` (default none): anyone else could write any address in it."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

from portal.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # "::ffff:10.0.0.1" is 10.0.0.1
    return address


def _trusted(address: IPAddress, proxies: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str, forwarded_for: list[str], proxies: tuple[IPNetwork, ...]) -> str:
    """The client's address, given the TCP peer and the X-Forwarded-For header values.

    Only when the peer is a trusted proxy is the header read, from the right (each proxy
    appends the address it saw): the right-most address that is not itself a trusted proxy
    is the client. Entries to its left were written by the client and are ignored.
    """
    current = _address(peer)
    if current is None:
        return peer or "unknown"
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while _trusted(current, proxies) and hops:
        previous = _address(hops.pop())
        if previous is None:
            break  # not an address: keep the last proxy we could believe
        current = previous
    return str(current)


def client_ip(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The address of the client that sent `request` (see `client_address`)."""
    peer = request.client.host if request.client else ""
    proxies = request.app.state.settings.trusted_proxies
    if not proxies:
        return peer or "unknown"
    return client_address(peer, request.headers.getall("x-forwarded-for", []), proxies)


def client_key(address: str) -> str:
    """The address as a throttle and hashing-lane key: an IPv6 client is its /64 (one
    household or server has a whole /64 to choose addresses from)."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address
