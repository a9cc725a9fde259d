"""Steps shared by the invoice and payment tests: the pay form, the sandbox card page,
and direct looks at the database (what a test checks, never what it fakes)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from portal.db.tables import (
    BusinessUnit,
    Customer,
    Invoice,
    InvoiceLine,
    Job,
    Location,
    Payment,
    SandboxCheckout,
)
from tests.support.http import CSRF_FIELD

KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')
GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"


def future_expiry() -> str:
    return f"12 / {(date.today().year + 3) % 100:02d}"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def pay_form(client: httpx.AsyncClient) -> tuple[str, str]:
    """(CSRF token, idempotency key) of the Invoices tab's pay form."""
    page = (await client.get("/invoices")).text
    key = KEY_FIELD.search(page)
    # No form when card payments are off: a hand-made request brings its own key.
    return CSRF_FIELD.search(page).group(1), key.group(1) if key else secrets.token_urlsafe(16)


async def submit_pay(
    client: httpx.AsyncClient,
    invoice_ids: list[int | str],
    *,
    action: str = "full",
    amount: str = "",
    key: str | None = None,
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Submit the pay form as a browser would (a fresh form unless `key` is given)."""
    token, fresh_key = await pay_form(client)
    data: dict[str, Any] = {
        "_csrf_token": csrf or token,
        "key": key or fresh_key,
        "invoice": [str(i) for i in invoice_ids],
        "action": action,
        "amount": amount,
    }
    return await client.post("/invoices/pay", data=data, headers=headers)


async def enter_card(
    client: httpx.AsyncClient,
    checkout_url: str,
    number: str = GOOD_CARD,
    *,
    expiry: str | None = None,
    cvc: str = "123",
) -> httpx.Response:
    """Fill the sandbox's hosted card page and submit it."""
    page = await client.get(checkout_url)
    assert page.status_code == 200, page.text
    found = CSRF_FIELD.search(page.text)
    # A closed card page has no form; a determined client still posts to it.
    token = found.group(1) if found else (await pay_form(client))[0]
    return await client.post(
        checkout_url,
        data={
            "_csrf_token": token,
            "number": number,
            "expiry": expiry or future_expiry(),
            "cvc": cvc,
            "name": "Jane Doe",
        },
    )


async def pay(
    client: httpx.AsyncClient,
    invoice_ids: list[int],
    *,
    action: str = "full",
    amount: str = "",
    card: str = GOOD_CARD,
) -> httpx.Response:
    """The whole round trip: pay form -> card page -> back to the portal (its response)."""
    started = await submit_pay(client, invoice_ids, action=action, amount=amount)
    assert started.status_code == 303, started.text
    done = await enter_card(client, started.headers["location"], card)
    assert done.status_code == 303, done.text
    return await client.get(path_of(done.headers["location"]))


async def invoice_ids(tenant_id: int, *numbers: str) -> list[int]:
    rows = (
        await Invoice.select(Invoice.id, Invoice.number)
        .where((Invoice.tenant == tenant_id) & Invoice.number.is_in(list(numbers)))
        .run()
    )
    by_number = {r["number"]: r["id"] for r in rows}
    return [by_number[n] for n in numbers]


async def balances(tenant_id: int, *numbers: str) -> dict[str, int]:
    rows = (
        await Invoice.select(Invoice.number, Invoice.balance_cents)
        .where((Invoice.tenant == tenant_id) & Invoice.number.is_in(list(numbers)))
        .run()
    )
    return {r["number"]: r["balance_cents"] for r in rows}


async def portal_payments(tenant_id: int) -> list[dict[str, Any]]:
    """Payments made through the portal (not imported), oldest first."""
    return (
        await Payment.select()
        .where((Payment.tenant == tenant_id) & (Payment.source == "portal"))
        .order_by(Payment.id)
        .run()
    )


async def checkout_count() -> int:
    return await SandboxCheckout.count().run()


_counter = iter(range(1, 10**6))


async def new_invoice(
    tenant_id: int,
    customer: str = "C-1001",
    *,
    total: int = 25000,
    balance: int | None = None,
    job_status: str = "completed",
    unit: str = "Plumbing",
    days_ago: int = 5,
    location: str | None = None,
) -> dict[str, Any]:
    """Add a job with a one-line invoice for a customer of the business (test data).
    Returns {"id", "number"}."""
    n = next(_counter)
    cust = (
        await Customer.select(Customer.id)
        .where((Customer.tenant == tenant_id) & (Customer.external_id == customer))
        .first()
        .run()
    )
    loc_where = (Location.tenant == tenant_id) & (Location.customer == cust["id"])
    if location:
        loc_where &= Location.external_id == location
    loc = await Location.select(Location.id).where(loc_where).order_by(Location.id).first().run()
    bu = (
        await BusinessUnit.select(BusinessUnit.id)
        .where((BusinessUnit.tenant == tenant_id) & (BusinessUnit.name == unit))
        .first()
        .run()
    )
    day = date.today() - timedelta(days=days_ago)
    job = await Job.insert(
        Job(
            tenant=tenant_id,
            customer=cust["id"],
            location=loc["id"],
            business_unit=bu["id"],
            number=f"TJ-{tenant_id}-{n}",
            summary=f"Test job {n}",
            status=job_status,
            completed_at=datetime.now(UTC) if job_status == "completed" else None,
        )
    ).run()
    number = f"TINV-{tenant_id}-{n}"
    inv = await Invoice.insert(
        Invoice(
            tenant=tenant_id,
            customer=cust["id"],
            job=job[0]["id"],
            location=loc["id"],
            business_unit=bu["id"],
            number=number,
            invoice_date=day,
            summary=f"Test job {n}",
            total_cents=total,
            balance_cents=total if balance is None else balance,
        )
    ).run()
    await InvoiceLine.insert(
        InvoiceLine(
            tenant=tenant_id,
            invoice=inv[0]["id"],
            description=f"Test work {n}",
            quantity=1,
            unit_price_cents=total,
            amount_cents=total,
        )
    ).run()
    return {"id": inv[0]["id"], "number": number}
