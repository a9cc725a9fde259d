"""Isolation matrix: two businesses, two customers each, staff of both roles in each.

Every route of the app is read from Litestar's route table and must be classified
below (a new route fails `test_every_route_is_classified` until it is). For every
route that takes an id (in the path, the query string or the form), a signed-in
customer asks for the other customer's record and for the other business's record:
each answer is the same as for an id that does not exist (same status, same body
apart from the CSRF token, the CSP nonce and fresh form keys), shows none of the
other record's data, and changes nothing in any table. Office routes likewise across
businesses, and office-role staff are refused the administrator's actions.

The world (tests/support/world.py) is imported with the import format
(docs/import-format.md); booking requests, card updates and portal payments are made
through the app itself.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from portal.db import tables as t
from tests.support.http import CSRF_FIELD, make_client, sign_in
from tests.support.world import (
    PASSWORD,
    Business,
    Customer,
    World,
    app_routes,
    diff,
    normalized,
    snapshot,
)

NOWHERE = 2_000_000_000  # an id no table reaches in these tests


# --- the route table ---------------------------------------------------------------------------

# Every (method, path) of the app, by how it is reached. "public": no sign-in and no record
# id; "customer"/"office": needs that session, no record id beyond the ones tested below;
# "ids": takes record ids, exercised by the matrix; "signed": server-to-server, signed by
# the gateway; "capability": the sandbox provider's own card page, reached by an unguessable
# checkout id (the provider's page, not the business's records).
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/static/{name:path}"): "public",
    ("GET", "/logo/{version:int}"): "public",  # the logo of the host's own business only
    ("GET", "/logo/{version:int}/2x"): "public",  # its 2× copy, the same way
    ("GET", "/_hello"): "public",
    # Operations: no business data (metrics only on the app port, never via the proxy).
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/sandbox-gateway/checkout/{checkout_id:str}"): "capability",
    ("POST", "/sandbox-gateway/checkout/{checkout_id:str}"): "capability",
    ("POST", "/sandbox-gateway/checkout/{checkout_id:str}/cancel"): "capability",
    ("POST", "/payments/callback"): "signed",
    ("POST", "/memberships/card-callback"): "signed",
    ("POST", "/payments/stripe/webhook"): "signed",  # tests/test_stripe_payments.py
    ("GET", "/sign-in"): "public",
    ("POST", "/sign-in"): "public",
    ("POST", "/sign-in/link"): "public",
    ("GET", "/sign-in/email"): "public",  # tokens: tests/test_email_links.py
    ("POST", "/sign-in/email"): "public",
    ("POST", "/sign-out"): "public",
    ("GET", "/invite"): "public",
    ("POST", "/invite"): "public",
    ("GET", "/forgot"): "public",
    ("POST", "/forgot"): "public",
    ("GET", "/confirm"): "public",  # tokens: tests/test_accounts.py
    ("POST", "/confirm"): "public",
    ("GET", "/reset"): "public",
    ("POST", "/reset"): "public",
    ("GET", "/account"): "customer",
    ("POST", "/account/password"): "customer",
    ("GET", "/account/security"): "customer",  # own account only: tests/test_security_page.py
    ("POST", "/account/security/sign-out-others"): "customer",
    ("POST", "/account/passkeys/options"): "customer",  # passkeys: tests/test_passkeys.py
    ("POST", "/account/passkeys"): "customer",
    ("POST", "/account/passkeys/{passkey_id:int}/remove"): "ids",
    ("POST", "/sign-in/passkey/options"): "public",
    ("POST", "/sign-in/passkey"): "public",
    ("POST", "/account/customer"): "ids",
    # Issue 16.4: People with access (the grant's rules: tests/test_grants.py).
    ("GET", "/account/access"): "customer",
    ("POST", "/account/access/invite"): "ids",
    ("POST", "/account/access/{grant_id:int}/revoke"): "ids",
    ("POST", "/account/access/{grant_id:int}/leave"): "ids",
    ("GET", "/"): "public",
    ("GET", "/invoices"): "ids",
    ("POST", "/invoices/pay"): "ids",
    ("GET", "/payments/{payment_id:int}"): "ids",
    ("GET", "/history"): "ids",
    ("GET", "/invoices/{invoice_id:int}"): "ids",
    ("GET", "/invoices/{invoice_id:int}/pdf"): "ids",
    ("GET", "/memberships"): "customer",
    ("GET", "/memberships/{membership_id:str}"): "ids",
    ("POST", "/memberships/{membership_id:str}/card"): "ids",
    ("GET", "/memberships/{membership_id:str}/card/{update_id:str}"): "ids",
    ("GET", "/schedule"): "ids",
    ("POST", "/schedule"): "ids",
    ("GET", "/office/sign-in"): "public",
    ("POST", "/office/sign-in"): "public",
    ("POST", "/office/sign-out"): "public",
    ("GET", "/office"): "office",
    ("POST", "/office/alerts/{alert_id:int}/seen"): "ids",
    ("GET", "/office/settings"): "office",
    ("POST", "/office/settings"): "office",  # roles: test_office_role_is_refused_admin_actions
    ("POST", "/office/settings/legal"): "office",
    ("POST", "/office/settings/logo"): "office",
    ("POST", "/office/settings/logo/remove"): "office",
    ("POST", "/office/settings/payments/link"): "office",
    ("POST", "/office/settings/payments/unlink"): "office",
    ("POST", "/office/settings/payments/stripe"): "office",
    ("POST", "/office/settings/{key:str}"): "office",
    ("GET", "/office/bookings"): "office",  # ?after= is a cursor into its own list
    ("GET", "/office/bookings/{request_id:int}"): "ids",
    ("GET", "/office/bookings/{request_id:int}/book"): "ids",
    ("POST", "/office/bookings/{request_id:int}/book"): "ids",
    ("GET", "/office/bookings/{request_id:int}/dismiss"): "ids",
    ("POST", "/office/bookings/{request_id:int}/dismiss"): "ids",
    ("GET", "/office/customers"): "office",
    ("GET", "/office/customers/{customer_id:int}"): "ids",
    ("POST", "/office/customers/{customer_id:int}/emails"): "ids",
    ("POST", "/office/customers/{customer_id:int}/emails/{email_id:int}/remove"): "ids",
    ("POST", "/office/customers/{customer_id:int}/invite"): "ids",
    ("POST", "/office/customers/{customer_id:int}/invoices/{invoice_id:int}/email"): "ids",
    ("POST", "/office/customers/{customer_id:int}/grants/{grant_id:int}/revoke"): "ids",
    ("GET", "/office/notifications"): "office",
    ("GET", "/office/notifications/{key:str}"): "office",  # key: an email kind, not a record
    ("POST", "/office/notifications/{key:str}"): "office",
    ("POST", "/office/notifications/{key:str}/preview"): "office",
    ("POST", "/office/notifications/{key:str}/reset"): "office",
    ("GET", "/office/password"): "office",
    ("POST", "/office/password"): "office",
    ("GET", "/office/staff"): "office",  # ?sent= names a staff member: a notice, own only
    ("POST", "/office/staff/{staff_id:int}/reset-link"): "ids",
    ("POST", "/office/staff"): "office",  # adds to the signed-in business only
    ("POST", "/office/staff/{staff_id:int}/role"): "ids",
    ("POST", "/office/staff/{staff_id:int}/disable"): "ids",
    ("POST", "/office/staff/{staff_id:int}/enable"): "ids",
    ("GET", "/office/activity"): "office",
    ("GET", "/office/customers/{customer_id:int}/export"): "ids",
    (
        "POST",
        "/office/customers/{customer_id:int}/erase",
    ): "ids",  # ?who= must be one of its own actors
    ("GET", "/office/reset"): "public",  # tokens: tests/test_staff_passwords.py
    ("POST", "/office/reset"): "public",
    ("GET", "/office/emails"): "office",  # ?before= is a cursor into its own list
    ("POST", "/office/emails/{email_id:int}/retry"): "ids",
    # The sync API's office side (the API itself is its own app: tests/test_api_keys.py).
    ("GET", "/office/api-keys"): "office",
    ("POST", "/office/api-keys"): "office",
    ("POST", "/office/api-keys/{key_id:int}/revoke"): "ids",
    ("GET", "/office/webhooks"): "office",
    ("POST", "/office/webhooks"): "office",
    ("POST", "/office/webhooks/deliveries/{delivery_id:int}/retry"): "ids",
    ("POST", "/office/webhooks/{endpoint_id:int}/{switch:str}"): "ids",
    ("GET", "/office/csv"): "office",
    ("POST", "/office/csv"): "office",
    ("POST", "/office/csv/preview"): "office",  # the file rides in the form: no record ids
    ("POST", "/office/csv/import"): "office",
    ("GET", "/office/invoices/{invoice_id:int}"): "ids",
    ("GET", "/office/jobs/{job_id:int}"): "ids",
    ("POST", "/office/payments/{payment_id:int}/refund"): "ids",
    ("GET", "/office/payments"): "office",  # ?before= is a cursor into its own list
    ("GET", "/office/payments.csv"): "office",
}


def test_every_route_is_classified(app):
    """A route added to the app must be classified here (and, if it takes ids, probed)."""
    found = app_routes(app)
    unclassified = sorted(found - set(ROUTES))
    assert not unclassified, f"routes missing from the isolation matrix: {unclassified}"
    stale = sorted(set(ROUTES) - found)
    assert not stale, f"classified routes that no longer exist: {stale}"


def test_every_id_route_is_probed(app):
    """Each route classified "ids" has probes below (so classifying is not enough)."""
    probed = {(p.method, p.route) for p in customer_probes(None) + office_probes(None)}
    missing = sorted(k for k, v in ROUTES.items() if v == "ids" and k not in probed)
    assert not missing, f"id routes without a probe: {missing}"


# --- probes: one request shape per route and id slot --------------------------------------------


@dataclass
class Probe:
    """A request with one id replaced: `make(victim_id)` gives (path, form or None)."""

    method: str
    route: str
    slot: str  # which id: "invoice", "payment", ...
    make: Any
    label: str = ""


def _id(c: Customer | None, slot: str) -> Any:
    """The `slot` id of customer `c` (None: the id of nothing at all)."""
    if c is None:
        return NOWHERE
    return {
        "invoice": c.invoice_ids[0],
        "payment": c.payment_ids[-1],
        "job": c.job_id,
        "location": c.location_id,
        "membership": c.membership_id,
        "card_update": c.card_update_id,
        "passkey": c.passkey_id,
        "booking": c.booking_id,
        "customer": c.id,
        "email": c.email_id,
        "staff": c.staff_id,
        "failed_email": c.failed_email_id,
        "api_key": getattr(c, "api_key_id", NOWHERE),
        "endpoint": getattr(c, "endpoint_id", NOWHERE),
        "delivery": getattr(c, "delivery_id", NOWHERE),
        "alert": c.alert_id,
        "grant": c.grant_id,
    }[slot]


def fresh_key() -> str:
    """A new form idempotency key, as a freshly loaded form carries."""
    return secrets.token_urlsafe(16)


def customer_probes(me: Customer | None) -> list[Probe]:
    """Requests a signed-in customer `me` can make with an id in them."""
    mine = (lambda slot: _id(me, slot)) if me is not None else (lambda slot: 1)
    day = (date.today() + timedelta(days=4)).isoformat()
    return [
        Probe("GET", "/invoices/{invoice_id:int}", "invoice", lambda v: (f"/invoices/{v}", None)),
        Probe(
            "GET",
            "/invoices/{invoice_id:int}/pdf",
            "invoice",
            lambda v: (f"/invoices/{v}/pdf", None),
        ),
        Probe("GET", "/payments/{payment_id:int}", "payment", lambda v: (f"/payments/{v}", None)),
        Probe("GET", "/invoices", "invoice", lambda v: (f"/invoices?select={v}", None), "select"),
        Probe("GET", "/invoices", "payment", lambda v: (f"/invoices?retry={v}", None), "retry"),
        Probe("GET", "/history", "location", lambda v: (f"/history?location={v}", None)),
        Probe(
            "POST",
            "/invoices/pay",
            "invoice",
            lambda v: (
                "/invoices/pay",
                {"invoice": [str(v)], "action": "full", "amount": "", "key": fresh_key()},
            ),
        ),
        Probe(
            "GET",
            "/memberships/{membership_id:str}",
            "membership",
            lambda v: (f"/memberships/{v}", None),
        ),
        Probe(
            "GET",
            "/memberships/{membership_id:str}",
            "card_update",
            lambda v: (f"/memberships/{mine('membership')}?card={v}", None),
            "card notice",
        ),
        Probe(
            "POST",
            "/memberships/{membership_id:str}/card",
            "membership",
            lambda v: (f"/memberships/{v}/card", {}),
        ),
        Probe(
            "GET",
            "/memberships/{membership_id:str}/card/{update_id:str}",
            "membership",
            lambda v: (f"/memberships/{v}/card/{mine('card_update')}", None),
        ),
        Probe(
            "GET",
            "/memberships/{membership_id:str}/card/{update_id:str}",
            "card_update",
            lambda v: (f"/memberships/{mine('membership')}/card/{v}", None),
        ),
        Probe("GET", "/schedule", "booking", lambda v: (f"/schedule?requested={v}", None)),
        Probe(
            "POST",
            "/schedule",
            "location",
            lambda v: (
                "/schedule",
                {
                    "location": str(v),
                    "service_type": "Repair",
                    "date_1": day,
                    "window_1": "any",
                    "notes": "",
                    "request_key": fresh_key(),
                },
            ),
        ),
        Probe(
            "POST",
            "/account/passkeys/{passkey_id:int}/remove",
            "passkey",
            lambda v: (f"/account/passkeys/{v}/remove", {}),
        ),
        Probe(
            "POST",
            "/account/access/invite",
            "location",
            lambda v: (
                "/account/access/invite",
                {"email": "neighbour@example.org", "role": "view", "locations": str(v)},
            ),
        ),
        Probe(
            "POST",
            "/account/access/{grant_id:int}/revoke",
            "grant",
            lambda v: (f"/account/access/{v}/revoke", {}),
        ),
        Probe(
            "POST",
            "/account/access/{grant_id:int}/leave",
            "grant",
            lambda v: (f"/account/access/{v}/leave", {}),
        ),
        Probe(
            "POST",
            "/account/customer",
            "customer",
            lambda v: ("/account/customer", {"customer": str(v), "next": "/invoices"}),
        ),
    ]


def office_probes(me: Business | None) -> list[Probe]:
    """Requests office staff of `me` can make with an id in them (ids of their own business
    fill the other slots, so only the probed id is foreign)."""
    own = me.customers[0] if me is not None else None
    cust = own.id if own else 1
    inv = own.invoice_ids[0] if own else 1
    email_id = own.email_id if own else 1
    email = own.email if own else ""
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    book_form = {"date": tomorrow, "window": "08:00-12:00", "business_unit": "", "summary": "x"}
    return [
        Probe(
            "GET",
            "/office/invoices/{invoice_id:int}",
            "invoice",
            lambda v: (f"/office/invoices/{v}", None),
        ),
        Probe("GET", "/office/jobs/{job_id:int}", "job", lambda v: (f"/office/jobs/{v}", None)),
        Probe(
            "POST",
            "/office/payments/{payment_id:int}/refund",
            "payment",
            lambda v: (f"/office/payments/{v}/refund", {"invoice": str(inv), "reason": "x"}),
        ),
        Probe(
            "POST",
            "/office/payments/{payment_id:int}/refund",
            "invoice",
            lambda v: (
                f"/office/payments/{own.payment_ids[-1] if own else 1}/refund",
                {"invoice": str(v), "reason": "x"},
            ),
            "invoice",
        ),
        Probe(
            "POST",
            "/office/alerts/{alert_id:int}/seen",
            "alert",
            lambda v: (f"/office/alerts/{v}/seen", {"next": "/office/bookings"}),
        ),
        Probe(
            "GET",
            "/office/bookings/{request_id:int}",
            "booking",
            lambda v: (f"/office/bookings/{v}", None),
        ),
        Probe(
            "GET",
            "/office/bookings/{request_id:int}/book",
            "booking",
            lambda v: (f"/office/bookings/{v}/book", None),
        ),
        Probe(
            "POST",
            "/office/bookings/{request_id:int}/book",
            "booking",
            lambda v: (f"/office/bookings/{v}/book", book_form),
        ),
        Probe(
            "GET",
            "/office/bookings/{request_id:int}/dismiss",
            "booking",
            lambda v: (f"/office/bookings/{v}/dismiss", None),
        ),
        Probe(
            "POST",
            "/office/bookings/{request_id:int}/dismiss",
            "booking",
            lambda v: (f"/office/bookings/{v}/dismiss", {"reason": "Duplicate request"}),
        ),
        Probe(
            "GET",
            "/office/customers/{customer_id:int}",
            "customer",
            lambda v: (f"/office/customers/{v}", None),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/emails",
            "customer",
            lambda v: (f"/office/customers/{v}/emails", {"email": "new-contact@example.org"}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/emails/{email_id:int}/remove",
            "customer",
            lambda v: (f"/office/customers/{v}/emails/{email_id}/remove", {}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/emails/{email_id:int}/remove",
            "email",
            lambda v: (f"/office/customers/{cust}/emails/{v}/remove", {}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/invite",
            "customer",
            lambda v: (f"/office/customers/{v}/invite", {"email": email}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/grants/{grant_id:int}/revoke",
            "customer",
            lambda v: (f"/office/customers/{v}/grants/{own.grant_id if own else 1}/revoke", {}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/grants/{grant_id:int}/revoke",
            "grant",
            lambda v: (f"/office/customers/{cust}/grants/{v}/revoke", {}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/invoices/{invoice_id:int}/email",
            "customer",
            lambda v: (f"/office/customers/{v}/invoices/{inv}/email", {"to": email}),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/invoices/{invoice_id:int}/email",
            "invoice",
            lambda v: (f"/office/customers/{cust}/invoices/{v}/email", {"to": email}),
        ),
        Probe(
            "POST",
            "/office/staff/{staff_id:int}/reset-link",
            "staff",
            lambda v: (f"/office/staff/{v}/reset-link", {}),
        ),
        Probe("GET", "/office/staff", "staff", lambda v: (f"/office/staff?sent={v}", None)),
        Probe(
            "GET",
            "/office/staff",
            "staff",
            lambda v: (f"/office/staff?done=role&member={v}", None),
        ),
        Probe(
            "GET",
            "/office/customers/{customer_id:int}/export",
            "customer",
            lambda v: (f"/office/customers/{v}/export", None),
        ),
        Probe(
            "POST",
            "/office/customers/{customer_id:int}/erase",
            "customer",
            lambda v: (f"/office/customers/{v}/erase", {"confirm": "yes"}),
        ),
        Probe(
            "POST",
            "/office/staff/{staff_id:int}/role",
            "staff",
            lambda v: (f"/office/staff/{v}/role", {"role": "office"}),
        ),
        Probe(
            "POST",
            "/office/staff/{staff_id:int}/disable",
            "staff",
            lambda v: (f"/office/staff/{v}/disable", {}),
        ),
        Probe(
            "POST",
            "/office/staff/{staff_id:int}/enable",
            "staff",
            lambda v: (f"/office/staff/{v}/enable", {}),
        ),
        Probe(
            "POST",
            "/office/emails/{email_id:int}/retry",
            "failed_email",
            lambda v: (f"/office/emails/{v}/retry", {}),
        ),
        Probe(
            "POST",
            "/office/api-keys/{key_id:int}/revoke",
            "api_key",
            lambda v: (f"/office/api-keys/{v}/revoke", {}),
        ),
        Probe(
            "POST",
            "/office/webhooks/deliveries/{delivery_id:int}/retry",
            "delivery",
            lambda v: (f"/office/webhooks/deliveries/{v}/retry", {}),
        ),
        Probe(
            "POST",
            "/office/webhooks/{endpoint_id:int}/{switch:str}",
            "endpoint",
            lambda v: (f"/office/webhooks/{v}/off", {}),
        ),
    ]


async def send(
    client: httpx.AsyncClient, method: str, path: str, form: dict | None, csrf_page: str
):
    """GET, or POST with a valid CSRF token taken from a page of the same client."""
    if method == "GET":
        return await client.get(path)
    page = await client.get(csrf_page)
    token = CSRF_FIELD.search(page.text).group(1)
    return await client.post(path, data={"_csrf_token": token, **(form or {})})


def assert_same_answer(reference: httpx.Response, answer: httpx.Response, what: str) -> None:
    assert answer.status_code == reference.status_code, (
        f"{what}: {answer.status_code} but a missing id gives {reference.status_code}"
    )
    assert answer.status_code < 500, what
    assert answer.headers.get("location") == reference.headers.get("location"), what
    assert normalized(answer.text) == normalized(reference.text), f"{what}: body differs"


def assert_no_data_of(
    victim: Customer, answer: httpx.Response, what: str, *, other_business: bool = False
) -> None:
    """None of the victim's text in the answer (nor their business's name, if another)."""
    body = answer.text
    markers = victim.markers + ([victim.business_name, victim.host] if other_business else [])
    leaked = [m for m in markers if m in body]
    assert not leaked, f"{what}: shows {victim.key}'s {leaked}"
    if answer.headers.get("content-type", "").startswith("application/pdf"):
        raise AssertionError(f"{what}: a PDF of {victim.key}'s invoice was served")


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("me_key", ["A1", "B2"])
async def test_customer_ids_of_others_answer_like_missing_ids(world, me_key):
    """A signed-in customer asking for another customer's or another business's record:
    the same answer as a missing id, none of its data, nothing changed."""
    me = world.customer(me_key)
    same_business = "A2" if me_key == "A1" else "B1"
    other_business = "B1" if me_key == "A1" else "A2"
    victims = [world.customer(same_business), world.customer(other_business)]
    checked = 0
    for probe in customer_probes(me):
        before = await snapshot()
        path, form = probe.make(_id(None, probe.slot))
        reference = await send(me.client, probe.method, path, form, "/invoices")
        assert reference.status_code < 500, (probe.route, reference.status_code)
        assert not diff(before, await snapshot()), f"{probe.route} with a missing id changed data"
        for victim in victims:
            path, form = probe.make(_id(victim, probe.slot))
            what = f"{me_key} {probe.method} {path} ({victim.key}'s {probe.slot})"
            answer = await send(me.client, probe.method, path, form, "/invoices")
            assert_same_answer(reference, answer, what)
            assert_no_data_of(victim, answer, what, other_business=victim.host != me.host)
            changed = diff(before, await snapshot())
            assert not changed, f"{what} changed {changed}"
            checked += 1
    assert checked == 2 * len(customer_probes(me))


@pytest.fixture(scope="module")
async def failed_emails(world: World, settings) -> None:
    """A failed email to each customer, for Office › Emails' Retry to be probed with."""
    from portal.db import queries
    from portal.mail.outbox import queue_raw

    for business in (world.a, world.b):
        tenant = await queries.tenant_by_host(business.host)
        for c in business.customers:
            c.failed_email_id = await queue_raw(settings, tenant, c.email, f"For {c.name}", "Hi")
            await (
                t.OutboxEmail.update({t.OutboxEmail.status: "failed"})
                .where(t.OutboxEmail.id == c.failed_email_id)
                .run()
            )


