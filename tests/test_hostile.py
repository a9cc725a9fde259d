"""Hostile input on every form: property-based (hypothesis), deterministic and modest.

Over-long text, Unicode, control characters and NUL bytes, HTML/script payloads, SQL
metacharacters, negative and huge amounts, malformed dates, repeated and missing
fields. Each answer is a 4xx with a message (or an accepted, valid change), never a
5xx; a refused form stores nothing (every table compared before and after); and any
text that was stored renders escaped.

The per-form example count is `HOSTILE_EXAMPLES` (default 12): the suite runs on two
cores, twice (SQLite and PostgreSQL). `derandomize=True` keeps every run the same.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from portal import settings_form as rules
from portal.auth import links
from portal.auth.account_requests import answer_pending
from portal.auth.policy import password_problem
from portal.db import tables as t
from tests.support.http import CSRF_FIELD, make_client, post, token_of
from tests.support.world import (
    PASSWORD,
    World,
    app_routes,
    concrete,
    get_routes,
    requester,
    snapshot,
)

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "12"))
FUZZ = hsettings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

PAYLOADS = [
    "<script>alert('pwned')</script>",
    '"><img src=x onerror=alert(1)>',
    "</textarea><svg onload=alert(1)>",
    "'; DROP TABLE customer; --",
    "1' OR '1'='1",
    "Robert'); DELETE FROM invoice; --",
    "\x00",
    "a\x00b",
    "\x07\x08\x1b[31m",
    "\u202eevil\u202c",
    "Ünïcödé 名前 😀 ﷽",
    "𝕏" * 70,
    "\r\n\r\nSet-Cookie: x=y",
    "{{ 7*7 }}{% raw %}",
    "{CustomerPortalLink}{Nope}{",
    "%00%0a%3Cscript%3E",
    "../../etc/passwd",
    "-1",
    "-99999999999",
    "1e309",
    "NaN",
    "Infinity",
    "0x10",
    "99999999999999999999",
    "9" * 40,
    "",
    " ",
    "\t\n",
    "null",
    "2026-02-30",
    "0000-00-00",
    "9999-12-31",
    "12/31/99999",
    "١٢٣",
    "＄１０",
    "$-5.00",
    "1,00,0.001",
]

hostile = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=8),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["A", "<b>", "é", "\x00", "😀", "' OR 1=1 --"]),
        st.integers(min_value=300, max_value=7000),
    ),
)
TAG = re.compile(r"<[a-zA-Z/!]")
SCRIPTS = re.compile(r"<script\b.*?</script>", re.I | re.S)  # code, not what a person reads
# What only a message a person can read contains: a field's error, a form's alert, or the
# heading of an error page. Never layout text: every page has links, labels and buttons
# (test_the_message_check_fails_on_a_page_without_a_message).
MESSAGE_MARKS = (
    'class="error"',
    'role="alert"',
    "<h1>Page not found</h1>",
    "<h1>Please try again</h1>",
    "<h1>Something was wrong with that request</h1>",
    "This link has expired",
    "This link was already used",
    "This link doesn't work",
)
# Bookkeeping of an attempt, not data the sender chose: a failed sign-in is counted, a
# card page counts its tries.
BOOKKEEPING = {"throttle_count"}


def flat(values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for value in values.values():
        out += value if isinstance(value, list) else [value]
    return [v for v in out if isinstance(v, str)]


def changes(before: dict, after: dict, ignore: set[str] = frozenset()) -> list[str]:
    return [
        name for name in before if name not in ignore | BOOKKEEPING and before[name] != after[name]
    ]


def assert_escaped(response: httpx.Response, sent: dict[str, Any]) -> None:
    """No markup we were sent comes back as markup (outside our own scripts' text, which
    no request can change)."""
    shown = SCRIPTS.sub("", response.text)
    for value in flat(sent):
        if TAG.search(value) and len(value) >= 8:
            assert value not in shown, f"unescaped: {value[:60]!r}"


def assert_clean_refusal(response: httpx.Response, what: str) -> None:
    """A 4xx with something a person can read; never a stack trace."""
    assert 400 <= response.status_code < 500, (what, response.status_code)
    assert "Traceback" not in response.text
    shown = SCRIPTS.sub("", response.text)  # the signed-out pages carry their scripts
    assert any(mark in shown for mark in MESSAGE_MARKS), (
        f"{what}: {response.status_code} without a message: {response.text[:300]}"
    )


async def clear_throttle() -> None:
    await t.ThrottleCount.delete().where(t.ThrottleCount.id > 0).run()


async def expect(
    response: httpx.Response,
    before: dict,
    sent: dict[str, Any],
    what: str,
    *,
    ok: tuple[int, ...] = (200, 303),
    may_change: set[str] = frozenset(),
) -> bool:
    """Check an answer to a hostile form; returns True when the form was accepted."""
    assert response.status_code < 500, f"{what}: {response.status_code} for {sent}"
    assert_escaped(response, sent)
    if response.status_code in ok:
        return True
    assert_clean_refusal(response, what)
    changed = changes(before, await snapshot(), may_change)
    assert not changed, f"{what}: refused ({response.status_code}) but changed {changed}"
    return False


@pytest.fixture(scope="module")
async def anonymous(app, world) -> httpx.AsyncClient:
    async with make_client(app, f"http://{world.a.host}.localhost") as client:
        yield client


async def test_the_message_check_fails_on_a_page_without_a_message(anonymous):
    """`assert_clean_refusal` passes a refusal for its message, not for being a page: the
    sign-in page as served (links, labels, buttons) answered with a 422 but no message fails
    it; the same page after a refused sign-in passes it."""
    page = await anonymous.get("/sign-in")
    assert page.status_code == 200
    with pytest.raises(AssertionError, match="without a message"):
        assert_clean_refusal(httpx.Response(422, text=page.text), "sign-in page")
    await clear_throttle()
    refused = await post(anonymous, "/sign-in", {"email": "nobody@example.org", "password": "x"})
    assert_clean_refusal(refused, "sign-in with a wrong password")


# --- customer forms ------------------------------------------------------------------------------


@FUZZ
@given(email=hostile, password=hostile, next_=hostile)
async def test_sign_in(anonymous, world, email, password, next_):
    await clear_throttle()
    before = await snapshot()
    sent = {"email": email, "password": password, "next": next_}
    r = await post(anonymous, "/sign-in", sent)
    assert not await expect(r, before, sent, "sign-in", ok=())


@FUZZ
@given(email=hostile, path=st.sampled_from(["/invite", "/forgot"]))
async def test_invite_and_forgot(anonymous, world, settings, email, path):
    await clear_throttle()
    before = await snapshot()
    r = await post(anonymous, path, {"email": email})
    if await expect(r, before, {"email": email}, path, ok=(200,), may_change={"account_request"}):
        # The one answer whatever the email; once the worker has answered the request,
        # nothing is stored for an address not on record.
        assert "If this email is on your account" in r.text
        await answer_pending(settings)
        assert not changes(before, await snapshot())


@FUZZ
@given(token=hostile, password=hostile, path=st.sampled_from(["/confirm", "/reset"]))
async def test_confirm_and_reset_with_hostile_tokens(anonymous, world, token, password, path):
    before = await snapshot()
    r = await anonymous.get(path, params={"token": token})
    assert r.status_code in (404, 410), (path, r.status_code)
    sent = {"token": token, "password": password}
    r = await post(anonymous, path, sent)
    assert not await expect(r, before, sent, path, ok=())


async def _confirm_token(app, settings, world: World) -> str:
    """A live confirmation link for a customer email with no account yet."""
    from portal.db import queries

    tenant = await queries.tenant_by_host(world.a.host)
    email = "fresh-contact@alphaplumb.example"
    customer = world.customer("A1")
    if not await t.CustomerEmail.exists().where(t.CustomerEmail.email == email).run():
        await t.CustomerEmail.insert(
            t.CustomerEmail(tenant=tenant["id"], customer=customer.id, email=email)
        ).run()
    await t.PortalAccount.delete().where(t.PortalAccount.email == email).run()
    assert await links.request_invitation(settings, tenant, email)
    row = (
        await t.OutboxEmail.select(t.OutboxEmail.text_body)
        .where(t.OutboxEmail.to_addr == email)
        .order_by(t.OutboxEmail.id, ascending=False)
        .first()
        .run()
    )
    return re.search(r"token=([A-Za-z0-9_\-]+)", row["text_body"]).group(1)


@FUZZ
@given(password=hostile)
async def test_create_password_with_a_live_link(app, settings, world, password):
    token = await _confirm_token(app, settings, world)
    async with make_client(app, f"http://{world.a.host}.localhost") as browser:
        before = await snapshot()
        sent = {"token": token, "password": password}
        r = await post(browser, "/confirm", sent)
        accepted = await expect(r, before, sent, "/confirm")
        problem = password_problem(
            password.replace("\x00", ""), business_name=world.a.name, email="x"
        )
        if accepted:
            assert r.headers["location"] == "/invoices"
        else:
            assert problem or r.status_code == 422


_passwords = {"current": PASSWORD}


@FUZZ
@given(current=st.one_of(st.just("<right>"), hostile), new=hostile)
async def test_change_password(world, current, new):
    client = world.customer("A2").client
    await clear_throttle()
    before = await snapshot()
    sent = {
        "current_password": _passwords["current"] if current == "<right>" else current,
        "new_password": new,
    }
    r = await post(client, "/account/password", sent)
    if await expect(r, before, sent, "change password", may_change={"session"}):
        _passwords["current"] = new  # accepted: a strong enough password
        assert r.headers["location"] == "/account?done=password"


@FUZZ
@given(customer=hostile, next_=hostile)
async def test_switch_customer(world, customer, next_):
    client = world.customer("A1").client
    before = await snapshot()
    r = await post(client, "/account/customer", {"customer": customer, "next": next_})
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location
    assert not any(ord(ch) < 32 for ch in location)
    assert not changes(before, await snapshot())


@FUZZ
@given(
    amount=hostile,
    action=st.one_of(st.sampled_from(["full", "partial"]), hostile),
    invoices=st.lists(st.one_of(st.just("<mine>"), hostile), max_size=3),
)
async def test_pay_form(world, amount, action, invoices):
    me = world.customer("A1")
    ids = [str(me.invoice_ids[1]) if i == "<mine>" else i for i in invoices]
    sent = {"invoice": ids, "action": action, "amount": amount, "key": os.urandom(12).hex()}
    before = await snapshot()
    r = await post(me.client, "/invoices/pay", sent)
    if await expect(r, before, sent, "pay", ok=(303,)):
        # Accepted: one pending payment for a valid amount of my own invoice.
        payment = (
            await t.Payment.select().where(t.Payment.idempotency_key == sent["key"]).first().run()
        )
        assert payment["customer"] == me.id and payment["status"] == "pending"
        balance = (
            await t.Invoice.select(t.Invoice.balance_cents)
            .where(t.Invoice.id == me.invoice_ids[1])
            .first()
            .run()
        )["balance_cents"]
        assert 100 <= payment["amount_cents"] <= balance


@pytest.fixture(scope="module")
async def card_page(world) -> dict[str, str]:
    """An open card page of customer A1 (a payment of $5 on their second invoice)."""
    me = world.customer("A1")
    r = await post(
        me.client,
        "/invoices/pay",
        {
            "invoice": [str(me.invoice_ids[1])],
            "action": "partial",
            "amount": "5",
            "key": "hostile-card-page-key",
        },
    )
    assert r.status_code == 303, r.text
    return {"path": "/" + r.headers["location"].split("/", 3)[3]}


@FUZZ
@given(number=hostile, expiry=hostile, cvc=hostile, name=hostile)
async def test_card_page(world, card_page, number, expiry, cvc, name):
    client = world.customer("A1").client
    row_before = (
        await t.SandboxCheckout.select()
        .where(t.SandboxCheckout.public_id == card_page["path"].rsplit("/", 1)[1])
        .first()
        .run()
    )
    if row_before["status"] != "open" or row_before["attempts"] > 15:
        await (
            t.SandboxCheckout.update({t.SandboxCheckout.attempts: 0})
            .where(t.SandboxCheckout.id == row_before["id"])
            .run()
        )
    before = await snapshot()
    sent = {"number": number, "expiry": expiry, "cvc": cvc, "name": name}
    r = await post(client, card_page["path"], sent)
    # Random input is never a good test card: refused, only the try is counted.
    assert not await expect(r, before, sent, "card page", ok=(), may_change={"sandbox_checkout"})
    row = (
        await t.SandboxCheckout.select()
        .where(t.SandboxCheckout.id == row_before["id"])
        .first()
        .run()
    )
    assert row["status"] == "open" and not row["card_last4"]


@FUZZ
@given(key=hostile)
async def test_card_update_form(world, key):
    me = world.customer("A1")
    before = await snapshot()
    sent = {"key": key}
    r = await post(me.client, f"/memberships/{me.membership_id}/card", sent)
    if await expect(r, before, sent, "card update", ok=(303,)):
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", key)


@FUZZ
@given(
    location=st.one_of(st.just("<mine>"), hostile),
    service=st.one_of(st.sampled_from(["Repair", "Other"]), hostile),
    day=st.one_of(st.just("<soon>"), hostile),
    window=st.one_of(st.sampled_from(["any", "morning"]), hostile),
    notes=hostile,
    repeat=st.booleans(),
)
async def test_appointment_request(world, location, service, day, window, notes, repeat):
    me = world.customer("A2")
    sent: dict[str, Any] = {
        "location": str(me.location_id) if location == "<mine>" else location,
        "service_type": service,
        "date_1": (date.today() + timedelta(days=2)).isoformat() if day == "<soon>" else day,
        "window_1": window,
        "notes": notes,
        "request_key": os.urandom(12).hex(),
    }
    if repeat:  # every field twice, the second value different
        sent = {k: [v, "x" + v] for k, v in sent.items()}
    before = await snapshot()
    r = await post(me.client, "/schedule", sent)
    if await expect(r, before, sent, "appointment request", ok=(303,)):
        key = sent["request_key"][0] if repeat else sent["request_key"]
        row = (
            await t.BookingRequest.select()
            .where(t.BookingRequest.idempotency_key == key)
            .first()
            .run()
        )
        assert row is not None and "\x00" not in row["notes"] and len(row["notes"]) <= 1000
        page = await me.client.get("/schedule")
        assert_escaped(page, {"notes": row["notes"], "service": row["service_type"]})


# --- office forms --------------------------------------------------------------------------------


@FUZZ
@given(email=hostile, password=hostile, next_=hostile)
async def test_office_sign_in(app, world, email, password, next_):
    await clear_throttle()
    async with make_client(app, f"http://{world.a.host}.localhost") as browser:
        page = await browser.get("/office/sign-in")
        token = CSRF_FIELD.search(page.text).group(1)
        before = await snapshot()
        sent = {"email": email, "password": password, "next": next_}
        r = await browser.post("/office/sign-in", data={"_csrf_token": token, **sent})
        assert not await expect(r, before, sent, "office sign-in", ok=())


@pytest.fixture(scope="module")
async def saved_tenant_b(world):
    """Business B's settings as imported (each settings example puts them back)."""
    return await t.Tenant.select().where(t.Tenant.id == world.b.id).first().run()


