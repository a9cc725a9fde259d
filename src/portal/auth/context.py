"""Who a request is for and from: the business (from the host name), the signed-in
session (from the cookie) and, for a customer, the records it may see — resolved once
per request by one dependency and handed to handlers typed.

On a signed-in page the business and the session come from one read
(`sessions.tenant_and_session`); without a session cookie, the business alone. The
result is kept on the request's state under one key, so the guard, the dependencies
and any helper that asks again in the same request share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException

from portal import logs
from portal.auth import sessions
from portal.auth.grants import ROLE_WORDS
from portal.auth.sessions import SessionInfo
from portal.db import queries
from portal.db.rows import CustomerRow, TenantRow
from portal.mail.links import portal_url
from portal.tenancy import BareDomain, MovedPermanently, bare_host, host_label

_STATE_KEY = "portal_context"


@dataclass
class CustomerViewer:
    """A signed-in customer: their account and the customer records it may see."""

    session: SessionInfo
    customers: list[CustomerRow]
    customer: CustomerRow | None  # the record being viewed now

    @property
    def customer_ids(self) -> list[int]:
        return [c["id"] for c in self.customers]

    @property
    def customer_id(self) -> int:
        """The id of the record being viewed; an account with none sees no records (404)."""
        if self.customer is None:
            raise NotFoundException()
        return self.customer["id"]

    # --- issue 16.4: how the record being viewed is seen (owner, or a grant's role) ---------

    @property
    def access(self) -> str:
        """The way the record is seen: "owner", or the role of the grant, "full" | "billing" |
        "view" ("" with no record)."""
        return self.customer["access"] if self.customer is not None else ""

    @property
    def location_ids(self) -> list[int] | None:
        """The record's locations this account may see: None for the owner (every one)."""
        return self.customer["location_ids"] if self.customer is not None else []

    @property
    def is_owner(self) -> bool:
        return self.access == "owner"

    @property
    def access_words(self) -> str:
        """The access in words, mid-sentence: "view only", "billing — invoices, …"."""
        words = ROLE_WORDS.get(self.access, self.access)
        return words[:1].lower() + words[1:]

    @property
    def owner_email(self) -> str:
        """Whom to ask for more access: the email the record's grant came from ("" for an
        owner)."""
        return self.customer["granted_by"] if self.customer is not None else ""

    @property
    def can_pay(self) -> bool:
        """Pay invoices: the owner, full access and billing."""
        return self.access in ("owner", "full", "billing")

    @property
    def can_request(self) -> bool:
        """Request appointments: the owner and full access."""
        return self.access in ("owner", "full")

    @property
    def can_manage_cards(self) -> bool:
        """Update the card on file: the owner and full access."""
        return self.access in ("owner", "full")

    def sees_location(self, location_id: int | None) -> bool:
        """True if the record's location `location_id` is within what this account sees."""
        ids = self.location_ids
        return ids is None or location_id in ids

    @property
    def is_commercial(self) -> bool:
        return bool(self.customer and self.customer["kind"] == "commercial")

    @property
    def memberships_label(self) -> str:
        """Residential customers have Memberships; commercial customers have Contracts."""
        return "Contracts" if self.is_commercial else "Memberships"


def viewer_for(info: SessionInfo) -> CustomerViewer:
    """The customer records a session's account may see, and the one being viewed."""
    customers = info.customers
    active = next((c for c in customers if c["id"] == info.active_customer_id), None)
    if active is None and customers:
        active = customers[0]
    return CustomerViewer(session=info, customers=customers, customer=active)


@dataclass(frozen=True)
class RequestContext:
    """The business a request is for and the live session its cookie names there."""

    tenant: TenantRow
    session: SessionInfo | None  # of either kind; None when signed out (or expired)

    def signed_in(self, kind: str) -> SessionInfo | None:
        """The session if it is of `kind` ("customer" or "staff"), else None."""
        return self.session if self.session is not None and self.session.kind == kind else None

    @property
    def viewer(self) -> CustomerViewer | None:
        """The signed-in customer, if a customer is signed in."""
        info = self.signed_in("customer")
        return viewer_for(info) if info is not None else None


# Handlers declare `tenant: TenantDep` (or `context: ContextDep`) to receive them.
TenantDep = NamedDependency[TenantRow]
ContextDep = NamedDependency[RequestContext]


async def resolve_context(request: ASGIConnection[Any, Any, Any, Any]) -> RequestContext:
    """Dependency (`context`): the request's business and session, read once per request.

    (Its parameter is named `request`, as Litestar injects it; guards pass the connection.)
    Unknown hosts are a 404 (`NotFoundException`); the bare base domain raises BareDomain."""
    cached = request.state.get(_STATE_KEY)
    if isinstance(cached, RequestContext):
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
    session: SessionInfo | None = None
    if token is None:
        tenant = await queries.tenant_by_host(label)
    else:
        tenant, session = await sessions.tenant_and_session(settings, label, token)
    if tenant is None:
        await _redirect_if_moved(request, label)
        raise NotFoundException("No business here")
    context = RequestContext(tenant=tenant, session=session)
    request.state[_STATE_KEY] = context
    logs.bind(business=tenant["host"])  # on every security or money event of the request
    return context


async def _redirect_if_moved(request: ASGIConnection[Any, Any, Any, Any], label: str) -> None:
    """A host name a business gave up lately answers 301 to its address now, same path
    and query (only GET and HEAD: a form posted to the old address is not replayed)."""
    if request.scope.get("method") not in ("GET", "HEAD"):
        return
    moved = await queries.moved_host(label)
    if moved is None:
        return
    query = request.url.query
    path = request.url.path + (f"?{query}" if query else "")
    raise MovedPermanently(portal_url(request.app.state.settings, moved, path))


async def resolve_tenant(context: ContextDep) -> TenantRow:
    """Dependency (`tenant`): the business of the request (from `context`)."""
    return context.tenant


async def signed_in(
    connection: ASGIConnection[Any, Any, Any, Any], kind: str
) -> SessionInfo | None:
    """The live session of `kind` for the request's business, or None (from the context)."""
    return (await resolve_context(connection)).signed_in(kind)
