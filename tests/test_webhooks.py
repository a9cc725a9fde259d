"""Events out: the feed (`GET /api/v1/events?after=`) and Standard Webhooks deliveries to a
real HTTP receiver that verifies every one with the `standardwebhooks` package, sees each
event exactly once though it fails the first deliveries, and an endpoint that keeps failing
is turned off with its admins emailed — then turned on and retried from the office."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from portal.api.webhooks import deliver_due
from portal.db import events
from portal.db import tables as t
from tests.support.api import ADMIN_PASSWORD, api_client, empty_business, new_key, register
from tests.support.http import make_client, post_form, staff_sign_in

SECRET = re.compile(r'value="(whsec_[A-Za-z0-9+/=]+)"')


class Receiver:
    """A real HTTP server on loopback: answers the first `fail_first` requests 500, then
    verifies each request's signature and keeps what it was told."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests = 0
        self.secret = ""
        self.seen: list[tuple[str, dict]] = []  # (webhook-id, payload) of verified ones
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests += 1
                if receiver.requests <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.seen.append((self.headers["webhook-id"], payload))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(fail_first=3)
    yield made
    made.close()


@asynccontextmanager
async def office_of(app, host):
    async with make_client(app, f"http://{host}.localhost") as client:
        await staff_sign_in(client, f"boss@{host}.example", ADMIN_PASSWORD)
        yield client


async def add_endpoint(app, host: str, url: str) -> str:
    async with office_of(app, host) as office:
        page = await post_form(office, "/office/webhooks", {"url": url})
    assert page.status_code == 200, page.text
    return SECRET.search(page.text).group(1)


async def run_worker(settings, until, rounds: int = 200) -> None:
    """Run the webhook job the way the worker does, round after round, until `until()`."""
    for _ in range(rounds):
        await deliver_due(settings)
        if until():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never got there")


async def test_every_event_arrives_signed_and_exactly_once_despite_failures(
    app, settings, receiver
):
    tenant_id = await empty_business("hookco")
    receiver.secret = await add_endpoint(app, "hookco", receiver.url)
    fast = settings.with_(webhook_retry_seconds=(0.1, 0.1, 0.1, 0.1, 0.1))
    ids = [
        await events.emit(tenant_id, "payment.succeeded", {"payment_id": 1, "amount_cents": 500}),
        await events.emit(tenant_id, "card.updated", {"membership": "M1"}),
    ]
    # A real change emits too: a customer registering.
    await t.Customer.insert(t.Customer(tenant=tenant_id, external_id="C1", name="Pat")).run()
    customer = await t.Customer.select().where(t.Customer.tenant == tenant_id).first().run()
    await t.CustomerEmail.insert(
        t.CustomerEmail(tenant=tenant_id, customer=customer["id"], email="pat@hook.example")
    ).run()
    client = await register(app, settings, "hookco", "pat@hook.example", "a garden of tulips")
    await client.aclose()
    feed = await events.after(tenant_id)
    assert [e["type"] for e in feed] == ["payment.succeeded", "card.updated", "account.registered"]
    ids.append(feed[-1]["id"])

    await run_worker(fast, lambda: len(receiver.seen) >= len(ids))
    await asyncio.sleep(0.3)
    await deliver_due(fast)  # nothing more to send
    assert receiver.refused == 0
    assert receiver.requests == len(ids) + 3  # three failures, then one each
    seen_ids = [message_id for message_id, _ in receiver.seen]
    assert sorted(seen_ids) == sorted(f"evt_{i}" for i in ids)  # each exactly once
    by_type = {payload["type"]: payload for _, payload in receiver.seen}
    assert by_type["payment.succeeded"]["data"]["amount_cents"] == 500
    async with office_of(app, "hookco") as office:
        page = (await office.get("/office/webhooks")).text
    assert page.count("Delivered") >= len(ids) and "204" in page