async def restore_tenant(row: dict[str, Any]) -> None:
    keep = {getattr(t.Tenant, k): v for k, v in row.items() if k != "id"}
    await t.Tenant.update(keep).where(t.Tenant.id == row["id"]).run()


SETTING_KEYS = [k for k in rules.SETTINGS if k != "host"]


@FUZZ
@given(key=st.sampled_from(SETTING_KEYS), value=hostile, values=st.lists(hostile, max_size=3))
async def test_each_office_setting(world, saved_tenant_b, key, value, values):
    admin = world.b.admin
    sent: dict[str, Any] = {
        key: values if key in ("membership_statuses", "downloadable_units") else value
    }
    before = await snapshot()
    r = await post(admin, f"/office/settings/{key}", sent, headers={"HX-Request": "true"})
    try:
        await _check_setting(world, r, before, sent, key)
    finally:
        await restore_tenant(saved_tenant_b)


async def _check_setting(world, r, before, sent, key) -> None:
    if await expect(r, before, sent, f"setting {key}"):
        row = await t.Tenant.select().where(t.Tenant.id == world.b.id).first().run()
        if key in ("name", "phone", "email"):
            assert "\x00" not in row[key] and len(row[key]) <= 254
            assert not any(ord(ch) < 32 for ch in row[key])
        if key == "name":  # the name shows in every page's header: escaped
            page = await world.customer("B1").client.get("/invoices")
            assert_escaped(page, {"name": row["name"]})