@pytest.fixture(scope="module")
async def sync_setup(world: World) -> None:
    """An API key, a webhook endpoint and a failed delivery for each business, for the
    office's Revoke, Turn off and Retry now to be probed with."""
    from portal.db import api_keys, events
    from portal.db import webhooks as webhooks_db

    for business in (world.a, world.b):
        key_id, _ = await api_keys.create(business.id, f"Key of {business.key}", "read", "tests")
        endpoint_id, _ = await webhooks_db.add_endpoint(
            business.id, f"https://{business.host}.example/hooks", "tests"
        )
        event_id = await events.emit(business.id, "invoice.viewed", {"invoice": "X"})
        rows = await t.WebhookDelivery.insert(
            t.WebhookDelivery(
                tenant=business.id,
                endpoint=endpoint_id,
                event=event_id,
                event_type="invoice.viewed",
                status="failed",
            )
        ).run()
        for c in business.customers:
            c.api_key_id, c.endpoint_id, c.delivery_id = key_id, endpoint_id, rows[0]["id"]


@pytest.mark.parametrize("role", ["admin", "office"])
async def test_office_ids_of_another_business_answer_like_missing_ids(
    world, role, failed_emails, sync_setup
):
    """Staff of business A (either role) asking for business B's records."""
    me, other = world.a, world.b
    client = me.admin if role == "admin" else me.office
    for probe in office_probes(me):
        before = await snapshot()
        path, form = probe.make(_id(None, probe.slot))
        reference = await send(client, probe.method, path, form, "/office/settings")
        assert reference.status_code < 500, (probe.route, reference.status_code)
        assert not diff(before, await snapshot()), f"{probe.route} with a missing id changed data"
        for victim in other.customers:
            path, form = probe.make(_id(victim, probe.slot))
            what = f"{role} of A {probe.method} {path} (B's {probe.slot})"
            answer = await send(client, probe.method, path, form, "/office/settings")
            assert_same_answer(reference, answer, what)
            assert_no_data_of(victim, answer, what, other_business=True)
            changed = diff(before, await snapshot())
            assert not changed, f"{what} changed {changed}"


