"""Issue 11.1 with real server processes: two `portal serve` processes share one database
(PostgreSQL when DATABASE_URL names it, else one SQLite file). The administrator relinks
the payment account on one process while Jane is on the card page of the other.

Whatever the order in which her card and the relink reach the database, the money the
card provider took is the money the portal recorded, Jane is never told "nothing was
charged" when she was, and a second attempt never charges her twice.

The sandbox gateway stands in for the card provider (a test double for a service outside
this machine); "paid at the provider, callback still on its way" is its checkout row
marked succeeded, and the callback's later delivery is posted signed, as the provider
would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import unescape

import httpx
import pytest

from portal.config import Settings
from portal.db.tables import Payment, SandboxCheckout, Tenant
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.payments import sandbox
from portal.testing import Server, start_servers, stop_server
from tests.paying import balances, future_expiry, new_invoice, path_of

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="key" value="([^"]+)"')
SERVER_SECRET = "e2e-secret-key-not-for-production"  # portal.testing.start_servers'


class Browser:
    """One person's browser on one server process (its own cookies)."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
            timeout=30,
        )

    async def get(self, url: str) -> httpx.Response:
        return await self.client.get(path_of(url))

    async def post(self, page: str, url: str, data: dict) -> httpx.Response:
        """Submit a form of `page` (its CSRF token) to `url`."""
        token = CSRF.search((await self.get(page)).text).group(1)
        return await self.client.post(path_of(url), data={"_csrf_token": token, **data})

    async def sign_in(self, path: str, email: str, password: str) -> None:
        answer = await self.post(path, path, {"email": email, "password": password})
        assert answer.status_code == 303, answer.text


@pytest.fixture(scope="module")
async def servers(app, database_url: str, tmp_path_factory) -> AsyncIterator[list[Server]]:
    started = start_servers(tmp_path_factory.mktemp("two"), 2, database_url)
    yield started
    for server in started:
        stop_server(server)


@pytest.fixture(scope="module")
async def people(servers) -> AsyncIterator[tuple[Browser, Browser]]:
    """The administrator on the first process, Jane on the second."""
    admin, jane = Browser(servers[0]), Browser(servers[1])
    await admin.sign_in("/office/sign-in", ADMIN_EMAIL, ADMIN_PASSWORD)
    await jane.sign_in("/sign-in", JANE_EMAIL, JANE_PASSWORD)
    yield admin, jane
    await admin.client.aclose()
    await jane.client.aclose()


async def demo_id() -> int:
    return (await Tenant.select(Tenant.id).where(Tenant.host == DEMO_HOST).first().run())["id"]


async def start_paying(jane: Browser, invoice: dict) -> tuple[str, str]:
    """Jane pays the invoice in full and is on the card page: its URL and form token."""
    page = (await jane.get("/invoices")).text
    started = await jane.post(
        "/invoices",
        "/invoices/pay",
        {"key": KEY.search(page).group(1), "invoice": str(invoice["id"]), "action": "full"},
    )
    assert started.status_code == 303, started.text
    card_page = await jane.get(started.headers["location"])
    assert card_page.status_code == 200
    return started.headers["location"], CSRF.search(card_page.text).group(1)


async def enter_card(jane: Browser, card_page: str, token: str) -> httpx.Response:
    """Jane fills the card form she has open and presses Pay."""
    return await jane.client.post(
        path_of(card_page),
        data={
            "_csrf_token": token,
            "number": "4242 4242 4242 4242",
            "expiry": future_expiry(),
            "cvc": "123",
            "name": "Jane Doe",
        },
    )


async def relink(admin: Browser, *, unlinked: bool = False) -> None:
    steps = [] if unlinked else [("/office/settings/payments/unlink", {})]
    steps += [
        ("/office/settings/payments/link", {}),
        ("/office/settings/payments_enabled", {"payments_enabled": "yes"}),
    ]
    for path, data in steps:
        answer = await admin.post("/office/settings", path, data)
        assert answer.status_code == 303, (path, answer.status_code, answer.text[:300])


async def charged_for(invoice: dict) -> int:
    """What the card provider took (and kept) for this invoice."""
    rows = (
        await SandboxCheckout.select(SandboxCheckout.amount_cents)
        .where(
            SandboxCheckout.description.like(f"%{invoice['number']}%")
            & (SandboxCheckout.status == "succeeded")
        )
        .run()
    )
    return sum(r["amount_cents"] for r in rows)


