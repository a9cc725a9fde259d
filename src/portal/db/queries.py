"""Reads and writes the pages need. Every function is scoped by business (tenant)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from portal.db import fast
from portal.db.rows import TenantRow
from portal.db.tables import BusinessUnit, Tenant

TENANT_COLUMNS = [
    Tenant.id,
    Tenant.host,
    Tenant.name,
    Tenant.email,
    Tenant.phone,
    Tenant.time_zone,
    Tenant.currency,
    Tenant.logo_version,
    Tenant.logo_width,
    Tenant.logo_sharp,
    Tenant.legal_accepted_at,
    Tenant.legal_accepted_by,
    Tenant.portal_enabled,
    Tenant.scheduler_enabled,
    Tenant.service_types,
    Tenant.memberships_enabled,
    Tenant.membership_statuses,
    Tenant.recurring_service_message,
    Tenant.payment_account_id,
    Tenant.payments_enabled,
    Tenant.custom_domain,
]


def tenant_row(row: dict[str, Any]) -> TenantRow:
    """A business row as pages use it (Python values; `portal_open`, `card_payments`)."""
    row["legal_accepted_at"] = fast.timestamp(row["legal_accepted_at"])
    for toggle in (
        "portal_enabled",
        "scheduler_enabled",
        "memberships_enabled",
        "payments_enabled",
        "logo_sharp",
    ):
        row[toggle] = bool(row[toggle])  # SQLite keeps 0/1
    row["service_types"] = json.loads(row["service_types"] or "[]")
    row["membership_statuses"] = json.loads(row["membership_statuses"] or "[]")
    # The customer portal is open only after an admin accepted the agreement and staff enabled it.
    row["portal_open"] = bool(row["legal_accepted_at"]) and bool(row["portal_enabled"])
    row["card_payments"] = bool(row["payment_account_id"]) and bool(row["payments_enabled"])
    return row  # type: ignore[return-value]  # the columns above, with the derived keys


TENANT_COLUMN_NAMES = [c._meta.db_column_name for c in TENANT_COLUMNS]
_TENANT_SQL = "SELECT " + ", ".join(TENANT_COLUMN_NAMES) + " FROM tenant WHERE host = {} LIMIT 1"


async def tenant_by_host(host: str) -> TenantRow | None:
    """The business with this host name (without its logo bytes), or None.
    Every request asks this, so it is one plain SQL read."""
    rows = await fast.fetch(_TENANT_SQL, host)
    return tenant_row(rows[0]) if rows else None


async def host_of_domain(domain: str) -> str | None:
    """The host name of the business whose own domain is `domain`, or None."""
    rows = await fast.fetch("SELECT host FROM tenant WHERE custom_domain = {} LIMIT 1", domain)
    return rows[0]["host"] if rows else None


async def moved_host(old_host: str) -> dict[str, Any] | None:
    """The business that used `old_host` until lately (its redirect still running) and no
    longer does: its current host and own domain; None when nothing moved from there."""
    rows = await fast.fetch(
        "SELECT t.host, t.custom_domain FROM host_redirect r JOIN tenant t ON t.id = r.tenant "
        "WHERE r.old_host = {} AND r.until > {} ORDER BY r.until DESC LIMIT 1",
        old_host,
        datetime.now(UTC),
    )
    return rows[0] if rows else None


async def tenant_logo(tenant_id: int, *, sharp: bool = False) -> tuple[bytes, str] | None:
    """The business's logo bytes and content type, if it has one (`sharp`: its copy for
    2× screens, if it has one)."""
    column = Tenant.logo_2x if sharp else Tenant.logo
    row = (
        await Tenant.select(column.as_alias("image"), Tenant.logo_content_type)
        .where(Tenant.id == tenant_id)
        .first()
        .run()
    )
    if not row or not row["image"]:
        return None
    return bytes(row["image"]), row["logo_content_type"]


async def business_units(tenant_id: int) -> list[dict[str, Any]]:
    """The business's units, by name."""
    return (
        await BusinessUnit.select()
        .where(BusinessUnit.tenant == tenant_id)
        .order_by(BusinessUnit.name)
        .run()
    )
