"""Which business a request is for: found from the request's host name.

`xyzplumbing.localhost:8000` → the business whose host is `xyzplumbing` (with the
default base domain `localhost`). The bare base domain is not a business.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException

from portal.auth import sessions
from portal.db import queries

# Handlers declare `tenant: TenantDep` to receive the business of the request.
TenantDep = NamedDependency[dict[str, Any]]

HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class BareDomain(Exception):
    """The request is for the base domain itself, not for a business."""


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


async def resolve_tenant(request: Request) -> dict[str, Any]:
    """Dependency: the business this request is for, or a 404 for unknown hosts."""
    cached = request.scope.get("portal_tenant")
    if cached is not None:
        return cached
    settings = request.app.state.settings
    host_header = request.headers.get("host", "")
    label = host_label(host_header, settings.base_domain)
    if label == "":
        raise BareDomain()
    if label is None:
        # Not under the base domain: maybe a business's own domain (one small read).
        domain = bare_host(host_header)
        label = await queries.host_of_domain(domain) if "." in domain else None
    if not label:
        raise NotFoundException("No business here")
    token = sessions.session_token(request)
    if token is None:
        tenant = await queries.tenant_by_host(label)
    else:
        # A signed-in browser: the business and the session in one read; the session is
        # kept for `load_session` (None when the cookie names no live session here).
        tenant, session = await sessions.tenant_and_session(
            request.app.state.settings, label, token
        )
        request.scope["portal_session"] = session  # type: ignore[typeddict-unknown-key]
    if tenant is None:
        await _redirect_if_moved(request, label)
        raise NotFoundException("No business here")
    request.scope["portal_tenant"] = tenant  # type: ignore[typeddict-unknown-key]
    return tenant


async def _redirect_if_moved(request: Request, label: str) -> None:
    """A host name a business gave up lately answers 301 to its address now, same path
    and query (only GET and HEAD: a form posted to the old address is not replayed)."""
    if request.method not in ("GET", "HEAD"):
        return
    moved = await queries.moved_host(label)
    if moved is None:
        return
    from portal.mail.links import portal_url

    query = request.url.query
    path = request.url.path + (f"?{query}" if query else "")
    raise MovedPermanently(portal_url(request.app.state.settings, moved, path))
