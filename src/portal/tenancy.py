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
    label = host_label(request.headers.get("host", ""), request.app.state.settings.base_domain)
    if label == "":
        raise BareDomain()
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
        raise NotFoundException("No business here")
    request.scope["portal_tenant"] = tenant  # type: ignore[typeddict-unknown-key]
    return tenant
