"""Guards (Litestar dependencies) for pages that need a signed-in customer or staff member."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from portal.auth.sessions import SessionInfo, load_session
from portal.tenancy import TenantDep, resolve_tenant


class PortalClosed(Exception):
    """The business's customer portal is not open (not enabled or agreement not accepted)."""

    def __init__(self, tenant: dict[str, Any]) -> None:
        self.tenant = tenant


class SignInRequired(Exception):
    """No signed-in session: send the browser to the sign-in page, then back."""

    def __init__(self, sign_in_path: str, next_path: str) -> None:
        self.sign_in_path = sign_in_path
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"{self.sign_in_path}?next={quote(self.next_path, safe='/')}"


@dataclass
class CustomerViewer:
    """A signed-in customer: their account and the customer records it may see."""

    session: SessionInfo
    customers: list[dict[str, Any]]
    customer: dict[str, Any] | None  # the record being viewed now

    @property
    def customer_ids(self) -> list[int]:
        return [c["id"] for c in self.customers]

    @property
    def is_commercial(self) -> bool:
        return bool(self.customer and self.customer["kind"] == "commercial")

    @property
    def memberships_label(self) -> str:
        """Residential customers have Memberships; commercial customers have Contracts."""
        return "Contracts" if self.is_commercial else "Memberships"


def safe_next(value: str | None, default: str = "/invoices") -> str:
    """A same-host path to return to after sign-in; anything else becomes `default`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 for ch in value):
        return default
    return value


def _current_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def portal_must_be_open(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard of every customer page (sign-in included): the portal is open only after an
    admin accepted the legal agreement and staff enabled it."""
    tenant = await resolve_tenant(connection)  # type: ignore[arg-type]
    if not tenant["portal_open"]:
        raise PortalClosed(tenant)


async def require_customer(request: Request, tenant: TenantDep) -> CustomerViewer:
    """Dependency (`viewer`): the signed-in customer, or a redirect to sign-in."""
    if not tenant["portal_open"]:
        raise PortalClosed(tenant)
    info = await load_session(request, tenant["id"], "customer")
    if info is None:
        raise SignInRequired("/sign-in", _current_path(request))
    return await viewer_for(tenant["id"], info)


async def viewer_for(tenant_id: int, info: SessionInfo) -> CustomerViewer:
    """The customer records a session's account may see, and the one being viewed."""
    customers = info.customers
    active = next((c for c in customers if c["id"] == info.active_customer_id), None)
    if active is None and customers:
        active = customers[0]
    return CustomerViewer(session=info, customers=customers, customer=active)


async def require_staff(request: Request, tenant: TenantDep) -> SessionInfo:
    """Dependency (`staff`): the signed-in office staff member, or a redirect to the office sign-in."""
    info = await load_session(request, tenant["id"], "staff")
    if info is None:
        raise SignInRequired("/office/sign-in", _current_path(request))
    return info


CustomerDep = NamedDependency[CustomerViewer]
StaffDep = NamedDependency[SessionInfo]
