"""The payment accounts a business has linked, now or before (tables.PaymentAccount).

A payment keeps the account it started on; after the office unlinks that account, the
gateway's callbacks for it are still signed with that account's key. The business's
accounts are the keys a callback may be verified with.
"""

from __future__ import annotations

from datetime import UTC, datetime

from portal.db.rows import TenantRow
from portal.db.tables import PaymentAccount


async def accounts_of(tenant: TenantRow) -> list[str]:
    """The business's accounts: the linked one first, then the others, newest first."""
    rows = (
        await PaymentAccount.select(PaymentAccount.account_id)
        .where(PaymentAccount.tenant == tenant["id"])
        .order_by(PaymentAccount.id, ascending=False)
        .run()
    )
    found = [tenant["payment_account_id"]] if tenant["payment_account_id"] else []
    for row in rows:
        if row["account_id"] not in found:
            found.append(row["account_id"])
    return found


async def record_linked(tenant_id: int, account_id: str) -> None:
    """Remember an account the business links (once per account)."""
    await (
        PaymentAccount.insert(PaymentAccount(tenant=tenant_id, account_id=account_id))
        .on_conflict(target=(PaymentAccount.tenant, PaymentAccount.account_id), action="DO NOTHING")
        .run()
    )


async def record_unlinked(tenant_id: int, account_id: str) -> None:
    """Remember that the business unlinked an account (it may have been linked by an
    import, which writes no row: then the row is written now)."""
    moment = datetime.now(UTC)
    await record_linked(tenant_id, account_id)
    await (
        PaymentAccount.update({PaymentAccount.unlinked_at: moment})
        .where((PaymentAccount.tenant == tenant_id) & (PaymentAccount.account_id == account_id))
        .run()
    )