async def test_other_customers_form_keys_change_nothing(world):
    """Idempotency keys are ids too: another customer's pay, card or booking form key never
    resumes their payment, card update or request, and never shows it."""
    me, victim = world.customer("A1"), world.customer("A2")
    day = (date.today() + timedelta(days=5)).isoformat()
    cases = [
        (
            "/invoices/pay",
            {
                "invoice": [str(me.invoice_ids[1])],
                "action": "partial",
                "amount": "25.00",
                "key": victim.payment_key,
            },
            "/invoices",
        ),
        (f"/memberships/{me.membership_id}/card", {"key": victim.card_key}, "/invoices"),
        (
            "/schedule",
            {
                "location": str(me.location_id),
                "service_type": "Repair",
                "date_1": day,
                "window_1": "any",
                "notes": "",
                "request_key": victim.booking_key,
            },
            "/schedule",
        ),
    ]
    for path, form, page in cases:
        before = await snapshot()
        answer = await send(me.client, "POST", path, form, page)
        assert answer.status_code == 422, (path, answer.status_code)
        assert_no_data_of(victim, answer, path)
        assert not diff(before, await snapshot()), path


async def test_a_session_belongs_to_its_business(world, app):
    """A's session cookie presented on B's host is nobody there (customer and staff)."""
    for client, path, sign_in_path in (
        (world.customer("A1").client, "/invoices", "/sign-in"),
        (world.a.admin, "/office/settings", "/office/sign-in"),
    ):
        async with make_client(app, f"http://{world.b.host}.localhost") as stranger:
            stranger.cookies.update({k: v for k, v in client.cookies.items()})
            answer = await stranger.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith(sign_in_path)


