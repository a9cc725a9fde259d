"""What happens to a business's payments when the office unlinks its payment account.

What an office expects of "Unlink payment account" is that it takes effect now and
that no money goes astray: nothing more is paid into the old account, and whatever a
customer did pay is recorded. So an unlink first closes, at the gateway of the old
account, every card page still open on it (payments and card updates): one the
customer had just paid is recorded as paid, the others end with a clear reason and the
customer can try again once card payments are back. Refusing the unlink until those
customers finish (up to the card page's 30 minutes) would keep an account the office
wants gone — perhaps because it was compromised — taking money meanwhile.

A card page the gateway cannot close right now (it cannot be reached) stays pending on
the old account: the payment remembers that account, so its callback is still verified
and settled with it, and the pages' reconciliation asks that account later.
"""

from __future__ import annotations

import logging
from typing import Any

from portal.config import Settings
from portal.db import activity, card_updates
from portal.db import office_settings as settings_db
from portal.db import payments as payments_db
from portal.db.rows import TenantRow
from portal.payments import card_updates as card_service
from portal.payments.gateway import GatewayError, PaymentGateway
from portal.payments.registry import gateway_for
from portal.payments.service import ACCOUNT_CHANGED, close_and_settle

log = logging.getLogger("portal.payments")

CARD_ACCOUNT_CHANGED = "The business changed its payment account before the card was saved."


async def unlink(
    settings: Settings, tenant: TenantRow, actor: activity.Actor = activity.SYSTEM
) -> bool:
    """Close the card pages open on the business's linked account, then unlink it
    (`actor`: who did, for the activity log). False if no account was linked."""
    account_id = tenant["payment_account_id"]
    if not account_id:
        return False
    await close_open_checkouts(settings, tenant, account_id)
    return await settings_db.unlink_payment_account(tenant["id"], account_id, actor)


async def close_open_checkouts(settings: Settings, tenant: TenantRow, account_id: str) -> None:
    """Close every pending payment's and card update's checkout on `account_id` at its
    gateway, settling the ones the customer had already paid (or saved a card on)."""
    gateway = gateway_for(settings, account_id)
    for payment in await payments_db.pending_on_account(tenant["id"], account_id):
        try:
            await close_and_settle(settings, tenant, gateway, payment, ACCOUNT_CHANGED)
        except GatewayError as exc:
            log.warning("payment %s: not closed at unlink: %s", payment["id"], exc)
    for update in await card_updates.pending_on_account(tenant["id"], account_id):
        try:
            await _close_card_update(gateway, tenant, update)
        except GatewayError as exc:
            log.warning("card update %s: not closed at unlink: %s", update["id"], exc)


async def _close_card_update(
    gateway: PaymentGateway, tenant: TenantRow, update: dict[str, Any]
) -> None:
    """Like `close_and_settle` for a card update: closed first, a card saved is applied."""
    if not update["gateway_ref"]:  # no card page was given to the customer
        await card_updates.fail(tenant["id"], update["id"], CARD_ACCOUNT_CHANGED)
        return
    found = await gateway.get_checkout(update["gateway_ref"])
    if found is not None and not found.is_final:
        found = await gateway.cancel_checkout(found.ref)
        if found is None or not found.is_final:
            raise GatewayError(f"checkout {update['gateway_ref']} could not be closed")
        if not found.succeeded:
            await card_updates.fail(tenant["id"], update["id"], CARD_ACCOUNT_CHANGED)
            return
    if found is None:
        await card_updates.fail(tenant["id"], update["id"], CARD_ACCOUNT_CHANGED)
        return
    await card_service.settle(tenant["id"], update["id"], found, gateway.account_id)
