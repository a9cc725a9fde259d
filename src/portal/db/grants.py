"""Access grants (issue 16.4): the owner of a customer record shares it with another
person, by email, for chosen locations, with a role. Plain data access — the rules
(who may invite whom, the email, the activity line) are `auth/grants.py`.

Every function is scoped by business. Revoking deletes nothing: it sets `revoked_at`
and `revoked_by`, so the office keeps the history and the next request's session read
(`auth/sessions.py`) no longer finds the grant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from piccolo.custom_types import Combinable

from portal.db.engine import current_engine, transaction
from portal.db.rows import GrantRow
from portal.db.tables import (
    AccessGrant,
    AccessGrantLocation,
    Customer,
    CustomerEmail,
    Location,
)

ROLES = ("full", "billing", "view")


def _now() -> datetime:
    return datetime.now(UTC)


async def create(
    tenant_id: int,
    customer_id: int,
    invitee_email: str,
    role: str,
    location_ids: list[int],
    granted_by: str,
) -> int:
    """A new live grant with its locations, in one transaction; returns its id. The
    caller has checked the rules (`auth.grants.check_invite`)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    async with transaction():
        rows = await AccessGrant.insert(
            AccessGrant(
                tenant=tenant_id,
                customer=customer_id,
                invitee_email=invitee_email.strip().lower(),
                role=role,
                granted_by=granted_by,
                created_at=_now(),
            )
        ).run()
        grant_id: int = rows[0]["id"]
        await AccessGrantLocation.insert(
            *[
                AccessGrantLocation(tenant=tenant_id, grant=grant_id, location=location_id)
                for location_id in sorted(set(location_ids))
            ]
        ).run()
    return grant_id


async def lock_live_emails(tenant_id: int, customer_id: int) -> list[str]:
    """Inside the transaction that adds a grant: lock the customer's grants till it ends
    (PostgreSQL: the customer's row, FOR NO KEY UPDATE, so invitations to one record take
    turns across processes — the weaker lock leaves rows that merely reference the
    customer, a pushed invoice say, free to be written meanwhile; SQLite: the immediate
    transaction already holds the write lock) and return the emails of its live grants, as
    committed before this turn."""
    if current_engine().engine_type == "postgres":
        await Customer.raw(
            "SELECT id FROM customer WHERE tenant = {} AND id = {} FOR NO KEY UPDATE",
            tenant_id,
            customer_id,
        ).run()
    rows: list[dict[str, Any]] = (
        await AccessGrant.select(AccessGrant.invitee_email)
        .where(
            (AccessGrant.tenant == tenant_id)
            & (AccessGrant.customer == customer_id)
            & AccessGrant.revoked_at.is_null()
        )
        .run()
    )
    return [str(r["invitee_email"]) for r in rows]


async def _rows(where: Combinable) -> list[GrantRow]:
    """Grants matching `where`, newest first, each with its locations (two statements)."""
    grants = (
        await AccessGrant.select(
            AccessGrant.id,
            AccessGrant.customer.as_alias("customer_id"),
            AccessGrant.customer.name.as_alias("customer_name"),
            AccessGrant.invitee_email,
            AccessGrant.role,
            AccessGrant.granted_by,
            AccessGrant.created_at,
            AccessGrant.revoked_at,
            AccessGrant.revoked_by,
        )
        .where(where)
        .order_by(AccessGrant.created_at, ascending=False)
        .order_by(AccessGrant.id, ascending=False)
        .run()
    )
    if not grants:
        return []
    places = (
        await AccessGrantLocation.select(
            AccessGrantLocation.grant.as_alias("grant_id"),
            AccessGrantLocation.location.as_alias("location_id"),
            AccessGrantLocation.location.name.as_alias("location_name"),
        )
        .where(AccessGrantLocation.grant.is_in([g["id"] for g in grants]))
        .order_by(AccessGrantLocation.location.name)
        .order_by(AccessGrantLocation.location.id)
        .run()
    )
    by_grant: dict[int, list[tuple[int, str]]] = {}
    for p in places:
        by_grant.setdefault(p["grant_id"], []).append((p["location_id"], p["location_name"]))
    return [
        GrantRow(
            id=g["id"],
            customer_id=g["customer_id"],
            customer_name=g["customer_name"],
            invitee_email=g["invitee_email"],
            role=g["role"],
            granted_by=g["granted_by"],
            created_at=g["created_at"],
            revoked_at=g["revoked_at"],
            revoked_by=g["revoked_by"],
            locations=by_grant.get(g["id"], []),
        )
        for g in grants
    ]


async def given(tenant_id: int, customer_id: int) -> list[GrantRow]:
    """The customer's live grants (not revoked), newest first."""
    return await _rows(
        (AccessGrant.tenant == tenant_id)
        & (AccessGrant.customer == customer_id)
        & AccessGrant.revoked_at.is_null()
    )