@FUZZ
@given(host=hostile)
async def test_host_setting(world, host):
    """Hostile host names are refused (a valid one would move the portal: not fuzzed)."""
    if rules.clean_host(host.replace("\x00", ""))[1] is None:
        host = "<" + host  # a valid name would move the portal
    admin = world.b.admin
    before = await snapshot()
    r = await post(admin, "/office/settings/host", {"host": host}, headers={"HX-Request": "true"})
    assert not await expect(r, before, {"host": host}, "host", ok=())


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(list(rules.SETTINGS)), hostile, max_size=6))
async def test_whole_settings_form(world, saved_tenant_b, fields):
    if rules.clean_host(fields.get("host", "").replace("\x00", ""))[1] is None:
        fields["host"] = "<b>not a host</b>"
    admin = world.b.admin
    before = await snapshot()
    r = await post(admin, "/office/settings", fields)
    try:
        await expect(r, before, fields, "settings form")
    finally:
        await restore_tenant(saved_tenant_b)


async def _new_booking(world) -> int:
    """A fresh appointment request from customer B1 (through the app)."""
    me = world.customer("B1")
    r = await post(
        me.client,
        "/schedule",
        {
            "location": str(me.location_id),
            "service_type": "Repair",
            "date_1": (date.today() + timedelta(days=6)).isoformat(),
            "window_1": "any",
            "notes": "",
            "request_key": os.urandom(12).hex(),
        },
    )
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("=", 1)[1])


