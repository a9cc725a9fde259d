"""Which business a request is for: found from the request's host name.

`xyzplumbing.localhost:8000` → the business whose host is `xyzplumbing` (with the
default base domain `localhost`). The bare base domain is not a business. Resolving
the business of a request (and its session) is `auth/context.py`.
"""

from __future__ import annotations

import re

HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class BareDomain(Exception):
    """The request is for the base domain itself, not for a business."""


def host_label(host_header: str, base_domain: str) -> str | None:
    """The business label of a Host header, "" for the bare base domain, None if foreign.

    >>> host_label("xyzplumbing.localhost:8000", "localhost")
    'xyzplumbing'
    """
    host = host_header.strip().lower()
    if host.startswith("["):  # IPv6 literal: never a business
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    if host == base_domain:
        return ""
    suffix = "." + base_domain
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    return label if HOST_LABEL.match(label) else None


class MovedPermanently(Exception):
    """The business moved from this host name: answer 301 to `location`."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def bare_host(host_header: str) -> str:
    """A Host header without its port and trailing dot, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host
    return (host.rsplit(":", 1)[0] if ":" in host else host).rstrip(".")