async def test_customer_and_staff_sessions_do_not_cross(world):
    """A customer's session opens no office page; a staff session opens no customer page."""
    customer = world.customer("A1").client
    answer = await customer.get("/office/customers")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/office/sign-in")
    answer = await world.a.admin.get("/invoices")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")


async def test_signed_callbacks_of_another_business_are_refused(world, app, settings):
    """A callback signed for business B's account, sent to A's host, changes nothing."""
    from portal.payments import sandbox

    victim = world.customer("B1")
    row = await sandbox._row(victim.checkout_ids[-1])
    body = sandbox.callback_body(row)
    signature = sandbox.sign(sandbox.callback_secret(settings, row["account_id"]), body)
    before = await snapshot()
    async with make_client(app, f"http://{world.a.host}.localhost") as gateway:
        for path in ("/payments/callback", "/memberships/card-callback"):
            answer = await gateway.post(
                path,
                content=body,
                headers={"content-type": "application/json", sandbox.SIGNATURE_HEADER: signature},
            )
            assert answer.status_code == 403, (path, answer.status_code)
    assert not diff(before, await snapshot())


ADMIN_ONLY_POSTS = [
    ("/office/settings/legal", {"agree": "yes"}),
    ("/office/settings/payments/link", {}),
    ("/office/settings/payments/unlink", {}),
    ("/office/settings/host", {"host": "stolenname"}),
    ("/office/settings/payments_enabled", {}),
    ("/office/settings", {"host": "stolenname", "name": "Alphaplumb Services"}),
]