_booking: dict[str, int] = {}


@FUZZ
@given(
    day=st.one_of(st.just("<soon>"), hostile),
    window=hostile,
    unit=st.one_of(st.just("<unit>"), hostile),
    summary=hostile,
    reason=hostile,
    action=st.sampled_from(["book", "dismiss"]),
)
async def test_book_and_dismiss(world, day, window, unit, summary, reason, action):
    if "id" not in _booking:
        _booking["id"] = await _new_booking(world)
    unit_row = (
        await t.BusinessUnit.select(t.BusinessUnit.id)
        .where(t.BusinessUnit.tenant == world.b.id)
        .first()
        .run()
    )
    sent = (
        {
            "date": (date.today() + timedelta(days=3)).isoformat() if day == "<soon>" else day,
            "window": window,
            "business_unit": str(unit_row["id"]) if unit == "<unit>" else unit,
            "summary": summary,
        }
        if action == "book"
        else {"reason": reason}
    )
    before = await snapshot()
    r = await post(world.b.office, f"/office/bookings/{_booking['id']}/{action}", sent)
    if await expect(r, before, sent, action, ok=(303,)):
        row = (
            await t.BookingRequest.select()
            .where(t.BookingRequest.id == _booking.pop("id"))
            .first()
            .run()
        )
        assert "\x00" not in (row["dismiss_reason"] or "")
        page = await world.b.office.get(f"/office/bookings/{row['id']}")
        assert_escaped(page, sent)