async def held(tenant_id: int, email: str) -> list[GrantRow]:
    """The live grants to this email (of any customer of the business), newest first."""
    return await _rows(
        (AccessGrant.tenant == tenant_id)
        & (AccessGrant.invitee_email == email.strip().lower())
        & AccessGrant.revoked_at.is_null()
    )


async def for_office(tenant_id: int, customer_id: int) -> list[GrantRow]:
    """Every grant of the customer, live and revoked, newest first (the office's view)."""
    return await _rows((AccessGrant.tenant == tenant_id) & (AccessGrant.customer == customer_id))


async def revoke(
    tenant_id: int,
    grant_id: int,
    *,
    by: str,
    customer_id: int | None = None,
    invitee_email: str | None = None,
) -> bool:
    """Revoke a live grant: the owner's (`customer_id`), the grantee leaving
    (`invitee_email`) or, neither given, the office. False when there is no such live
    grant (another's id answers like a missing one, and changes nothing)."""
    where: Combinable = (
        (AccessGrant.tenant == tenant_id)
        & (AccessGrant.id == grant_id)
        & AccessGrant.revoked_at.is_null()
    )
    if customer_id is not None:
        where &= AccessGrant.customer == customer_id
    if invitee_email is not None:
        where &= AccessGrant.invitee_email == invitee_email.strip().lower()
    done = (
        await AccessGrant.update({AccessGrant.revoked_at: _now(), AccessGrant.revoked_by: by[:254]})
        .where(where)
        .returning(AccessGrant.id)
        .run()
    )
    return bool(done)


async def revoke_all(
    tenant_id: int, *, by: str, customer_id: int | None = None, emails: list[str] | None = None
) -> int:
    """Revoke every live grant of a customer (`customer_id`) or to any of `emails`
    (privacy erasure, the sync API's delete); returns how many."""
    where: Combinable = (AccessGrant.tenant == tenant_id) & AccessGrant.revoked_at.is_null()
    if customer_id is not None:
        where &= AccessGrant.customer == customer_id
    elif emails:
        where &= AccessGrant.invitee_email.is_in([e.strip().lower() for e in emails])
    else:
        return 0
    done = (
        await AccessGrant.update({AccessGrant.revoked_at: _now(), AccessGrant.revoked_by: by[:254]})
        .where(where)
        .returning(AccessGrant.id)
        .run()
    )
    return len(done)


async def live_grant_exists(tenant_id: int, email: str) -> bool:
    """True if a live grant to `email` exists (registration accepts such an email)."""
    return bool(
        await AccessGrant.exists()
        .where(
            (AccessGrant.tenant == tenant_id)
            & (AccessGrant.invitee_email == email.strip().lower())
            & AccessGrant.revoked_at.is_null()
        )
        .run()
    )


async def owner_location_ids(tenant_id: int, customer_id: int) -> set[int]:
    """The ids of the customer's own locations (what a grant may reach)."""
    rows: list[dict[str, Any]] = (
        await Location.select(Location.id)
        .where((Location.tenant == tenant_id) & (Location.customer == customer_id))
        .run()
    )
    return {int(r["id"]) for r in rows}


async def record_emails(tenant_id: int, customer_id: int) -> set[str]:
    """The emails on the customer's record (lower-cased): never an invitee."""
    rows: list[dict[str, Any]] = (
        await CustomerEmail.select(CustomerEmail.email)
        .where((CustomerEmail.tenant == tenant_id) & (CustomerEmail.customer == customer_id))
        .run()
    )
    return {str(r["email"]).lower() for r in rows}


async def live_grant(tenant_id: int, grant_id: int) -> GrantRow | None:
    """The live grant with this id in the business, or None."""
    found = await _rows(
        (AccessGrant.tenant == tenant_id)
        & (AccessGrant.id == grant_id)
        & AccessGrant.revoked_at.is_null()
    )
    return found[0] if found else None


async def revoke_for_person(tenant_id: int, customer_id: int, emails: list[str], *, by: str) -> int:
    """A customer leaves (privacy erasure, the sync API's delete): revoke every live grant
    of their record and every live grant to `emails` (those of theirs on no other record);
    returns how many."""
    count = await revoke_all(tenant_id, by=by, customer_id=customer_id)
    if emails:
        count += await revoke_all(tenant_id, by=by, emails=emails)
    return count


async def held_by_emails(tenant_id: int, emails: list[str]) -> list[GrantRow]:
    """Every grant (live and revoked) to any of `emails`, newest first (the export)."""
    if not emails:
        return []
    return await _rows(
        (AccessGrant.tenant == tenant_id)
        & AccessGrant.invitee_email.is_in([e.strip().lower() for e in emails])
    )