async def test_office_role_is_refused_admin_actions(world):
    """Office-role staff: the administrator's actions are refused (403) and change nothing."""
    for path, form in ADMIN_ONLY_POSTS:
        before = await snapshot()
        answer = await send(world.a.office, "POST", path, form, "/office/settings")
        assert answer.status_code == 403, (path, answer.status_code)
        assert "Only an administrator" in answer.text, path
        assert not diff(before, await snapshot()), path


async def test_signed_out_requests_to_id_routes_change_nothing(world, app):
    """Without a session every id route sends the browser to sign in; nothing changes."""
    me = world.customer("A1")
    async with make_client(app, f"http://{world.a.host}.localhost") as anonymous:
        before = await snapshot()
        for probe in customer_probes(me) + office_probes(world.a):
            path, form = probe.make(_id(me, probe.slot))
            page = "/office/sign-in" if path.startswith("/office") else "/sign-in"
            answer = await send(anonymous, probe.method, path, form, page)
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith(page)
        assert not diff(before, await snapshot())


# --- issue 16.4: requesters by grant role ------------------------------------------------------

GRANT_ROLES = ["view", "billing", "full"]


async def _grantee_account(business: Business, email: str) -> None:
    """A confirmed portal account for `email` (on no record: what it sees is its grants)."""
    from datetime import UTC, datetime

    from portal.auth.passwords import hash_password

    await t.PortalAccount.insert(
        t.PortalAccount(
            tenant=business.id,
            email=email,
            password_hash=await hash_password(PASSWORD),
            confirmed_at=datetime.now(UTC),
        )
    ).run()


