"""Typed rows: the shape of the rows that cross layers (database -> services ->
handlers -> templates). They are TypedDicts, so at run time a row stays the plain dict
the driver made (templates read it as before, at no cost); mypy checks every use.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TypedDict


class TenantRow(TypedDict):
    """A business as every page of it sees it (`queries.tenant_row`): no logo bytes."""

    id: int
    host: str
    name: str
    email: str
    phone: str
    time_zone: str
    currency: str
    logo_version: int
    logo_width: int  # CSS pixels at 50 px high (0: not known)
    logo_sharp: bool  # a copy for 2× screens exists (/logo/<version>/2x)
    legal_accepted_at: datetime | None
    legal_accepted_by: str
    portal_enabled: bool
    scheduler_enabled: bool
    service_types: list[str]
    memberships_enabled: bool
    membership_statuses: list[str]
    recurring_service_message: str
    payment_account_id: str
    payments_enabled: bool
    # The business's own domain (its primary address), None when it has none.
    custom_domain: str | None
    # Derived: an admin accepted the agreement and staff enabled the portal.
    portal_open: bool
    # Derived: a payment account is linked and card payments are enabled.
    card_payments: bool


class CustomerRow(TypedDict):
    """A customer record a signed-in account may see (read with its session)."""

    id: int
    name: str
    kind: str  # residential | commercial
    external_id: str
    pending_payments: bool  # a card payment of theirs waits for the gateway's answer
    # How the account may see it (issue 16.4): "owner" (its email is on the record) or a
    # grant's role, "full" | "billing" | "view"; and the granted locations' ids (None for
    # an owner: every location).
    access: str
    location_ids: list[int] | None
    granted_by: str  # the owner's email a grant came from ("" for an owner)


class InvoiceRow(TypedDict):
    """An open invoice on the Invoices tab (`invoices.open_invoices`), as the driver gives
    it (`invoice_date` is ISO text on SQLite; the `date` filter reads both)."""

    id: int
    number: str
    invoice_date: date | str
    total_cents: int
    balance_cents: int
    job_summary: str
    location_name: str
    location_street: str
    unit_name: str
    # Over all the customer's open invoices, not only those listed.
    open_count: int
    open_total: int


class GrantRow(TypedDict):
    """A grant of access to a customer record (issue 16.4; `db/grants.py`)."""

    id: int
    customer_id: int
    customer_name: str
    invitee_email: str
    role: str  # full | billing | view
    granted_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None  # an email, or "office: <staff email>"
    locations: list[tuple[int, str]]  # (location id, location name), name order