@FUZZ
@given(
    key=st.sampled_from(["invoice_email", "booking_received", "booking_confirmed", "nope"]),
    subject=hostile,
    body=hostile,
    preview=st.booleans(),
)
async def test_notification_templates(world, key, subject, body, preview):
    before = await snapshot()
    sent = {"subject": subject, "body": body}
    path = f"/office/notifications/{key}" + ("/preview" if preview else "")
    r = await post(world.b.admin, path, sent)
    ok = (200,) if preview else (303,)
    if await expect(r, before, sent, path, ok=ok) and not preview:
        page = await world.b.admin.get(f"/office/notifications/{key}")
        assert page.status_code == 200
        assert_escaped(page, sent)


@FUZZ
@given(email=hostile, action=st.sampled_from(["emails", "invite", "email-invoice"]))
async def test_customer_emails_and_invites(world, email, action):
    me = world.customer("B2")
    path = {
        "emails": f"/office/customers/{me.id}/emails",
        "invite": f"/office/customers/{me.id}/invite",
        "email-invoice": f"/office/customers/{me.id}/invoices/{me.invoice_ids[0]}/email",
    }[action]
    field = "to" if action == "email-invoice" else "email"
    sent = {field: email}
    before = await snapshot()
    r = await post(world.b.office, path, sent)
    if await expect(r, before, sent, action, ok=(303,)):
        assert action == "emails"  # hostile text is never one of the customer's emails
        row = await t.CustomerEmail.select().where(t.CustomerEmail.customer == me.id).run()
        assert all("@" in e["email"] and "<" not in e["email"] for e in row)


# --- a fixed sweep: the nastiest values in every field of every form ----------------------------

NASTY = [
    "a\x00b",
    "\x00",
    "<script>alert('pwned')</script>",
    "' OR 1=1; DROP TABLE invoice; --",
    "x" * 10_000,
    "\x01\x02\x1b[0m",
    "😀" * 300,
    "-99999999999",
    "99999999999999999999",
    "2026-13-45",
    "\u202eevil",
]


def no_nul_stored(snap: dict[str, list[tuple]]) -> list[str]:
    """Tables holding a NUL byte anywhere (PostgreSQL cannot store one; nobody types one)."""
    return [name for name, rows in snap.items() if "\\x00" in repr(rows)]