@pytest.fixture(scope="module")
async def grantees(world: World, app) -> dict[str, Customer]:
    """A1 gets a second location (a cabin, with an invoice and a membership) and shares only
    that one, once per role, with a person signed in: everything else of A1's (the home's
    invoices, payments, membership, card update, request) is outside each grant."""
    from portal.db import grants as grants_db
    from tests.support.paying import new_invoice

    owner = world.customer("A1")
    rows = await t.Location.insert(
        t.Location(
            tenant=world.a.id,
            customer=owner.id,
            external_id="LA1-CABIN",
            name="Cabin of A1",
            street="99 Cabin Road",
        )
    ).run()
    cabin = rows[0]["id"]
    invoice = await new_invoice(world.a.id, "A1", location="LA1-CABIN")
    rows = await t.Membership.insert(
        t.Membership(
            tenant=world.a.id,
            customer=owner.id,
            location=cabin,
            external_id="M-A1-CABIN",
            type_name="Cabin Club of A1",
            status="active",
            start_date=date.today() - timedelta(days=10),
            card_brand="Visa",
            card_last4="2222",
        )
    ).run()
    membership = rows[0]["id"]
    found: dict[str, Customer] = {}
    for role in GRANT_ROLES:
        email = f"{role}-grantee@elsewhere.example"
        await grants_db.create(world.a.id, owner.id, email, role, [cabin], owner.email)
        await _grantee_account(world.a, email)
        client = make_client(app, f"http://{world.a.host}.localhost")
        await sign_in(client, email, PASSWORD)
        found[role] = Customer(
            key=f"A1-{role}",
            host=owner.host,
            business_name=owner.business_name,
            name=owner.name,
            email=email,
            markers=[],
            id=owner.id,
            location_id=cabin,
            invoice_ids=[invoice["id"]],
            payment_ids=[NOWHERE],
            job_id=NOWHERE,
            membership_id=membership,
            card_update_id=NOWHERE,
            booking_id=NOWHERE,
            email_id=NOWHERE,
            staff_id=NOWHERE,
            passkey_id=NOWHERE,
            client=client,
        )
    yield found
    for grantee in found.values():
        assert grantee.client is not None
        await grantee.client.aclose()


