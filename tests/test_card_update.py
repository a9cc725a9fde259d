"""Update payment card on a membership: through the gateway's hosted card page, once,
recorded in the audit trail, and never a card number in the portal's tables."""

from __future__ import annotations

import json
import re

from portal.db import tables as t
from portal.demo import JANE_EMAIL
from portal.payments.registry import gateway_for
from portal.payments.sandbox import callback_body, callback_secret, sign
from tests.support.http import CSRF_FIELD, make_client, sign_in
from tests.support.paying import DECLINED_CARD, GOOD_CARD, enter_card, path_of

KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')


async def membership_id(external_id: str) -> int:
    row = (
        await t.Membership.select(t.Membership.id)
        .where(t.Membership.external_id == external_id)
        .first()
        .run()
    )
    return row["id"]


async def start_update(client, mid: int, key: str | None = None):
    page = (await client.get(f"/memberships/{mid}")).text
    token = CSRF_FIELD.search(page).group(1)
    key = key or KEY_FIELD.search(page).group(1)
    return await client.post(
        f"/memberships/{mid}/card", data={"_csrf_token": token, "key": key}
    ), key


async def card_of(mid: int) -> dict:
    return (
        await t.Membership.select(
            t.Membership.card_brand, t.Membership.card_last4, t.Membership.card_token
        )
        .where(t.Membership.id == mid)
        .first()
        .run()
    )


async def test_update_card_with_a_good_card(jane, demo):
    mid = await membership_id("M-JANE-GOLD")
    page = (await jane.get(f"/memberships/{mid}")).text
    assert "Visa ending in 1881" in page and ">Update payment card</button>" in page
    started, _ = await start_update(jane, mid)
    assert started.status_code == 303
    checkout_url = started.headers["location"]
    assert "/sandbox-gateway/checkout/" in checkout_url
    checkout_page = (await jane.get(path_of(checkout_url))).text
    assert "Save card" in checkout_page and "Test mode" in checkout_page
    done = await enter_card(jane, path_of(checkout_url), "5555 5555 5555 4444")
    assert done.status_code == 303
    back = await jane.get(path_of(done.headers["location"]))
    assert back.status_code == 303
    result = (await jane.get(back.headers["location"])).text
    assert "Your card on file is now Mastercard ending in 4444." in result
    assert (
        "Mastercard ending in 4444" in result
        and "Visa ending in 1881" not in result.split("Account activity")[0]
    )
    card = await card_of(mid)
    assert (card["card_brand"], card["card_last4"]) == ("Mastercard", "4444")
    assert card["card_token"]
    trail = await t.AuditEvent.select().where(t.AuditEvent.membership == mid).run()
    assert len(trail) == 1
    assert trail[0]["actor"] == JANE_EMAIL and trail[0]["action"] == "card_updated"
    assert "from Visa ending 1881 to Mastercard ending 4444" in trail[0]["detail"]
    assert "Card on file changed from Visa ending 1881 to Mastercard ending 4444" in result


async def test_declined_card_changes_nothing(jane, demo, app):
    mid = await membership_id("M-JANE-GOLD")
    before = await card_of(mid)
    trail_before = await t.AuditEvent.count().where(t.AuditEvent.membership == mid).run()
    started, _ = await start_update(jane, mid)
    done = await enter_card(jane, path_of(started.headers["location"]), DECLINED_CARD)
    # The hosted page says it was declined and lets the customer try another card or go back.
    assert done.status_code in (200, 303, 422)
    update = await t.CardUpdate.select().order_by(t.CardUpdate.id, ascending=False).first().run()
    gateway = gateway_for(app.state.settings, (await _tenant())["payment_account_id"])
    checkout = await gateway.get_checkout(update["gateway_ref"])
    if checkout.status == "open":  # declined cards may be retried on the page: give up there
        await gateway.cancel_checkout(update["gateway_ref"])
    back = await jane.get(f"/memberships/{mid}/card/{update['id']}")
    result = (await jane.get(back.headers["location"])).text
    assert "Your card on file was not changed" in result
    assert await card_of(mid) == before
    assert await t.AuditEvent.count().where(t.AuditEvent.membership == mid).run() == trail_before


async def _tenant() -> dict:
    from portal.db.queries import tenant_by_host

    return await tenant_by_host("xyzplumbing")


async def test_double_submit_makes_one_checkout_and_replayed_callback_changes_nothing(
    jane, demo, app
):
    mid = await membership_id("M-JANE-GOLD")
    first, key = await start_update(jane, mid)
    second, _ = await start_update(jane, mid, key=key)
    assert first.headers["location"] == second.headers["location"]  # same checkout
    assert await t.CardUpdate.count().where(t.CardUpdate.idempotency_key == key).run() == 1
    await enter_card(jane, path_of(first.headers["location"]), GOOD_CARD)
    update = await t.CardUpdate.select().where(t.CardUpdate.idempotency_key == key).first().run()
    assert update["status"] == "succeeded"  # the gateway's callback arrived before the customer
    trail = await t.AuditEvent.count().where(t.AuditEvent.membership == mid).run()
    # Replay the gateway's callback: the same signed body again changes nothing.
    settings = app.state.settings
    row = (
        await t.SandboxCheckout.select()
        .where(t.SandboxCheckout.public_id == update["gateway_ref"])
        .first()
        .run()
    )
    body = callback_body(row)
    secret = callback_secret(settings, row["account_id"])
    headers = {"Sandbox-Signature": sign(secret, body), "content-type": "application/json"}
    async with make_client(app) as server_to_server:
        replay = await server_to_server.post(
            "/memberships/card-callback", content=body, headers=headers
        )
        assert replay.status_code == 200 and replay.json()["status"] == "succeeded"
        forged = await server_to_server.post(
            "/memberships/card-callback",
            content=body,
            headers={"Sandbox-Signature": "sha256=" + "0" * 64},
        )
        assert forged.status_code == 403
    assert await t.AuditEvent.count().where(t.AuditEvent.membership == mid).run() == trail


async def test_other_customers_memberships_and_closed_ones_are_refused(app, demo, jane):
    acme = await membership_id("K-ACME-HVAC")
    before = await card_of(acme)
    token = CSRF_FIELD.search((await jane.get("/invoices")).text).group(1)
    response = await jane.post(
        f"/memberships/{acme}/card", data={"_csrf_token": token, "key": "k" * 22}
    )
    assert response.status_code == 404
    assert await card_of(acme) == before
    expired = await membership_id("M-JANE-SILVER")
    page = (await jane.get(f"/memberships/{expired}")).text
    assert "Update payment card" not in page
    response = await jane.post(
        f"/memberships/{expired}/card", data={"_csrf_token": token, "key": "k" * 22}
    )
    assert response.status_code == 422 and "has no card to bill" in response.text
    hidden = await membership_id("M-JANE-ELEC")  # suspended, not shown by the demo settings
    response = await jane.post(
        f"/memberships/{hidden}/card", data={"_csrf_token": token, "key": "x" * 22}
    )
    assert response.status_code == 404
    async with make_client(app) as other:
        await sign_in(other, JANE_EMAIL, "jane-demo-pass")
        assert (await other.get(f"/memberships/{acme}/card/1")).status_code == 404


async def test_no_card_number_is_stored_anywhere(jane, demo):
    mid = await membership_id("M-JANE-GOLD")
    started, _ = await start_update(jane, mid)
    await enter_card(jane, path_of(started.headers["location"]), GOOD_CARD)
    digits = GOOD_CARD.replace(" ", "")
    for table in t.TABLES:
        for row in await table.select().run():
            assert digits not in json.dumps(row, default=str), table._meta.tablename