@pytest.fixture(scope="module")
async def forms(world) -> list[dict[str, Any]]:
    """Every form: who sends it, where, a valid filling, and the fields to spoil."""
    a1, a2, b2 = world.customer("A1"), world.customer("A2"), world.customer("B2")
    soon = (date.today() + timedelta(days=3)).isoformat()
    unit = (
        await t.BusinessUnit.select(t.BusinessUnit.id)
        .where(t.BusinessUnit.tenant == world.b.id)
        .first()
        .run()
    )["id"]
    out = [
        ("anon", "/sign-in", {"email": a1.email, "password": "wrong-password-1", "next": "/"}),
        ("anon", "/invite", {"email": "someone@example.org"}),
        ("anon", "/forgot", {"email": "someone@example.org"}),
        ("anon", "/confirm", {"token": "x" * 40, "password": "a long enough password"}),
        ("anon", "/reset", {"token": "x" * 40, "password": "a long enough password"}),
        (
            "anon",
            "/office/sign-in",
            {"email": "boss@x.example", "password": "nope-nope", "next": ""},
        ),
        (a2, "/account/password", {"current_password": "wrong", "new_password": "n3w-pass-phrase"}),
        (a1, "/account/customer", {"customer": str(a1.id), "next": "/invoices"}),
        (
            a1,
            "/invoices/pay",
            {"invoice": str(a1.invoice_ids[1]), "action": "partial", "amount": "3", "key": "<key>"},
        ),
        (a1, f"/memberships/{a1.membership_id}/card", {"key": "<key>"}),
        (
            a2,
            "/schedule",
            {
                "location": str(a2.location_id),
                "service_type": "Repair",
                "date_1": soon,
                "window_1": "any",
                "date_2": "",
                "window_2": "any",
                "notes": "ring twice",
                "request_key": "<key>",
            },
        ),
        ("admin", "/office/settings", {"name": world.b.name, "phone": "(555) 010-2000"}),
        *[("admin", f"/office/settings/{key}", {key: "x"}) for key in SETTING_KEYS],
        (
            "office",
            "/office/bookings/<booking>/book",
            {"date": soon, "window": "morning", "business_unit": str(unit), "summary": "Fix"},
        ),
        ("office", "/office/bookings/<booking>/dismiss", {"reason": "Duplicate"}),
        (
            "admin",
            "/office/notifications/invoice",
            {"subject": "Hi", "body": "{CustomerPortalLink}"},
        ),
        (
            "admin",
            "/office/notifications/invoice_email/preview",
            {"subject": "Hi", "body": "Hello"},
        ),
        ("office", f"/office/customers/{b2.id}/emails", {"email": "extra@example.org"}),
        ("office", f"/office/customers/{b2.id}/invite", {"email": b2.email}),
        (
            "office",
            f"/office/customers/{b2.id}/invoices/{b2.invoice_ids[0]}/email",
            {"to": b2.email},
        ),
    ]
    return [{"who": w, "path": p, "form": f} for w, p, f in out]


async def _client_for(world, app, who) -> httpx.AsyncClient:
    if who == "anon":
        return make_client(app, f"http://{world.a.host}.localhost")
    if who in ("admin", "office"):
        return getattr(world.b, who)
    return who.client


async def test_nasty_values_in_every_field_of_every_form(app, world, forms, saved_tenant_b):
    """Each of NASTY in each field of each form (the others valid): never a 5xx, a refusal
    changes nothing, nothing stored holds a NUL byte, stored markup renders escaped."""
    anonymous = make_client(app, f"http://{world.a.host}.localhost")
    try:
        for spec in forms:
            client = (
                anonymous if spec["who"] == "anon" else await _client_for(world, app, spec["who"])
            )
            for field in spec["form"]:
                for value in NASTY:
                    await clear_throttle()
                    path = spec["path"]
                    if "<booking>" in path:
                        if "id" not in _booking:
                            _booking["id"] = await _new_booking(world)
                        path = path.replace("<booking>", str(_booking["id"]))
                    form = {
                        k: (os.urandom(12).hex() if v == "<key>" else v)
                        for k, v in spec["form"].items()
                    }
                    form[field] = value
                    before = await snapshot()
                    r = await post(client, path, form)
                    what = f"{path} {field}={value[:20]!r}"
                    try:
                        accepted = await expect(r, before, form, what, ok=(200, 303))
                        after = await snapshot()
                        assert not no_nul_stored(after), f"{what}: stored a NUL byte"
                        if accepted and "<booking>" in spec["path"] and changes(before, after):
                            _booking.pop("id", None)
                    finally:
                        await restore_tenant(saved_tenant_b)
    finally:
        await anonymous.aclose()


# --- GET and HEAD never change anything; hostile query strings never break a page ---------------

QUERY_PARAMS = {
    "/sign-in": ["next", "done"],
    "/office/sign-in": ["next", "done"],
    "/confirm": ["token"],
    "/reset": ["token"],
    "/account": ["done"],
    "/invoices": ["select", "retry"],
    "/history": ["location", "older", "newer"],
    "/memberships/{membership_id:str}": ["earlier", "card"],
    "/schedule": ["before", "requested"],
    "/office/settings": ["saved"],
    "/office/customers": ["q", "after"],
    "/office/customers/{customer_id:int}": ["after", "done"],
    "/office/bookings": ["status", "after", "done", "job"],
    "/office/notifications/{key:str}": ["done"],
}


