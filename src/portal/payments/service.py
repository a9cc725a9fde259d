"""The portal's side of paying invoices online.

1. `begin`: check the request against the database (the browser's ids and amounts are
   only a request), record a pending payment with its idempotency key, then ask the
   gateway for a checkout and send the customer there.
2. `settle`: apply the checkout's final outcome, once, whether it comes from a signed
   callback (`handle_callback`) or from asking the gateway when the customer returns
   first (`refresh`).

A payment remembers the payment account it started on (`payment_account_id`) and
everything after the start goes through that account's gateway, even once the office
has unlinked it. A payment is never marked failed while its card page could still be
paid: its checkout is closed at the gateway first (`close_and_settle`). And a success
reported for a payment already marked failed is recorded, never dropped.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from portal import logs
from portal.config import Settings
from portal.db import invoices as invoices_db
from portal.db import payment_accounts
from portal.db import payments as db
from portal.db.rows import TenantRow
from portal.formatting import money
from portal.forms import Checked, record_id
from portal.mail.links import portal_url
from portal.mail.worker import wake
from portal.payments import settlement
from portal.payments.gateway import (
    BadCallback,
    Checkout,
    GatewayError,
    PaymentGateway,
    PaymentsUnavailable,
    allocation_metadata,
)
from portal.payments.registry import gateway_for, verify_callback

log = logging.getLogger("portal.payments")

CALLBACK_PATH = "/payments/callback"
KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
AMOUNT = re.compile(r"^\$?\s*(\d{1,3}(?:,\d{3})+|\d{1,9})(?:\.(\d{1,2}))?$")
REFERENCE = re.compile(r"^pay_(\d{1,12})$")
MIN_PART_PAYMENT = 100  # cents
MAX_SELECTED = 200
# A pending payment that never got a checkout (the request died half-way) stops holding
# its invoices after this long.
UNREFERENCED_HOLD = timedelta(minutes=5)
# A payment still pending this long after it started is asked about by the worker (a
# customer on the card page for longer is not disturbed: an open checkout is left open).
STALE_AFTER = timedelta(minutes=2)
MAX_CALLBACK_BYTES = 64 * 1024
ACCOUNT_CHANGED = "The business changed its payment account before this payment was finished."


def new_key() -> str:
    """A fresh idempotency key for a payment form."""
    return secrets.token_urlsafe(16)


def call_us(tenant: TenantRow) -> str:
    """How to pay when card payments are off."""
    contact = tenant.get("phone") or tenant.get("email") or ""
    return f"To pay, call us at {contact}." if contact else "To pay, call us."


@dataclass
class PayForm:
    """What the pay form asked for (to be checked, never trusted)."""

    action: str = ""
    invoice_ids: list[int] = field(default_factory=list)
    amount: str = ""
    key: str = ""


@dataclass
class Outcome:
    """Where a pay request leads: a redirect, a message on the form, or a 404."""

    redirect: str | None = None
    message: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    not_found: bool = False
    selected: list[int] = field(default_factory=list)
    amount: str = ""  # the amount to show in the form again


TAMPERED = "invoice"  # the problem of a pay form whose invoice ids name no invoice (404)


def read_pay_form(form: Mapping[str, list[str]]) -> Checked[PayForm]:
    """Read the pay form (`forms.Checked`). Ids that are not numbers are a tampered form:
    the problem `TAMPERED`, answered 404. The amounts are checked by `begin`, against the
    balances of the moment."""
    ids: list[int] = []
    for raw in form.get("invoice", [])[: MAX_SELECTED + 1]:
        invoice_id = record_id(raw)
        if invoice_id is None:  # not an id within the database's range: names no invoice
            return Checked(PayForm(), problems={TAMPERED: "No such invoice."})
        if invoice_id not in ids:
            ids.append(invoice_id)
    return Checked(
        PayForm(
            action=(form.get("action") or [""])[0],
            invoice_ids=ids,
            amount=(form.get("amount") or [""])[0].strip()[:40],
            key=(form.get("key") or [""])[0],
        )
    )


def parse_cents(text: str) -> int | None:
    """Dollars as typed ("25", "25.5", "$1,234.56") -> cents; None if not an amount."""
    match = AMOUNT.match(text.strip())
    if not match:
        return None
    whole = int(match.group(1).replace(",", ""))
    part = (match.group(2) or "0").ljust(2, "0")
    return whole * 100 + int(part)


def _part_amount(text: str, invoice: dict[str, Any], currency: str) -> tuple[int, str | None]:
    balance = invoice["balance_cents"]
    if balance < MIN_PART_PAYMENT:
        return 0, f"The balance of {invoice['number']} is under $1.00: pay it in full instead."
    span = f"from {money(MIN_PART_PAYMENT, currency)} to {money(balance, currency)}"
    if not text:
        return 0, f"Enter the amount you want to pay, {span}."
    cents = parse_cents(text)
    if cents is None:
        return 0, f"Enter an amount like 25.00, {span}."
    if not MIN_PART_PAYMENT <= cents <= balance:
        return 0, f"Enter an amount {span}."
    return cents, None


async def begin(
    settings: Settings,
    tenant: TenantRow,
    customer_id: int,
    account_email: str,
    form: PayForm,
    location_ids: list[int] | None = None,
) -> Outcome:
    """Start paying the selected invoices; the amount always comes from the database.
    `location_ids`: a grant's locations, the only ones whose invoices it may pay (None:
    the owner, any)."""
    keep = Outcome(selected=form.invoice_ids)
    if not tenant["card_payments"]:
        keep.message = f"Card payments aren't available online. {call_us(tenant)}"
        return keep
    if not KEY.match(form.key):
        keep.message = (
            "This page was changed or is out of date, so nothing was charged. Please choose again."
        )
        return keep
    if form.action not in ("full", "partial"):
        keep.message = "Choose Pay in full or Pay part of an invoice."
        return keep
    if not form.invoice_ids:
        keep.message = "Select the invoices you want to pay."
        return keep
    if len(form.invoice_ids) > MAX_SELECTED:
        return Outcome(not_found=True)
    gateway = gateway_for(settings, tenant["payment_account_id"])
    existing = await db.payment_by_key(tenant["id"], form.key)
    if existing is not None:
        return await _resume(settings, tenant, customer_id, existing, form, location_ids)
    invoices = await invoices_db.customer_invoices(
        tenant["id"], customer_id, form.invoice_ids, location_ids
    )
    if len(invoices) != len(form.invoice_ids):
        return Outcome(not_found=True)  # another customer's, another business's, or none
    for invoice in invoices:
        if not invoice["payable"]:
            if invoice["void"]:
                keep.message = (
                    f"{invoice['number']} was voided by {tenant['name']}: nothing is owed on it, "
                    "so nothing was charged."
                )
            elif invoice["total_cents"] <= 0:
                keep.message = f"{invoice['number']} has nothing to pay."
            elif invoice["balance_cents"] <= 0:
                keep.message = f"{invoice['number']} is already paid, so nothing was charged."
            else:
                keep.message = (
                    f"{invoice['number']} can't be paid online until its job is finished."
                )
            keep.selected = [i for i in form.invoice_ids if i != invoice["id"]]
            return keep
    if form.action == "partial":
        if len(invoices) != 1:
            keep.message = (
                "To pay part of an invoice, select exactly one invoice. "
                "To pay several invoices at once, use Pay in full."
            )
            return keep
        cents, problem = _part_amount(form.amount, invoices[0], tenant["currency"])
        if problem:
            keep.errors = {"amount": problem}
            return keep
        allocations = {invoices[0]["id"]: cents}
    else:
        if form.amount:
            keep.errors = {
                "amount": "To pay part of an invoice, use Pay part of an invoice. "
                "To pay in full, leave the amount empty."
            }
            return keep
        allocations = {i["id"]: i["balance_cents"] for i in invoices}
    await _release_holds(settings, tenant, allocations, account_email, form.key)
    try:
        started = await db.start_payment(
            tenant_id=tenant["id"],
            customer_id=customer_id,
            account_email=account_email,
            key=form.key,
            kind=form.action,
            gateway=gateway.name,
            payment_account_id=gateway.account_id,
            allocations=allocations,
            balances_seen={i["id"]: i["balance_cents"] for i in invoices},
            numbers={i["id"]: i["number"] for i in invoices},
        )
    except Exception:
        # A concurrent request with the same key inserted first (unique key).
        existing = await db.payment_by_key(tenant["id"], form.key)
        if existing is None:
            raise
        return await _resume(settings, tenant, customer_id, existing, form, location_ids)
    if isinstance(started, db.KeyUsed):
        existing = await db.payment_by_key(tenant["id"], form.key)
        assert existing is not None
        return await _resume(settings, tenant, customer_id, existing, form, location_ids)
    if isinstance(started, db.Refusal):
        keep.message = started.message
        return keep
    logs.event(
        "payment.started",
        "payment started",
        tenant=tenant["id"],
        payment=started,
        amount_cents=sum(allocations.values()),
        customer=customer_id,
        gateway=gateway.name,
    )
    return await _open_checkout(
        settings, tenant, gateway, started, invoices, allocations, account_email
    )


async def _create_checkout(
    settings: Settings,
    tenant: TenantRow,
    gateway: PaymentGateway,
    payment_id: int,
    allocations: dict[int, int],
    description: str,
    customer_email: str,
) -> Checkout:
    """The payment's checkout: the same one each time (same merchant reference and the
    same arguments: the payment's own allocations and account email), with the
    allocations to invoices in its metadata and the payer's email filled in."""
    return await gateway.create_checkout(
        mode="payment",
        merchant_reference=f"pay_{payment_id}",
        amount_cents=sum(allocations.values()),
        currency=tenant["currency"],
        description=description,
        return_url=portal_url(settings, tenant, f"/payments/{payment_id}"),
        callback_url=portal_url(settings, tenant, CALLBACK_PATH),
        metadata=allocation_metadata(allocations),
        customer_email=customer_email,
    )


