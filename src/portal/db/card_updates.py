"""Card updates of memberships (contracts): the `CardUpdate` rows and their audit
trail. The rules — when a card may change, the gateway's setup checkout, applying
its outcome once — are `payments/card_updates.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from portal.db import fast
from portal.db.tables import CardUpdate


async def begin(
    tenant_id: int,
    customer_id: int,
    membership_id: int,
    account_email: str,
    key: str,
    payment_account_id: str,
) -> dict[str, Any] | None:
    """The card update for this form submission (a repeated submission gets the same
    row), or None when the key belongs to something else. It starts on the business's
    `payment_account_id` and is completed on that account."""
    await (
        CardUpdate.insert(
            CardUpdate(
                tenant=tenant_id,
                customer=customer_id,
                membership=membership_id,
                account_email=account_email,
                idempotency_key=key,
                payment_account_id=payment_account_id,
            )
        )
        .on_conflict(target=(CardUpdate.tenant, CardUpdate.idempotency_key), action="DO NOTHING")
        .run()
    )
    row = (
        await CardUpdate.select()
        .where((CardUpdate.tenant == tenant_id) & (CardUpdate.idempotency_key == key))
        .first()
        .run()
    )
    if row is None or row["customer"] != customer_id or row["membership"] != membership_id:
        return None
    return row


async def set_gateway_ref(update_id: int, ref: str) -> None:
    await CardUpdate.update({CardUpdate.gateway_ref: ref}).where(CardUpdate.id == update_id).run()


async def get(
    tenant_id: int, update_id: int, customer_id: int | None = None
) -> dict[str, Any] | None:
    """A card update of this business (and of this customer, when given)."""
    where = (CardUpdate.tenant == tenant_id) & (CardUpdate.id == update_id)
    if customer_id is not None:
        where = where & (CardUpdate.customer == customer_id)
    return await CardUpdate.select().where(where).first().run()


async def pending_on_account(tenant_id: int, account_id: str) -> list[dict[str, Any]]:
    """The business's card updates still waiting for the gateway, started on this account."""
    return (
        await CardUpdate.select()
        .where(
            (CardUpdate.tenant == tenant_id)
            & (CardUpdate.payment_account_id == account_id)
            & (CardUpdate.status == "pending")
        )
        .order_by(CardUpdate.id)
        .run()
    )


async def fail(tenant_id: int, update_id: int, reason: str) -> bool:
    """Give up a pending card update (its card page was closed first); nothing changes
    on the membership. False if it had ended already."""
    done = (
        await CardUpdate.update(
            {
                CardUpdate.status: "failed",
                CardUpdate.failure_reason: reason[:200],
                CardUpdate.completed_at: datetime.now(UTC),
            }
        )
        .where(
            (CardUpdate.tenant == tenant_id)
            & (CardUpdate.id == update_id)
            & (CardUpdate.status == "pending")
        )
        .returning(CardUpdate.id)
        .run()
    )
    return bool(done)


async def audit_trail(tenant_id: int, membership_id: int) -> list[dict[str, Any]]:
    """A membership's audit trail, newest first."""
    rows = await fast.fetch(
        """SELECT id, created_at, actor, action, detail, amount_cents, reference
        FROM audit_event WHERE tenant = {} AND membership = {}
        ORDER BY created_at DESC, id DESC""",
        tenant_id,
        membership_id,
    )
    for row in rows:
        row["created_at"] = fast.timestamp(row["created_at"])
    return rows