async def test_get_and_head_never_change_the_database(app, world, anonymous):
    """Every GET route of the route table, as GET and as HEAD, by each kind of visitor.

    The one allowed exception: a GET that finds a pending payment (or card update) that
    ended at the gateway settles it (a lost callback must not leave a paid invoice unpaid:
    tests/test_payments.py::test_lost_callback_is_made_good_when_the_invoices_tab_is_opened).
    Here every pending checkout is still open, so nothing may change at all.

    The other: a customer's first look at an invoice is recorded once, for the office's
    audit trail ("viewed by the customer", tests/test_stripe_money.py); each client looks
    once before the check, so every GET and HEAD checked here must change nothing.
    """
    routes = get_routes(app)
    assert len(routes) >= 30
    for route in routes:
        path = concrete(route, world, app)
        for client in requester(world, anonymous, route):
            if route == "/invoices/{invoice_id:int}":
                await client.get(path)  # the first view, recorded once
            for method in ("GET", "HEAD"):
                before = await snapshot()
                r = await client.request(method, path)
                # /readyz is rightly "not ready" here: these settings expect a separate
                # `portal worker` (PORTAL_MAIL_WORKER=0) and none runs.
                not_ready = path == "/readyz" and r.status_code == 503
                assert r.status_code < 500 or not_ready, (method, path, r.status_code)
                changed = changes(before, await snapshot())
                assert not changed, f"{method} {path} changed {changed}"


@FUZZ
@given(
    route=st.sampled_from(sorted(QUERY_PARAMS)),
    which=st.integers(min_value=0, max_value=3),
    value=hostile,
)
async def test_hostile_query_strings(app, world, anonymous, route, which, value):
    params = QUERY_PARAMS[route]
    name = params[which % len(params)]
    path = concrete(route, world, app)
    # An HTTP client sends at most ~64 KB of query string (httpx refuses more; servers cap
    # the request line too): halve a long text until it fits, percent-encoded.
    while len(quote(value)) > 60_000:
        value = value[: len(value) // 2]
    for client in requester(world, anonymous, route)[:1]:
        before = await snapshot()
        r = await client.get(path, params={name: value})
        assert r.status_code < 500, (path, name, value, r.status_code)
        assert_escaped(r, {name: value})
        assert not changes(before, await snapshot())


async def test_nasty_query_strings_on_every_page(app, world, anonymous):
    for route, params in QUERY_PARAMS.items():
        path = concrete(route, world, app)
        client = requester(world, anonymous, route)[0]
        for name in params:
            for value in NASTY:
                r = await client.get(path, params={name: value})
                assert r.status_code < 500, (path, name, value[:20], r.status_code)
                assert_escaped(r, {name: value})


# --- uploads (more in tests/test_office_settings.py::test_bad_logo_files_get_a_clear_error...) ---


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1000, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (80, 40)).save(buf, format="JPEG")
    return buf.getvalue()