async def _open_checkout(
    settings: Settings,
    tenant: TenantRow,
    gateway: PaymentGateway,
    payment_id: int,
    invoices: list[dict[str, Any]],
    allocations: dict[int, int],
    customer_email: str,
) -> Outcome:
    """Ask the gateway for the payment's checkout (the same one if asked again)."""
    try:
        checkout = await _create_checkout(
            settings,
            tenant,
            gateway,
            payment_id,
            allocations,
            db.describe(invoices),
            customer_email,
        )
    except GatewayError as exc:
        # The gateway refused or could not be reached: no card page was given to the
        # customer, so there is nothing it could charge.
        log.warning("payment %s: no checkout: %s", payment_id, exc)
        await db.fail_payment(tenant["id"], payment_id, "The payment service could not be reached.")
        return Outcome(
            message="We couldn't reach the payment service, so nothing was charged. "
            "Please try again in a few minutes.",
            selected=list(allocations),
        )
    await db.attach_checkout(tenant["id"], payment_id, checkout.ref)
    if checkout.is_final:
        await settle(settings, tenant, gateway, payment_id, checkout)
        return Outcome(redirect=f"/payments/{payment_id}")
    return Outcome(redirect=checkout.url)


async def _resume(
    settings: Settings,
    tenant: TenantRow,
    customer_id: int,
    existing: dict[str, Any],
    form: PayForm,
    location_ids: list[int] | None = None,
) -> Outcome:
    """The same form sent again (double click, refresh): carry on with its payment."""
    same = (
        existing["customer"] == customer_id
        and existing["kind"] == form.action
        and sorted(a["invoice"] for a in existing["allocations"]) == sorted(form.invoice_ids)
        and (form.action == "full" or parse_cents(form.amount) == existing["amount_cents"])
    )
    if not same:
        return Outcome(
            message="This form was already used for another payment, so nothing more was "
            "charged. Check your selection and try again.",
            selected=form.invoice_ids,
        )
    if existing["status"] == "pending":
        if not existing["gateway_ref"]:
            gateway = gateway_for(settings, existing["payment_account_id"])
            if existing["payment_account_id"] != tenant["payment_account_id"]:
                # Never open a new card page on an account the office has unlinked.
                await close_and_settle(settings, tenant, gateway, existing, ACCOUNT_CHANGED)
                return Outcome(redirect=f"/payments/{existing['id']}")
            invoices = await invoices_db.customer_invoices(
                tenant["id"],
                customer_id,
                [a["invoice"] for a in existing["allocations"]],
                location_ids,
            )
            allocations = {a["invoice"]: a["amount_cents"] for a in existing["allocations"]}
            return await _open_checkout(
                settings,
                tenant,
                gateway,
                existing["id"],
                invoices,
                allocations,
                existing["account_email"],
            )
        checkout = await refresh(settings, tenant, existing)
        if checkout is not None and not checkout.is_final:
            return Outcome(redirect=checkout.url)
    return Outcome(redirect=f"/payments/{existing['id']}")


