"""Guards (Litestar dependencies) for pages that need an open portal, a signed-in
customer or a signed-in staff member. Each reads the one request context
(`auth/context.py`), so the business and the session are read once per request."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from portal.auth.context import ContextDep, CustomerViewer, resolve_context
from portal.auth.sessions import SessionInfo
from portal.db.rows import TenantRow


class PortalClosed(Exception):
    """The business's customer portal is not open (not enabled or agreement not accepted)."""

    def __init__(self, tenant: TenantRow) -> None:
        self.tenant = tenant


class SignInRequired(Exception):
    """No signed-in session: send the browser to the sign-in page, then back."""

    def __init__(self, sign_in_path: str, next_path: str) -> None:
        self.sign_in_path = sign_in_path
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"{self.sign_in_path}?next={quote(self.next_path, safe='/')}"


def safe_next(value: str | None, default: str = "/invoices") -> str:
    """A same-host path to return to after sign-in; anything else becomes `default`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 for ch in value):
        return default
    return value


def _current_path(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    query = connection.url.query
    return connection.url.path + (f"?{query}" if query else "")


async def portal_must_be_open(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard of every customer page (sign-in included), and the one place portal-open is
    checked: the portal is open only after an admin accepted the legal agreement and
    staff enabled it."""
    tenant = (await resolve_context(connection)).tenant
    if not tenant["portal_open"]:
        raise PortalClosed(tenant)


async def require_customer(
    request: ASGIConnection[Any, Any, Any, Any], context: ContextDep
) -> CustomerViewer:
    """Dependency (`viewer`): the signed-in customer, or a redirect to sign-in. Only
    customer pages ask for it, and they are behind `portal_must_be_open`."""
    viewer = context.viewer
    if viewer is None:
        raise SignInRequired("/sign-in", _current_path(request))
    return viewer


async def require_staff(
    request: ASGIConnection[Any, Any, Any, Any], context: ContextDep
) -> SessionInfo:
    """Dependency (`staff`): the signed-in office staff member, or a redirect to the office sign-in."""
    info = context.signed_in("staff")
    if info is None:
        raise SignInRequired("/office/sign-in", _current_path(request))
    return info


CustomerDep = NamedDependency[CustomerViewer]
StaffDep = NamedDependency[SessionInfo]