async def recorded_for(tenant_id: int, invoice: dict) -> int:
    """What the portal recorded as paid for it."""
    rows = await Payment.raw(
        """SELECT p.amount_cents FROM payment p JOIN payment_allocation pa ON pa.payment = p.id
        WHERE p.tenant = {} AND pa.invoice = {} AND p.status = 'succeeded'""",
        tenant_id,
        invoice["id"],
    ).run()
    return sum(r["amount_cents"] for r in rows)


async def second_attempt_charges_nothing_more(jane: Browser, invoice: dict) -> None:
    page = (await jane.get("/invoices")).text
    again = await jane.post(
        "/invoices",
        "/invoices/pay",
        {"key": KEY.search(page).group(1), "invoice": str(invoice["id"]), "action": "full"},
    )
    assert again.status_code == 422
    assert f"{invoice['number']} is already paid, so nothing was charged." in unescape(again.text)


async def test_paid_while_the_account_is_relinked_on_the_other_process(people, app):
    """Jane's card went through at the provider; its callback is still on its way when
    the administrator relinks on the other process; then it arrives."""
    admin, jane = people
    tenant_id = await demo_id()
    invoice = await new_invoice(tenant_id, total=24000)
    card_page, _ = await start_paying(jane, invoice)
    ref = card_page.rsplit("/", 1)[1]
    await (
        SandboxCheckout.update(
            {
                SandboxCheckout.status: "succeeded",
                SandboxCheckout.card_brand: "Visa",
                SandboxCheckout.card_last4: "4242",
                SandboxCheckout.completed_at: datetime.now(UTC),
            }
        )
        .where(SandboxCheckout.public_id == ref)
        .run()
    )
    await relink(admin)
    # The provider's callback, signed for the account the payment started on, reaches
    # Jane's process.
    row = await SandboxCheckout.select().where(SandboxCheckout.public_id == ref).first().run()
    body = sandbox.callback_body(row)
    secret = sandbox.callback_secret(
        Settings(database_url="", secret_key=SERVER_SECRET), row["account_id"]
    )
    callback = await jane.client.post(
        "/payments/callback",
        content=body,
        headers={
            "Sandbox-Signature": sandbox.sign(secret, body),
            "content-type": "application/json",
        },
    )
    assert callback.status_code == 200, callback.text
    back = await jane.get(row["return_url"])
    assert back.status_code == 200, back.headers.get("location")
    assert "Payment received" in unescape(back.text)
    assert "Nothing was charged" not in unescape(back.text)
    await second_attempt_charges_nothing_more(jane, invoice)
    assert await charged_for(invoice) == await recorded_for(tenant_id, invoice) == 24000
    assert await balances(tenant_id, invoice["number"]) == {invoice["number"]: 0}


@pytest.mark.parametrize("round_", range(3))
async def test_card_entered_as_the_account_is_unlinked_on_the_other_process(people, app, round_):
    """Jane presses Pay at the moment the administrator presses Unlink on the other
    process (real concurrent requests); then the administrator links a new account."""
    admin, jane = people
    tenant_id = await demo_id()
    total = 12345 + round_
    invoice = await new_invoice(tenant_id, total=total)
    card_page, card_token = await start_paying(jane, invoice)
    token = CSRF.search((await admin.get("/office/settings")).text).group(1)
    paid, unlinked = await asyncio.gather(
        enter_card(jane, card_page, card_token),
        admin.client.post("/office/settings/payments/unlink", data={"_csrf_token": token}),
    )
    assert unlinked.status_code == 303, unlinked.text
    await relink(admin, unlinked=True)
    charged = await charged_for(invoice)
    if paid.status_code == 303:  # her card went through first
        assert charged == total
        back = await jane.get(paid.headers["location"])
        assert back.status_code == 200, back.headers.get("location")
        assert "Payment received" in unescape(back.text)
        await second_attempt_charges_nothing_more(jane, invoice)
    else:  # the unlink closed her card page first: truly nothing was charged
        assert paid.status_code == 409, paid.text
        assert "This payment page is closed. Nothing was charged." in unescape(paid.text)
        assert charged == 0
        # Trying again pays once, on the new account.
        again = await enter_card(jane, *await start_paying(jane, invoice))
        assert again.status_code == 303
        assert "Payment received" in unescape((await jane.get(again.headers["location"])).text)
    assert await charged_for(invoice) == await recorded_for(tenant_id, invoice)
    assert await charged_for(invoice) == total
    assert await balances(tenant_id, invoice["number"]) == {invoice["number"]: 0}