async def _release_holds(
    settings: Settings,
    tenant: TenantRow,
    allocations: dict[int, int],
    account_email: str,
    key: str,
) -> None:
    """Settle pending payments on these invoices that have in fact ended, and close the
    customer's own unfinished checkouts there (they came back and chose again)."""
    for pending in await db.pending_for_invoices(tenant["id"], sorted(allocations)):
        if pending["idempotency_key"] == key:
            continue
        try:
            gateway = gateway_for(settings, pending["payment_account_id"])
            checkout = await _current_checkout(settings, tenant, gateway, pending)
            if checkout is None:
                continue
            if not checkout.is_final and pending["account_email"] == account_email:
                checkout = await gateway.cancel_checkout(checkout.ref) or checkout
            if checkout.is_final:
                await settle(settings, tenant, gateway, pending["id"], checkout)
        except (GatewayError, PaymentsUnavailable) as exc:  # it keeps holding its invoices
            log.warning("payment %s: status unknown: %s", pending["id"], exc)


async def _current_checkout(
    settings: Settings, tenant: TenantRow, gateway: PaymentGateway, pending: dict[str, Any]
) -> Checkout | None:
    """The gateway's view of a pending payment. A payment whose checkout was never
    recorded (the request died half-way) is given up after a while, and one the gateway
    has no record of at once: both are closed at the gateway first (None then: settled)."""
    if not pending["gateway_ref"]:
        created = pending["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if datetime.now(UTC) - created > UNREFERENCED_HOLD:
            await close_and_settle(
                settings, tenant, gateway, pending, "The payment page was never opened."
            )
        return None
    checkout = await gateway.get_checkout(pending["gateway_ref"])
    if checkout is None:
        await close_and_settle(
            settings,
            tenant,
            gateway,
            pending,
            "The payment service has no record of this payment.",
        )
    return checkout


async def close_and_settle(
    settings: Settings,
    tenant: TenantRow,
    gateway: PaymentGateway,
    payment: dict[str, Any],
    reason: str,
) -> str:
    """Give up a pending payment without ever failing one that can still be paid: its
    checkout is closed at the gateway (the payment's own account) first. If the close
    shows the customer had paid (or the page had ended another way), that outcome is
    settled; otherwise the payment fails with `reason`. Returns the payment's status.
    Raises GatewayError (the payment stays pending, holding its invoices)."""
    ref = payment["gateway_ref"]
    if ref:
        found = await gateway.get_checkout(ref) or await gateway.cancel_checkout(ref)
    else:
        # The reference was never stored; the same merchant reference gives the same
        # checkout (or a new one, closed at once), so it can be closed all the same.
        full = await db.payment(tenant["id"], payment["id"])
        assert full is not None
        found = await _create_checkout(
            settings,
            tenant,
            gateway,
            payment["id"],
            {a["invoice"]: a["amount_cents"] for a in full["allocations"]},
            db.describe(full["allocations"]),
            full["account_email"],
        )
    if found is not None and not found.is_final:
        closed = await gateway.cancel_checkout(found.ref)
        if closed is None or not closed.is_final:
            raise GatewayError(f"checkout {found.ref} could not be closed")
        if not closed.succeeded:  # closed by us: the reason is ours, not "canceled"
            await db.fail_payment(tenant["id"], payment["id"], reason, found.ref)
            return "failed"
        found = closed
    if found is not None:
        return await settle(settings, tenant, gateway, payment["id"], found)
    await db.fail_payment(tenant["id"], payment["id"], reason)
    return "failed"


async def settle(
    settings: Settings,
    tenant: TenantRow,
    gateway: PaymentGateway,
    payment_id: int,
    checkout: Checkout,
) -> str:
    """Apply a final checkout of `gateway`'s account to its payment, once. Returns the
    payment's status ("mismatch" for a checkout or account that is not the payment's)."""
    payment = await db.payment(tenant["id"], payment_id)
    if payment is None:
        return "unknown"
    if (
        checkout.merchant_reference != f"pay_{payment_id}"
        or (payment["gateway_ref"] and payment["gateway_ref"] != checkout.ref)
        or payment["payment_account_id"] != gateway.account_id
    ):
        log.warning("payment %s: checkout %s does not match", payment_id, checkout.ref)
        return "mismatch"
    if payment["status"] == "failed" and checkout.succeeded:
        return await _late_success(settings, tenant, gateway, payment, checkout)
    if payment["status"] != "pending":
        result: str = payment["status"]
        return result
    if checkout.succeeded and (
        checkout.amount_cents != payment["amount_cents"] or checkout.currency != tenant["currency"]
    ):
        await gateway.refund(checkout.ref)
        await db.fail_payment(
            tenant["id"],
            payment_id,
            "The amount charged did not match; it was refunded.",
            checkout.ref,
            refunded=True,
        )
        return "failed"
    try:
        result = await settlement.settle_payment(settings, tenant, payment_id, checkout)
    except db.BalanceChanged as exc:
        # Someone else paid this invoice meanwhile: give the money back, apply nothing.
        await gateway.refund(checkout.ref)
        await db.fail_payment(
            tenant["id"],
            payment_id,
            f"The balance of {exc.number} changed before this payment finished, "
            "so it was refunded in full.",
            checkout.ref,
            refunded=True,
        )
        return "failed"
    if result == "succeeded":
        wake()  # the receipt email is in the outbox
    if result == "unchanged":
        settled = await db.payment(tenant["id"], payment_id)
        return settled["status"] if settled else "unknown"
    return result


async def _late_success(
    settings: Settings,
    tenant: TenantRow,
    gateway: PaymentGateway,
    payment: dict[str, Any],
    reported: Checkout,
) -> str:
    """A success for a payment the portal had already marked failed: the customer was
    charged, so the money is never dropped. It is applied to the invoices if their
    balances still cover it; if not (an invoice was paid another way meanwhile, often by
    the customer trying again), it is refunded in full: the portal keeps no credit
    balances, and a refund puts the money back where it came from without anyone having
    to remember it. Either way the job's audit trail has it and the office is alerted."""
    if payment["refunded_at"] is not None:
        return "failed"  # already given back
    # Ask the gateway itself: a replayed old report must not count a refunded charge.
    current = await gateway.get_checkout(reported.ref)
    if current is None or not current.succeeded:
        result: str = payment["status"]
        return result
    if current.amount_cents != payment["amount_cents"] or current.currency != tenant["currency"]:
        log.warning("payment %s: late success for another amount", payment["id"])
        await gateway.refund(current.ref)
        await settlement.record_late_refund(
            settings, tenant, payment["id"], current, "the amount charged did not match"
        )
        wake()  # the office's alert email
        return "failed"
    log.warning("payment %s: success reported after it was marked failed", payment["id"])
    try:
        result = await settlement.settle_payment(
            settings,
            tenant,
            payment["id"],
            current,
            late_reason=payment["failure_reason"] or "no reason recorded",
        )
    except db.BalanceChanged as exc:
        await gateway.refund(current.ref)
        await settlement.record_late_refund(
            settings, tenant, payment["id"], current, f"{exc.number} had been paid in the meantime"
        )
        wake()  # the office's alert email
        return "failed"
    if result == "succeeded":
        wake()  # the receipt and the office's alert email
        return "succeeded"
    settled = await db.payment(tenant["id"], payment["id"])
    return settled["status"] if settled else "unknown"


async def refresh(
    settings: Settings, tenant: TenantRow, payment: dict[str, Any]
) -> Checkout | None:
    """Bring a pending payment up to date by asking the gateway of its account (the
    customer came back before the callback). Returns the checkout, if the gateway knows it."""
    if payment["status"] != "pending":
        return None
    try:
        gateway = gateway_for(settings, payment["payment_account_id"])
        checkout = await _current_checkout(settings, tenant, gateway, payment)
        if checkout is not None and checkout.is_final:
            await settle(settings, tenant, gateway, payment["id"], checkout)
        elif checkout is not None and checkout.processing:
            from portal.payments import bank_debits  # a bank debit: days to settle

            await bank_debits.mark_processing(tenant, payment["id"], checkout)
        return checkout
    except (GatewayError, PaymentsUnavailable) as exc:
        log.warning("payment %s: status unknown: %s", payment["id"], exc)
        return None


def as_sentence(text: str) -> str:
    """A reason as one sentence: capitalised, ending in exactly one full stop (a gateway's
    reason may come with or without one), so it reads right before "You can try again."."""
    text = text.strip().rstrip(".").rstrip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in "!?" else text + "."


async def failed_payment(
    tenant: TenantRow, customer_id: int, payment_id: int, location_ids: list[int] | None = None
) -> Outcome | None:
    """What to show on the Invoices tab after a payment failed: why (and that its charge
    was given back, if it was), with its invoices (and amount) chosen again so the
    customer can try again (`location_ids`: a grant's, whose payments only)."""
    failed = await db.receipt(tenant["id"], customer_id, payment_id, location_ids)
    if failed is None or failed["status"] != "failed":
        return None
    if failed["refunded_at"] is not None:
        message = (
            f"Your payment of {money(failed['amount_cents'], tenant['currency'])} was refunded: "
            f"{as_sentence(failed['failure_reason'])} Your balances are unchanged."
        )
    else:
        message = (
            f"Your payment didn't go through: {as_sentence(failed['failure_reason'])} "
            "Nothing was charged and your balances are unchanged. You can try again."
        )
    return Outcome(
        message=message,
        selected=[line["id"] for line in failed["lines"]],
        amount=f"{failed['amount_cents'] / 100:.2f}" if failed["kind"] == "partial" else "",
    )


async def reconcile_customer(settings: Settings, tenant: TenantRow, customer_id: int) -> None:
    """Settle the customer's pending payments that have in fact ended at the gateway
    (a callback that never arrived must not leave a paid invoice looking unpaid), each
    with the gateway of the account it started on. Pages call it only when the session
    read flagged a pending payment."""
    await _ask_gateways(settings, tenant, await db.pending_for_customer(tenant["id"], customer_id))


async def reconcile_stale(settings: Settings, moment: datetime | None = None) -> int:
    """Settle the pending payments of every business that are older than `STALE_AFTER`
    and have in fact ended at the gateway (run by the background worker). A callback can
    be lost for good — the sandbox delivers it once, from the process that took the card,
    and that process may die right after the charge — and the customer may never come
    back to a page that would ask: the money was taken, so the payment must be recorded
    all the same. Returns how many payments were asked about."""
    from portal.db import queries
    from portal.db.tables import Tenant

    before = (moment or datetime.now(UTC)) - STALE_AFTER
    pending = await db.pending_since_before(before)
    by_tenant: dict[int, list[dict[str, Any]]] = {}
    for payment in pending:
        by_tenant.setdefault(payment["tenant"], []).append(payment)
    for tenant_id, payments in by_tenant.items():
        row = await Tenant.select(Tenant.host).where(Tenant.id == tenant_id).first().run()
        tenant = await queries.tenant_by_host(row["host"]) if row else None
        if tenant is not None:
            await _ask_gateways(settings, tenant, payments)
    return len(pending)


async def _ask_gateways(
    settings: Settings, tenant: TenantRow, pending: list[dict[str, Any]]
) -> None:
    """Ask each pending payment's own gateway how it ended; settle those that did."""
    for payment in pending:
        try:
            gateway = gateway_for(settings, payment["payment_account_id"])
            checkout = await _current_checkout(settings, tenant, gateway, payment)
            if checkout is not None and checkout.is_final:
                await settle(settings, tenant, gateway, payment["id"], checkout)
        except (GatewayError, PaymentsUnavailable) as exc:
            log.warning("payment %s: status unknown: %s", payment["id"], exc)


async def handle_callback(
    settings: Settings, tenant: TenantRow, headers: Mapping[str, str], body: bytes
) -> tuple[int, dict[str, str]]:
    """A gateway's callback: (HTTP status, JSON answer). Only a callback signed by one of
    this business's payment accounts (linked now or before) for one of its payments that
    started on that same account changes anything."""
    if len(body) > MAX_CALLBACK_BYTES:
        return 413, {"error": "too large"}
    try:
        event = verify_callback(settings, await payment_accounts.accounts_of(tenant), headers, body)
    except PaymentsUnavailable:
        return 404, {"error": "no payment account"}
    except BadCallback as exc:
        log.warning("refused a payment callback: %s", exc)
        return 403, {"error": "bad signature"}
    checkout = event.checkout
    match = REFERENCE.match(checkout.merchant_reference)
    if checkout.mode != "payment" or match is None:
        return 404, {"error": "unknown checkout"}
    if not checkout.is_final:
        return 200, {"status": "pending"}
    gateway = gateway_for(settings, event.account_id)
    status = await settle(settings, tenant, gateway, int(match.group(1)), checkout)
    if status == "unknown":
        return 404, {"error": "unknown payment"}
    if status == "mismatch":
        return 409, {"error": "checkout does not match the payment"}
    return 200, {"status": status}