def _outside_the_grant(owner: Customer) -> Customer:
    """The owner's records at the location that was not shared, as a victim: their ids,
    and the text only those records contain (the owner's name and email are shown to a
    grantee by right)."""
    street = owner.markers[2]
    return dataclasses.replace(
        owner,
        key=f"{owner.key}'s home",
        markers=[street, f"INV-{owner.key}-", f"{street.split(' ', 1)[1]} Comfort Club"]
        + [m for m in owner.markers if m.startswith("Gate code")],
    )


@pytest.mark.parametrize("role", GRANT_ROLES)
async def test_grantees_asking_beyond_their_grant_get_what_a_missing_id_gets(world, grantees, role):
    """A grantee of A1's cabin asking for A1's home records (invoices, history, visits,
    PDFs, receipts, card updates, requests, by id), or another customer's or business's:
    the same answer as a missing id, none of their data, nothing changed."""
    me = grantees[role]
    home = _outside_the_grant(world.customer("A1"))
    victims = [home, world.customer("A2"), world.customer("B1")]
    checked = 0
    for probe in customer_probes(me):
        before = await snapshot()
        path, form = probe.make(_id(None, probe.slot))
        reference = await send(me.client, probe.method, path, form, "/invoices")
        assert reference.status_code < 500, (role, probe.route, reference.status_code)
        assert not diff(before, await snapshot()), f"{role} {probe.route}: a missing id changed"
        for victim in victims:
            if victim is home and probe.slot == "customer":
                continue  # A1's record is the one shared with them: switching to it is theirs
            path, form = probe.make(_id(victim, probe.slot))
            what = f"{role} grantee {probe.method} {path} ({victim.key}'s {probe.slot})"
            answer = await send(me.client, probe.method, path, form, "/invoices")
            assert_same_answer(reference, answer, what)
            assert_no_data_of(victim, answer, what, other_business=victim.host != me.host)
            changed = diff(before, await snapshot())
            assert not changed, f"{what} changed {changed}"
            checked += 1
    assert checked == 3 * len(customer_probes(me)) - 1