async def test_a_failing_endpoint_is_turned_off_and_the_admin_emailed(app, settings):
    down = Receiver(fail_first=10**6)
    try:
        tenant_id = await empty_business("downco")
        down.secret = await add_endpoint(app, "downco", down.url)
        fast = settings.with_(webhook_retry_seconds=(0.05, 0.05))
        event_id = await events.emit(tenant_id, "booking.requested", {"booking_request_id": 9})
        endpoint = (
            await t.WebhookEndpoint.select()
            .where(t.WebhookEndpoint.tenant == tenant_id)
            .first()
            .run()
        )

        async def is_off() -> bool:
            row = (
                await t.WebhookEndpoint.select()
                .where(t.WebhookEndpoint.id == endpoint["id"])
                .first()
                .run()
            )
            return not row["enabled"]

        for _ in range(100):
            await deliver_due(fast)
            if await is_off():
                break
            await asyncio.sleep(0.05)
        assert await is_off()
        assert down.requests == 3  # the first try and two retries, then no more
        delivery = (
            await t.WebhookDelivery.select()
            .where(t.WebhookDelivery.event == event_id)
            .first()
            .run()
        )
        assert delivery["status"] == "failed" and delivery["response_code"] == 500
        mail = (
            await t.OutboxEmail.select().where(t.OutboxEmail.to_addr == "boss@downco.example").run()
        )
        assert [m["subject"] for m in mail] == ["Your webhook endpoint was turned off"]
        assert down.url in mail[0]["text_body"]
        async with office_of(app, "downco") as office:
            page = (await office.get("/office/webhooks")).text
            assert "Off: Turned off after 3 failed attempts" in page and "Failed" in page
            # The system is back: turn the endpoint on and retry the delivery.
            down.fail_first = 0
            on = await post_form(
                office, f"/office/webhooks/{endpoint['id']}/on", {}, csrf_page="/office/webhooks"
            )
            assert on.status_code == 303
            again = await post_form(
                office,
                f"/office/webhooks/deliveries/{delivery['id']}/retry",
                {},
                csrf_page="/office/webhooks",
            )
            assert again.status_code == 303
        await run_worker(fast, lambda: len(down.seen) == 1)
        assert down.seen[0][0] == f"evt_{event_id}"
    finally:
        down.close()


async def test_the_events_feed_pages_with_a_cursor_and_only_its_own_business(app):
    mine = await empty_business("feedco")
    theirs = await empty_business("feedother")
    made = [await events.emit(mine, "invoice.viewed", {"invoice": f"I{n}"}) for n in range(5)]
    await events.emit(theirs, "invoice.viewed", {"invoice": "NOT-YOURS"})
    async with api_client(app, "feedco", await new_key(mine, scope="read")) as api:
        first = (await api.get("/events", params={"limit": 3})).json()
        assert [e["id"] for e in first["data"]] == made[:3]
        rest = (await api.get("/events", params={"after": first["next_cursor"]})).json()
        assert [e["data"]["invoice"] for e in rest["data"]] == ["I3", "I4"]
        empty = (await api.get("/events", params={"after": rest["next_cursor"]})).json()
        assert empty == {"data": [], "next_cursor": rest["next_cursor"]}
        bad = await api.get("/events", params={"after": "yesterday"})
        assert bad.status_code in (400, 422)
        assert bad.headers["content-type"] == "application/problem+json"


async def test_only_admins_manage_webhooks_and_bad_addresses_are_refused(app, demo, office, admin):
    assert (await office.get("/office/webhooks")).status_code == 403
    refused = await post_form(admin, "/office/webhooks", {"url": "ftp://nope"})
    assert refused.status_code == 422 and "starting with https://" in refused.text
    assert not await t.WebhookEndpoint.exists().where(t.WebhookEndpoint.tenant == demo).run()


async def test_a_booking_request_and_its_dismissal_are_events(app, settings):
    from portal import appointments
    from portal.db import bookings
    from portal.db.queries import tenant_by_host

    tenant_id = await empty_business("bookco")
    await t.Customer.insert(t.Customer(tenant=tenant_id, external_id="C-77", name="Bo")).run()
    customer = await t.Customer.select().where(t.Customer.tenant == tenant_id).first().run()
    await t.Location.insert(
        t.Location(tenant=tenant_id, customer=customer["id"], external_id="L-77", street="7 Oak")
    ).run()
    location = await t.Location.select().where(t.Location.tenant == tenant_id).first().run()
    new = bookings.NewRequest(
        customer["id"], location, "bo@book.example", "Repair", [], "", "key-77"
    )
    request_id = await bookings.insert_request(tenant_id, new)
    tenant = await tenant_by_host("bookco")
    await appointments.dismiss(settings, tenant, request_id, "No slots", "boss@bookco.example")
    feed = await events.after(tenant_id)
    assert [(e["type"], e["data"]["customer"]) for e in feed] == [
        ("booking.requested", "C-77"),
        ("booking.dismissed", "C-77"),
    ]
    assert all(e["data"]["booking_request_id"] == request_id for e in feed)