UPLOADS = [
    ("svg with script", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "logo.svg", "image/svg+xml"),
    ("html as png", b"<html><script>alert(1)</script></html>", "logo.png", "text/html"),
    ("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "logo.pdf", "application/pdf"),
    ("bomb header", _png_claiming(100_000, 100_000), "bomb.png", "image/png"),
    ("too many pixels", _png_claiming(9_000, 9_000), "big.png", "image/png"),
    ("jpeg named png", _jpeg(), "logo.png", "image/png"),
    ("png named webp", _png(60, 30), "logo.webp", "image/webp"),
    ("zero pixels wide", _png_claiming(0, 50), "zero.png", "image/png"),
    ("oversized", _png(20, 20) + b"\x00" * (2 * 1024 * 1024), "huge.png", "image/png"),
]  # fmt: skip


@pytest.mark.parametrize("label,data,name,mime", UPLOADS, ids=[u[0] for u in UPLOADS])
async def test_bad_uploads_are_refused_and_change_nothing(world, label, data, name, mime):
    admin = world.b.admin
    for path in ("/office/settings/logo", "/office/settings"):
        before = await snapshot()
        fields = {"_csrf_token": await token_of(admin)}
        if path == "/office/settings":
            fields.update(name=world.b.name, phone="(555) 010-2000")
        r = await admin.post(path, data=fields, files={"logo": (name, data, mime)})
        assert 400 <= r.status_code < 500, (label, path, r.status_code)
        assert 'class="error"' in r.text or 'role="alert"' in r.text, (label, path)
        assert not changes(before, await snapshot()), (label, path)


async def test_an_upload_beyond_the_request_limit_is_refused_cleanly(world):
    admin = world.b.admin
    before = await snapshot()
    data = b"\x89PNG" + b"A" * (12 * 1024 * 1024)
    r = await admin.post(
        "/office/settings/logo",
        data={"_csrf_token": await token_of(admin)},
        files={"logo": ("giant.png", data, "image/png")},
    )
    assert 400 <= r.status_code < 500 and "Traceback" not in r.text
    assert not changes(before, await snapshot())


async def test_a_good_logo_is_served_as_a_png_that_cannot_be_sniffed(world):
    admin = world.b.admin
    r = await admin.post(
        "/office/settings/logo",
        data={"_csrf_token": await token_of(admin)},
        files={"logo": ("logo.png", _png(120, 60), "image/png")},
    )
    assert r.status_code == 303
    version = (
        await t.Tenant.select(t.Tenant.logo_version).where(t.Tenant.id == world.b.id).first().run()
    )["logo_version"]
    served = await admin.get(f"/logo/{version}")
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"


# --- stored text renders escaped -----------------------------------------------------------------

SCRIPT = "<script>alert('stored')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;stored&#39;)&lt;/script&gt;"


async def test_stored_markup_renders_escaped_everywhere_it_shows(world, saved_tenant_b):
    """Markup typed into the business name, the visits message, service types, booking
    notes and a dismissal reason is stored as text and shown as text."""
    admin, b1 = world.b.admin, world.customer("B1")
    try:
        for key, value in (
            ("name", f"Beta {SCRIPT}"),
            ("recurring_service_message", f"Note {SCRIPT}"),
            ("service_types", f"Repair\nDrain {SCRIPT}"),
        ):
            r = await post(admin, f"/office/settings/{key}", {key: value})
            assert r.status_code == 303, (key, r.status_code, r.text[:300])
        pages = {
            "/invoices": b1.client,
            f"/memberships/{b1.membership_id}": b1.client,
            "/schedule": b1.client,
            "/office/settings": admin,
        }
        for path, client in pages.items():
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text[:2000])
            assert SCRIPT not in page.text and ESCAPED in page.text, path
        # Notes from a customer, and the office's reason for closing the request.
        r = await post(
            b1.client,
            "/schedule",
            {
                "location": str(b1.location_id),
                "service_type": "Repair",
                "date_1": (date.today() + timedelta(days=8)).isoformat(),
                "window_1": "any",
                "notes": f"Gate {SCRIPT}",
                "request_key": os.urandom(12).hex(),
            },
        )
        assert r.status_code == 303
        booking = int(r.headers["location"].rsplit("=", 1)[1])
        page = await world.b.office.get(f"/office/bookings/{booking}")
        assert SCRIPT not in page.text and ESCAPED in page.text
        r = await post(world.b.office, f"/office/bookings/{booking}/dismiss", {"reason": SCRIPT})
        assert r.status_code == 303
        page = await b1.client.get("/schedule")
        assert SCRIPT not in page.text and ESCAPED in page.text
        # An email template: the preview shows the text, not markup.
        r = await post(
            admin, "/office/notifications/invoice_email/preview", {"subject": "Hi", "body": SCRIPT}
        )
        assert r.status_code == 200 and SCRIPT not in r.text and ESCAPED in r.text
    finally:
        await restore_tenant(saved_tenant_b)


# --- missing, repeated and malformed bodies on every POST route ---------------------------------

BODIES = [
    ("empty", {}, None),
    ("json", None, ("application/json", b'{"email": ["x"], "amount": -1}')),
    ("bad urlencoding", None, ("application/x-www-form-urlencoded", b"a=%zz&&=&%%%=1&b")),
    ("broken multipart", None, ("multipart/form-data; boundary=zz", b"--zz\r\nnot a part")),
    ("no boundary", None, ("multipart/form-data", b"--x\r\n\r\n")),
    ("binary", None, ("application/octet-stream", bytes(range(256)) * 40)),
]


async def test_malformed_bodies_on_every_post_route(app, world, anonymous):
    """Every POST route gets an empty form, a JSON body, broken encodings and binary junk
    (with a valid CSRF token in the header): never a 5xx, never a stack trace."""
    posts = sorted(path for method, path in app_routes(app) if method == "POST")
    for route in posts:
        path = concrete(route, world, app)
        # Signing out is harmless only for a stranger; callbacks need no session.
        client = (
            anonymous
            if "sign-out" in route or "callback" in route
            else requester(world, anonymous, route)[0]
        )
        token = await token_of(client)
        for label, data, raw in BODIES:
            headers = {"x-csrftoken": token}
            if raw is not None:
                headers["content-type"] = raw[0]
                r = await client.post(path, content=raw[1], headers=headers)
            else:
                r = await client.post(path, data=data, headers=headers)
            assert r.status_code < 500, (path, label, r.status_code, r.text[:200])
            assert "Traceback" not in r.text


async def test_repeated_fields_take_the_first_value(world):
    """A field sent twice is read once (the first value), never as a list that breaks code."""
    me = world.customer("A1")
    r = await post(
        me.client,
        "/account/customer",
        {"customer": [str(me.id), "999"], "next": ["/history", "//evil.example"]},
    )
    assert r.status_code == 303 and r.headers["location"] == "/history"