async def test_grant_roles_are_refused_what_they_may_not_do(world, grantees):
    """View-only cannot pay, request appointments or manage cards; billing cannot request or
    manage cards: each such request on the grant's own records is the 403 page and changes
    nothing. Full access is refused none of them."""
    day = (date.today() + timedelta(days=6)).isoformat()
    cabin = grantees["full"]

    def pay() -> tuple[str, dict]:
        form = {"invoice": [str(cabin.invoice_ids[0])], "action": "full", "key": fresh_key()}
        return "/invoices/pay", form

    def request() -> tuple[str, dict]:
        form = {
            "location": str(cabin.location_id),
            "service_type": "Repair",
            "date_1": day,
            "window_1": "any",
            "notes": "",
            "request_key": fresh_key(),
        }
        return "/schedule", form

    def card() -> tuple[str, dict]:
        return f"/memberships/{cabin.membership_id}/card", {"key": fresh_key()}

    refused = {"view": [pay, request, card], "billing": [request, card], "full": []}
    for role, actions in refused.items():
        me = grantees[role]
        for action in (pay, request, card):
            path, form = action()
            if action not in actions:
                continue
            before = await snapshot()
            answer = await send(me.client, "POST", path, form, "/invoices")
            assert answer.status_code == 403, (role, path, answer.status_code)
            assert "Your access to Ava Alderwood is" in answer.text, (role, path)
            assert "Nothing was changed." in answer.text, (role, path)
            assert not diff(before, await snapshot()), (role, path)
        # The card page's way back (a GET that settles with the gateway) likewise.
        back = await me.client.get(f"/memberships/{cabin.membership_id}/card/{NOWHERE}")
        assert back.status_code == (404 if role == "full" else 403), (role, back.status_code)


async def test_a_revoked_grant_loses_access_on_its_next_request(world, app):
    """The same session cookie, the request after the owner revokes: none of it is seen."""
    from portal.auth import grants
    from portal.db import grants as grants_db

    owner = world.customer("A2")
    email = "revoked-grantee@elsewhere.example"
    grant_id = await grants_db.create(
        world.a.id, owner.id, email, "full", [owner.location_id], owner.email
    )
    await _grantee_account(world.a, email)
    async with make_client(app, f"http://{world.a.host}.localhost") as client:
        await sign_in(client, email, PASSWORD)
        paths = [
            f"/invoices/{owner.invoice_ids[0]}",
            f"/invoices/{owner.invoice_ids[0]}/pdf",
            f"/history?location={owner.location_id}",
            f"/memberships/{owner.membership_id}",
            f"/payments/{owner.payment_ids[-1]}",
        ]
        for path in paths:
            assert (await client.get(path)).status_code == 200, path
        cookie = dict(client.cookies)
        assert await grants.revoke_by_owner(world.a.id, owner.id, grant_id, owner.email)
        assert dict(client.cookies) == cookie
        for path in paths:
            answer = await client.get(path)
            # No record left to view: an id is a 404, a tab says there is nothing to show.
            if path.startswith("/history"):
                assert answer.status_code == 200 and "nothing to show" in answer.text, path
            else:
                assert answer.status_code == 404, (path, answer.status_code)
            assert_no_data_of(owner, answer, path)
        for path in ("/invoices", "/history", "/memberships", "/schedule"):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            assert_no_data_of(owner, answer, path)
