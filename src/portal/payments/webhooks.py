"""Stripe's webhooks: one endpoint per business, `/payments/stripe/webhook` on its own host.

Receiving (`stripe_webhook`): the signature is checked with the SDK's own
`stripe.Webhook.construct_event` (Stripe's scheme, 5-minute timestamp tolerance) against
the webhook secret of each Stripe account the business linked, now or before; a verified
event is kept once per event id (`stripe_event`, unique) and answered 200 at once,
whatever its type: Stripe disables endpoints that keep failing, and an event the portal
has no use for is still acknowledged. Only a request that is not Stripe's (bad signature,
not JSON) gets a 400.

Processing (`process_event`), after the answer (a background task, and the worker for
any left over): the event only says *that* something changed; the portal asks Stripe for
the object's current state and applies that, so late, repeated and out-of-order events
all end the same way.

Reconciliation (`reconcile`): the worker asks the gateway about payments pending too long,
so a webhook that never arrives never leaves a paid invoice unpaid.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask

from portal.auth.context import TenantDep
from portal.config import Settings
from portal.db import card_updates, payment_accounts, stripe_accounts
from portal.db.office import tenant_by_id
from portal.db.rows import TenantRow
from portal.db.tables import Payment
from portal.payments import card_updates as card_rules
from portal.payments import service
from portal.payments.gateway import Checkout, GatewayError, PaymentsUnavailable
from portal.payments.registry import gateway_for
from portal.payments.stripe_gateway import StripeGateway
from portal.vault import VaultUnavailable

log = logging.getLogger("portal.payments.webhooks")

WEBHOOK_PATH = "/payments/stripe/webhook"
MAX_BODY = 256 * 1024
TOLERANCE_SECONDS = 300
PAYMENT_REF = re.compile(r"^pay_(\d{1,12})$")
CARD_REF = re.compile(r"^card_(\d{1,12})$")
# A card page left open this long is closed by the reconciliation (the sandbox's own
# pages live this long; Stripe's would live 24 hours, holding the invoices meanwhile).
PAGE_LIFETIME = timedelta(minutes=30)
RECONCILE_BATCH = 50


async def receive(
    settings: Settings, tenant: TenantRow, signature: str, body: bytes
) -> tuple[int, dict[str, Any], int | None]:
    """(HTTP status, JSON answer, inbox row id to process now or None)."""
    if len(body) > MAX_BODY:
        return 413, {"error": "too large"}, None
    accounts = await payment_accounts.accounts_of(tenant)
    try:
        secrets_ = await stripe_accounts.webhook_secrets(settings, tenant["id"], accounts)
    except VaultUnavailable as exc:
        # Stripe retries for days: answering 503 keeps the event until the key is back.
        log.error("stripe webhook for %s not verified: %s", tenant["host"], exc)
        return 503, {"error": "not configured"}, None
    for account_id, secret in secrets_:
        try:
            event = stripe.Webhook.construct_event(
                body, signature, secret, tolerance=TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        except ValueError:
            return 400, {"error": "not JSON"}, None
        obj = (event.to_dict().get("data") or {}).get("object") or {}
        row_id = await stripe_accounts.record_event(
            tenant["id"], account_id, event["id"], event["type"], str(obj.get("id", ""))
        )
        return 200, {"received": True, "duplicate": row_id is None}, row_id
    log.warning("refused a Stripe webhook for %s: bad signature", tenant["host"])
    return 400, {"error": "bad signature"}, None


@post(WEBHOOK_PATH, exclude_from_csrf=True, include_in_schema=False, status_code=200)
async def stripe_webhook(request: Request[Any, Any, Any], tenant: TenantDep) -> Response[Any]:
    """Verify and keep a Stripe event, answer at once, process it after the answer."""
    settings = request.app.state.settings
    status, answer, row_id = await receive(
        settings, tenant, request.headers.get("stripe-signature", ""), await request.body()
    )
    background = BackgroundTask(process_due, settings, row_id) if row_id else None
    return Response(
        json.dumps(answer).encode(),
        status_code=status,
        media_type="application/json",
        background=background,
    )


async def process_due(settings: Settings, only: int | None = None) -> int:
    """Process the inbox's unprocessed events (`only`: that one); returns how many were
    done. An event that fails (Stripe unreachable) is tried again after its lease."""
    done = 0
    while rows := await stripe_accounts.claim_events(only=only):
        for row in rows:
            try:
                await process_event(settings, row)
            except (GatewayError, PaymentsUnavailable) as exc:
                log.warning("stripe event %s: will try again: %s", row["event_id"], exc)
                await stripe_accounts.finish_event(row["id"], str(exc))
                continue
            await stripe_accounts.finish_event(row["id"])
            done += 1
        if only is not None:
            break
    return done


async def process_event(settings: Settings, row: dict[str, Any]) -> None:
    """Apply one event: re-read its object from Stripe and act on the current state."""
    tenant = await tenant_by_id(row["tenant"])
    gateway = gateway_for(settings, row["account_id"])
    if not isinstance(gateway, StripeGateway):
        return
    kind, object_id = row["type"], row["object_id"]
    if kind.startswith("checkout.session."):
        checkout = await gateway.get_checkout(object_id)
    elif kind.startswith("payment_intent."):
        checkout = await gateway.session_of_intent(object_id)
    elif kind in ("charge.succeeded", "charge.failed", "charge.pending"):
        charge = await gateway.retrieve("charge", object_id)
        intent = charge.get("payment_intent") if charge else None
        checkout = await gateway.session_of_intent(intent) if intent else None
    else:
        from portal.payments import refunds  # refunds and disputes (issue 14.5)

        await refunds.on_event(settings, tenant, gateway, kind, object_id)
        return
    if checkout is not None:
        await apply_checkout(settings, tenant, gateway, checkout)


async def apply_checkout(
    settings: Settings, tenant: TenantRow, gateway: StripeGateway, checkout: Checkout
) -> str:
    """Settle the payment or card update a session belongs to, if it has ended."""
    payment = PAYMENT_REF.match(checkout.merchant_reference)
    if payment and checkout.mode == "payment":
        payment_id = int(payment.group(1))
        if checkout.status == "declined" and checkout.payment_intent:
            from portal.payments import bank_debits

            if await bank_debits.fail_processing(settings, tenant, payment_id, checkout):
                return "failed"
        if checkout.is_final:
            return await service.settle(settings, tenant, gateway, payment_id, checkout)
        if checkout.processing:
            from portal.payments import bank_debits

            return await bank_debits.mark_processing(tenant, payment_id, checkout)
        return "pending"
    card = CARD_REF.match(checkout.merchant_reference)
    if card and checkout.mode == "setup" and checkout.is_final:
        update = await card_updates.get(tenant["id"], int(card.group(1)))
        if update is None or update["payment_account_id"] != gateway.account_id:
            return "mismatch"
        if update["gateway_ref"] and update["gateway_ref"] != checkout.ref:
            return "mismatch"
        return await card_rules.settle(tenant["id"], update["id"], checkout, gateway.account_id)
    return "ignored"


async def reconcile(settings: Settings, now: datetime | None = None) -> int:
    """Ask the gateway about payments pending longer than `reconcile_after_seconds`
    (every business): settle what has ended, close card pages left open past
    PAGE_LIFETIME. Returns how many were looked at."""
    moment = now or datetime.now(UTC)
    cutoff = moment - timedelta(seconds=settings.reconcile_after_seconds)
    columns = (
        Payment.id,
        Payment.tenant,
        Payment.gateway_ref,
        Payment.account_email,
        Payment.created_at,
        Payment.payment_account_id,
        Payment.amount_cents,
        Payment.status,
        Payment.processing_at,
    )
    due = (Payment.status == "pending") & (Payment.created_at < cutoff)
    # Card pages first, then bank debits (which take days): a pile of debits on their way
    # never keeps a paid card payment from being looked at.
    rows = (
        await Payment.select(*columns)
        .where(due & Payment.processing_at.is_null())
        .order_by(Payment.id)
        .limit(RECONCILE_BATCH)
        .run()
    ) + (
        await Payment.select(*columns)
        .where(due & Payment.processing_at.is_not_null())
        .order_by(Payment.processing_at)
        .limit(RECONCILE_BATCH // 5)
        .run()
    )
    tenants: dict[int, TenantRow] = {}
    for payment in rows:
        if payment["tenant"] not in tenants:
            tenants[payment["tenant"]] = await tenant_by_id(payment["tenant"])
        tenant = tenants[payment["tenant"]]
        try:
            if payment["processing_at"] and payment["gateway_ref"]:
                # A bank debit on its way: days, not minutes; only its end matters.
                gateway = gateway_for(settings, payment["payment_account_id"])
                found = await gateway.get_checkout(payment["gateway_ref"])
                if found is not None and isinstance(gateway, StripeGateway):
                    await apply_checkout(settings, tenant, gateway, found)
                continue
            checkout = await service.refresh(settings, tenant, payment)
            if checkout is None or checkout.is_final:
                continue
            if checkout.processing:
                from portal.payments import bank_debits

                await bank_debits.mark_processing(tenant, payment["id"], checkout)
                continue
            created = payment["created_at"]
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            if moment - created > PAGE_LIFETIME:
                gateway = gateway_for(settings, payment["payment_account_id"])
                await service.close_and_settle(
                    settings,
                    tenant,
                    gateway,
                    payment,
                    "The payment page expired before the payment was made.",
                )
        except (GatewayError, PaymentsUnavailable) as exc:
            log.warning("payment %s: not reconciled: %s", payment["id"], exc)
    return len(rows)


ROUTES = [stripe_webhook]
