"""Piccolo tables: the whole data model.

Every row belongs to one business (`tenant`); queries always filter on it.
Money is integer cents. Times are UTC (`Timestamptz`); dates without a time
(invoice date, visit date) are the business's local calendar dates.
Unique constraints, checks and indexes are declared in the migration
`..._constraints_and_indexes.py` as plain SQL, because Piccolo adds constraints
with `ALTER TABLE … ADD CONSTRAINT`, which SQLite does not support.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import (
    BigInt,
    Boolean,
    Bytea,
    Date,
    ForeignKey,
    Integer,
    Real,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.base import Engine
from piccolo.table import Table


class Tenant(Table, tablename="tenant"):
    """A business with its customer portal and portal settings."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    host = Varchar(length=40, unique=True)
    # The business's own domain (portal.xyzplumbing.com), its primary address when set;
    # unique (index in the migration). `portal domain` sets it (DNS and TLS are the
    # operator's: docs/deploy.md).
    custom_domain = Varchar(length=253, null=True, default=None)
    name = Varchar(length=120)
    email = Varchar(length=254, default="")
    phone = Varchar(length=40, default="")
    time_zone = Varchar(length=64, default="America/Chicago")
    currency = Varchar(length=3, default="USD")
    logo = Bytea(null=True, default=None)
    logo_content_type = Varchar(length=40, default="")
    logo_version = Integer(default=0)
    logo_2x = Bytea(null=True, default=None)  # the logo 100 px high, for 2× screens
    logo_width = Integer(default=0)  # CSS pixels at 50 px high (0: not known)
    logo_sharp = Boolean(default=False)  # logo_2x holds a copy
    # Portal settings (Settings › Customer Portal).
    legal_accepted_at = Timestamptz(null=True, default=None)
    legal_accepted_by = Varchar(length=254, default="")
    portal_enabled = Boolean(default=False)
    scheduler_enabled = Boolean(default=False)
    service_types = Text(default="[]")  # JSON list of names customers may request
    memberships_enabled = Boolean(default=False)
    membership_statuses = Text(default="[]")  # JSON list among canceled/expired/suspended
    recurring_service_message = Text(default="")
    payment_account_id = Varchar(length=80, default="")  # the one linked gateway account
    payments_enabled = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class BusinessUnit(Table, tablename="business_unit"):
    """A trade division (Plumbing, HVAC…); the office chooses whose invoices download."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    name = Varchar(length=80)
    invoices_downloadable = Boolean(default=True)


class StaffUser(Table, tablename="staff_user"):
    """Office staff who sign in under /office/."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    email = Varchar(length=254)
    name = Varchar(length=120, default="")
    role = Varchar(length=10, default="office")  # admin | office
    password_hash = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    disabled_at = Timestamptz(null=True, default=None)  # set: cannot sign in (re-enabled: cleared)


class Customer(Table, tablename="customer"):
    """A customer record of the business (residential or commercial)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    external_id = Varchar(length=64)  # the business's own customer number
    name = Varchar(length=200)
    kind = Varchar(length=12, default="residential")  # residential | commercial
    phone = Varchar(length=40, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class CustomerEmail(Table, tablename="customer_email"):
    """A contact email on a customer's record; only these may sign up."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.cascade)
    email = Varchar(length=254)  # stored lower-cased


class Location(Table, tablename="location"):
    """A service address of a customer."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.cascade)
    external_id = Varchar(length=64)
    name = Varchar(length=120, default="")
    street = Varchar(length=200)
    city = Varchar(length=100, default="")
    state = Varchar(length=40, default="")
    zip = Varchar(length=20, default="")


class BookingRequest(Table, tablename="booking_request"):
    """An appointment request from the portal's scheduler, handled under Bookings."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.cascade)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.cascade)
    account_email = Varchar(length=254, default="")
    service_type = Varchar(length=80)
    preferred_windows = Text(default="[]")  # JSON list of {"date": "YYYY-MM-DD", "window": ...}
    notes = Text(default="")
    status = Varchar(length=10, default="new")  # new | booked | dismissed
    dismiss_reason = Text(default="")
    idempotency_key = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    handled_at = Timestamptz(null=True, default=None)
    handled_by = Varchar(length=254, default="")


class Job(Table, tablename="job"):
    """Work done (or to be done) at a location by a business unit."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.restrict)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.restrict)
    business_unit = ForeignKey(null=False, references=BusinessUnit, on_delete=OnDelete.restrict)
    booking_request = ForeignKey(
        references=BookingRequest, null=True, default=None, on_delete=OnDelete.restrict
    )
    number = Varchar(length=32)
    summary = Varchar(length=300, default="")
    status = Varchar(
        length=12, default="scheduled"
    )  # scheduled | in_progress | completed | canceled
    scheduled_start = Timestamptz(null=True, default=None)
    scheduled_end = Timestamptz(null=True, default=None)
    completed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Invoice(Table, tablename="invoice"):
    """An invoice for a job. `balance_cents` never goes below zero (checked in the database)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.restrict)
    job = ForeignKey(null=False, references=Job, on_delete=OnDelete.restrict)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.restrict)
    business_unit = ForeignKey(null=False, references=BusinessUnit, on_delete=OnDelete.restrict)
    number = Varchar(length=32)
    invoice_date = Date()
    due_date = Date(null=True, default=None)
    summary = Varchar(length=300, default="")
    total_cents = Integer()
    balance_cents = Integer()
    # issued | void. The system of record voids an invoice it no longer bills; a void one
    # owes nothing (balance 0, checked in the database), so every "balance > 0" read
    # leaves it out, and it shows as Void in History and the office.
    status = Varchar(length=8, default="issued")
    created_at = Timestamptz(default=TimestamptzNow())


class InvoiceLine(Table, tablename="invoice_line"):
    """One line of an invoice."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    invoice = ForeignKey(null=False, references=Invoice, on_delete=OnDelete.cascade)
    position = Integer(default=0)
    description = Varchar(length=300)
    quantity = Real(default=1.0)
    unit_price_cents = Integer(default=0)
    amount_cents = Integer()


class PortalAccount(Table, tablename="portal_account"):
    """A customer's sign-in for one business; sees every customer record listing its email."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    email = Varchar(length=254)  # lower-cased
    password_hash = Varchar(length=200, default="")
    confirmed_at = Timestamptz(null=True, default=None)
    password_changed_at = Timestamptz(null=True, default=None)
    last_sign_in_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Payment(Table, tablename="payment"):
    """One payment, allocated to one or more invoices. Never holds a card number."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.restrict)
    account_email = Varchar(length=254, default="")
    amount_cents = Integer()
    kind = Varchar(length=8, default="full")  # full | partial
    status = Varchar(length=10, default="pending")  # pending | succeeded | failed
    idempotency_key = Varchar(length=64)
    gateway = Varchar(length=20, default="sandbox")
    # The payment account it started on: settled, refunded and closed through that one,
    # even after the office unlinks it.
    payment_account_id = Varchar(length=80, default="")
    gateway_ref = Varchar(length=80, default="")
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    failure_reason = Varchar(length=200, default="")
    source = Varchar(length=10, default="portal")  # portal | office | import
    created_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)
    refunded_at = Timestamptz(null=True, default=None)  # the charge was given back in full
    # A bank debit (ACH) submitted and not yet settled: still pending, shown as
    # "Processing" to the customer and the office until it settles or fails, days later.
    processing_at = Timestamptz(null=True, default=None)
    refunded_cents = Integer(default=0)  # given back so far (refunds, full or partial)


class PaymentAllocation(Table, tablename="payment_allocation"):
    """The part of a payment applied to one invoice."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    payment = ForeignKey(null=False, references=Payment, on_delete=OnDelete.restrict)
    invoice = ForeignKey(null=False, references=Invoice, on_delete=OnDelete.restrict)
    amount_cents = Integer()
    refunded_cents = Integer(default=0)  # given back to the payer: owed on the invoice again


class PaymentRefund(Table, tablename="payment_refund"):
    """Money given back from a payment, in full or in part: by an administrator in the
    office (recorded before the gateway is asked, as a payment is) or in the gateway's
    own dashboard (learnt from its webhook)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    payment = ForeignKey(null=False, references=Payment, on_delete=OnDelete.restrict)
    amount_cents = Integer()
    reason = Varchar(length=200, default="")
    status = Varchar(length=10, default="pending")  # pending | succeeded | failed
    source = Varchar(length=10, default="office")  # office | gateway (its dashboard)
    actor = Varchar(length=254, default="")  # the staff member's email
    gateway_refund_id = Varchar(length=80, default="")  # re_... (Stripe)
    failure_reason = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)


class Membership(Table, tablename="membership"):
    """A membership (residential) or contract (commercial) with its billing card on file."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.restrict)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.restrict)
    external_id = Varchar(length=64)
    type_name = Varchar(length=120)
    status = Varchar(length=10, default="active")  # active | canceled | expired | suspended
    start_date = Date()
    end_date = Date(null=True, default=None)
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    card_token = Varchar(length=80, default="")  # the gateway's token, never a card number
    created_at = Timestamptz(default=TimestamptzNow())


class Visit(Table, tablename="visit"):
    """A maintenance visit included in a membership."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    membership = ForeignKey(null=False, references=Membership, on_delete=OnDelete.cascade)
    visit_date = Date()
    window_start = Varchar(length=5, default="08:00")  # local time HH:MM
    window_end = Varchar(length=5, default="12:00")
    description = Varchar(length=200, default="")
    status = Varchar(length=10, default="upcoming")  # upcoming | completed | canceled


class AuditEvent(Table, tablename="audit_event"):
    """The trail of a job, invoice or membership: who did what, when."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    job = ForeignKey(references=Job, null=True, default=None, on_delete=OnDelete.cascade)
    invoice = ForeignKey(references=Invoice, null=True, default=None, on_delete=OnDelete.cascade)
    membership = ForeignKey(
        references=Membership, null=True, default=None, on_delete=OnDelete.cascade
    )
    actor = Varchar(length=254, default="")
    action = Varchar(length=40)
    detail = Text(default="")
    amount_cents = Integer(null=True, default=None)
    reference = Varchar(length=80, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class AccessGrant(Table, tablename="access_grant"):
    """Issue 16.4: the owner of a customer record shares it with another person (by email)
    for chosen locations, with a role: full (pay, request appointments, manage cards),
    billing (invoices, history, pay) or view. Revoking sets `revoked_at` and deletes
    nothing, so the office keeps the history. `granted_by` and `revoked_by` are emails kept
    as text ("office: <staff email>" for the office), so erasing an account rewrites no
    history. Indexes in the migration: (tenant, invitee_email) of the live grants (the
    session read) and (tenant, customer)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.cascade)
    invitee_email = Varchar(length=254)  # lower-cased
    role = Varchar(length=10)  # full | billing | view
    granted_by = Varchar(length=254)
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    revoked_by = Varchar(length=254, null=True, default=None)


class AccessGrantLocation(Table, tablename="access_grant_location"):
    """A location a grant reaches (unique per grant and location, in the migration)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    grant = ForeignKey(null=False, references=AccessGrant, on_delete=OnDelete.cascade)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.cascade)


class Session(Table, tablename="session"):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    token_hash = Varchar(length=64, unique=True)
    kind = Varchar(length=10)  # customer | staff
    account = ForeignKey(
        references=PortalAccount, null=True, default=None, on_delete=OnDelete.cascade
    )
    staff = ForeignKey(references=StaffUser, null=True, default=None, on_delete=OnDelete.cascade)
    active_customer_id = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()  # absolute limit
    # Shown on the customer's security page: "Chrome on Android", "203.0.113.x".
    browser = Varchar(length=120, default="")
    network = Varchar(length=64, default="")


class SignInRecord(Table, tablename="sign_in_record"):
    """One sign-in to a customer account: when, how, from which browser and (roughly) which
    network. `device_hash` is the hash of the browser's long-lived device cookie, so a
    sign-in from a browser never seen before can be told (and emailed about)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account = ForeignKey(
        null=False, references=PortalAccount, on_delete=OnDelete.cascade, index=True
    )
    method = Varchar(length=10)  # password | link | passkey | confirm | reset
    browser = Varchar(length=120, default="")
    network = Varchar(length=64, default="")
    device_hash = Varchar(length=64, default="")
    signed_in_at = Timestamptz(default=TimestamptzNow())


class Passkey(Table, tablename="passkey"):
    """A WebAuthn credential of a customer account (the business's host is its relying
    party). Only the public key is kept; the private key never leaves the authenticator."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account = ForeignKey(
        null=False, references=PortalAccount, on_delete=OnDelete.cascade, index=True
    )
    credential_id = Varchar(length=1400, unique=True)  # base64url, up to 1023 bytes
    public_key = Text()  # base64url COSE key
    sign_count = Integer(default=0)
    transports = Varchar(length=200, default="")
    name = Varchar(length=120, default="")  # the browser it was added with
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)


class PasskeyChallenge(Table, tablename="passkey_challenge"):
    """A WebAuthn challenge handed to a browser: used once, for a few minutes, bound to the
    business, the purpose and (adding a passkey) the account."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account = ForeignKey(
        references=PortalAccount, null=True, default=None, on_delete=OnDelete.cascade
    )
    purpose = Varchar(length=10)  # register | sign-in
    challenge_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()


class AuthToken(Table, tablename="auth_token"):
    """A confirmation or password-reset link's token, stored hashed, single use."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account = ForeignKey(null=False, references=PortalAccount, on_delete=OnDelete.cascade)
    purpose = Varchar(length=10)  # confirm | reset | signin
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class OutboxEmail(Table, tablename="outbox_email"):
    """An email waiting to be sent (or sent). Written in the transaction that causes it."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(references=Tenant, null=True, default=None, on_delete=OnDelete.cascade)
    message_id = Varchar(length=200, unique=True)
    to_addr = Varchar(length=254)
    from_name = Varchar(length=120, default="")
    reply_to = Varchar(length=254, default="")
    subject = Varchar(length=300)
    text_body = Text()
    html_body = Text(default="")
    status = Varchar(length=10, default="pending")  # pending | sent | failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    locked_until = Timestamptz(null=True, default=None)
    last_error = Varchar(length=500, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)


class NotificationTemplate(Table, tablename="notification_template"):
    """A business's wording for one kind of email (invoice, booking received…)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    key = Varchar(length=40)
    subject = Varchar(length=300)
    body = Text()
    updated_at = Timestamptz(default=TimestamptzNow())


class ThrottleCount(Table, tablename="throttle_count"):
    """Attempts counted against one key of a business (an email, a client address) in the
    current window. One row per (tenant, key), counted and checked in one statement
    (auth/throttle.py); unique on (tenant, key)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    key = Varchar(length=400)
    hits = Integer(default=0)
    resets_at = BigInt(default=0)  # Unix seconds: when the window ends and counting restarts


class AccountRequest(Table, tablename="account_request"):
    """Someone asked for an invitation or a password reset for an email. The request only
    records this; the background worker looks the email up and decides what to send, so the
    request does the same work whatever the email (auth/account_requests.py)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    kind = Varchar(length=10)  # invite | reset | signin
    email = Varchar(length=320)
    created_at = Timestamptz(default=TimestamptzNow())


class CardUpdate(Table, tablename="card_update"):
    """A customer's request to change the card on file of a membership, via the gateway."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.restrict)
    membership = ForeignKey(null=False, references=Membership, on_delete=OnDelete.restrict)
    account_email = Varchar(length=254, default="")
    idempotency_key = Varchar(length=64)
    payment_account_id = Varchar(length=80, default="")  # the account it started on
    gateway_ref = Varchar(length=80, default="")
    status = Varchar(length=10, default="pending")  # pending | succeeded | failed
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    failure_reason = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)


class PaymentAccount(Table, tablename="payment_account"):
    """A payment account the business has linked, now or before. Callbacks are verified
    with the account they are signed for, if it is one of these, so a payment that
    started on an account the office has since unlinked is still recorded."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account_id = Varchar(length=80)
    linked_at = Timestamptz(default=TimestamptzNow())
    unlinked_at = Timestamptz(null=True, default=None)


class OfficeAlert(Table, tablename="office_alert"):
    """Something office staff must look at (e.g. a card payment that arrived after the
    portal had called it failed): shown at the top of every office page until a staff
    member marks it as seen."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    kind = Varchar(length=40)  # late_payment | late_payment_refunded
    title = Varchar(length=200)
    message = Text()
    reference = Varchar(length=80, default="")  # the gateway's reference of the payment
    created_at = Timestamptz(default=TimestamptzNow())
    seen_at = Timestamptz(null=True, default=None)
    seen_by = Varchar(length=254, default="")


class SandboxCheckout(Table, tablename="sandbox_checkout"):
    """The sandbox gateway's own record of a hosted card page.

    It stands in for the card provider's side: in production this lives at the
    provider. The portal's tables never see the card number; this one neither
    (only brand, last four digits and a token).
    """

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    public_id = Varchar(length=64, unique=True)
    account_id = Varchar(length=80)
    mode = Varchar(length=10)  # payment | setup
    amount_cents = Integer(default=0)
    currency = Varchar(length=3, default="USD")
    description = Varchar(length=300, default="")
    merchant_reference = Varchar(length=80)
    return_url = Text()
    callback_url = Text()
    status = Varchar(length=10, default="open")  # open | succeeded | declined | canceled
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    card_token = Varchar(length=80, default="")
    decline_reason = Varchar(length=200, default="")
    attempts = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    completed_at = Timestamptz(null=True, default=None)
    callback_delivered_at = Timestamptz(null=True, default=None)


class StaffToken(Table, tablename="staff_token"):
    """A staff member's password-reset link, sent by an administrator: stored hashed,
    single use, expiring (AuthToken's twin; its account is a customer's)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    staff = ForeignKey(null=False, references=StaffUser, on_delete=OnDelete.cascade)
    purpose = Varchar(length=10, default="reset")  # reset
    token_hash = Varchar(length=64, unique=True)
    sent_by = Varchar(length=254, default="")  # the administrator's email
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ActivityEvent(Table, tablename="activity_event"):
    """The office activity log: who changed what, when, from what to what (settings, host,
    agreement, payment account, templates, staff). Shown on the office Activity page."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    actor = Varchar(length=254, default="")  # a staff email, "system", or "api:<key name>"
    actor_kind = Varchar(length=10, default="staff")  # staff | customer | system | api
    action = Varchar(length=60)  # e.g. "setting.changed", "host.changed", "staff.added"
    subject = Varchar(length=200, default="")  # what changed, in words: "Host", "Dana Desk"
    old_value = Text(default="")
    new_value = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class DomainEvent(Table, tablename="domain_event"):
    """Something that happened that the business's own system may want to hear about
    (payment succeeded, booking requested, ...): the events feed and outgoing webhooks
    read these in id order. Written in the same transaction as the change."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    type = Varchar(length=60)  # one of portal.db.events.EVENT_TYPES
    data = Text(default="{}")  # JSON: ids, numbers and amounts only (no personal data)
    created_at = Timestamptz(default=TimestamptzNow())


class ApiKey(Table, tablename="api_key"):
    """A key the business's own system uses on the sync API (/api/v1/). The secret is shown
    once when made; only its SHA-256 is kept. `prefix` (the key's first characters) finds
    the row; the hash decides."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    name = Varchar(length=80)
    prefix = Varchar(length=16, unique=True)
    key_hash = Varchar(length=64)
    scope = Varchar(length=10, default="read")  # read | write
    created_by = Varchar(length=254, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class SyncRecord(Table, tablename="sync_record"):
    """What the system of record last pushed for one of its records: which row it became,
    the source's version (its `updated_at` in microseconds, or an explicit version) and a
    digest of the content, so an older push never overwrites a newer one and an unchanged
    one writes nothing. Unique on (tenant, kind, external_id). A delete keeps the row
    (`deleted`) so a late, older upsert cannot bring the record back."""

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    kind = Varchar(length=20)  # business_unit | customer | job | invoice | membership
    external_id = Varchar(length=64)
    row_id = Integer(default=0)
    version = BigInt(default=0)
    digest = Varchar(length=32, default="")
    deleted = Boolean(default=False)


class Appointment(Table, tablename="appointment"):
    """An appointment the business's own system booked (pushed through the sync API): a
    time window at a customer's location for a kind of service, optionally linked to the
    job it is for and to the portal's appointment request it answers. Customers see the
    upcoming ones on the Scheduler. Unique on (tenant, external_id)."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    customer = ForeignKey(null=False, references=Customer, on_delete=OnDelete.cascade)
    location = ForeignKey(null=False, references=Location, on_delete=OnDelete.cascade)
    external_id = Varchar(length=64)
    service_type = Varchar(length=80, default="")
    status = Varchar(
        length=12, default="scheduled"
    )  # scheduled | in_progress | completed | canceled
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    job = ForeignKey(references=Job, null=True, default=None, on_delete=OnDelete.set_null)
    booking_request = ForeignKey(
        references=BookingRequest, null=True, default=None, on_delete=OnDelete.set_null
    )
    created_at = Timestamptz(default=TimestamptzNow())


class InvoiceDocument(Table, tablename="invoice_document"):
    """The business's own PDF of an invoice, pushed through the sync API: customers download
    it instead of the one the portal draws. One per invoice (unique on invoice)."""

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    invoice = ForeignKey(null=False, references=Invoice, on_delete=OnDelete.cascade)
    pdf = Bytea()
    created_at = Timestamptz(default=TimestamptzNow())


class WebhookEndpoint(Table, tablename="webhook_endpoint"):
    """A URL of the business's own system that hears about events, signed per Standard
    Webhooks with `secret`. `last_event_id` is how far events were fanned out to it (it
    hears of events from when it was added). Disabled after a delivery kept failing for
    the whole retry schedule (about three days); the admins are emailed."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    url = Varchar(length=2000)
    secret = Varchar(length=80)  # whsec_<base64>: the receiver needs it to verify
    enabled = Boolean(default=True)
    disabled_reason = Varchar(length=500, default="")
    last_event_id = BigInt(default=0)
    created_by = Varchar(length=254, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class WebhookDelivery(Table, tablename="webhook_delivery"):
    """One event for one endpoint: sent until it is answered 2xx, with backoff
    (`attempts`, `next_attempt_at`), claimed one row at a time like the mail outbox
    (`locked_until`). Unique on (endpoint, event): each event is queued once."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    endpoint = ForeignKey(null=False, references=WebhookEndpoint, on_delete=OnDelete.cascade)
    event = ForeignKey(null=False, references=DomainEvent, on_delete=OnDelete.cascade)
    event_type = Varchar(length=60)
    status = Varchar(length=10, default="pending")  # pending | delivered | failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    locked_until = Timestamptz(null=True, default=None)
    response_code = Integer(null=True, default=None)
    last_error = Varchar(length=500, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    delivered_at = Timestamptz(null=True, default=None)


class StripeAccount(Table, tablename="stripe_account"):
    """A Stripe account the business linked: its keys, encrypted at rest (Fernet, keyed by
    PORTAL_ENCRYPTION_KEY; portal.payments.vault), and what the office may see of them.
    `account_id` is the portal's payment account id ("stripe_acct_..."), the one payments
    keep; it stays after an unlink so payments started on it still settle."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account_id = Varchar(length=80, unique=True)
    stripe_account_id = Varchar(length=40)  # acct_...
    secret_key = Text()  # encrypted: sk_... or rk_...
    webhook_secret = Text()  # encrypted: whsec_...
    key_hint = Varchar(length=40, default="")  # "sk_test_...4242": all the office sees again
    livemode = Boolean(default=False)
    bank_debits = Boolean(default=False)  # US bank accounts (ACH) offered beside cards
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class StripeEvent(Table, tablename="stripe_event"):
    """A verified Stripe webhook, kept once per event id (Stripe sends some twice) and
    processed after the answer (portal.payments.webhooks): an inbox."""

    id: Serial  # the primary key Piccolo adds (declared for the type checker)

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    account_id = Varchar(length=80)  # the portal's payment account whose secret verified it
    event_id = Varchar(length=80)  # evt_...
    type = Varchar(length=80)
    object_id = Varchar(length=80, default="")
    received_at = Timestamptz(default=TimestamptzNow())
    locked_until = Timestamptz(null=True, default=None)
    processed_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)
    last_error = Varchar(length=300, default="")


class HostRedirect(Table, tablename="host_redirect"):
    """A business's former host name: until `until`, `<old host>.<base domain>` answers
    301 to its new address, so links already emailed keep working."""

    tenant = ForeignKey(null=False, references=Tenant, on_delete=OnDelete.cascade)
    old_host = Varchar(length=40)  # index in the migration
    until = Timestamptz(default=TimestamptzNow())


class WorkerHeartbeat(Table, tablename="worker_heartbeat"):
    """When each `portal worker` process last finished a round (one row per process, by
    host and pid); `/readyz` reads the newest. Operational state, of no business."""

    worker = Varchar(length=200)  # "host:pid"; unique index in the migration
    beat_at = Timestamptz(default=TimestamptzNow())


TABLES: list[type[Table]] = [
    Tenant,
    BusinessUnit,
    StaffUser,
    Customer,
    CustomerEmail,
    Location,
    BookingRequest,
    Job,
    Invoice,
    InvoiceLine,
    PortalAccount,
    Payment,
    PaymentAllocation,
    PaymentRefund,
    Membership,
    Visit,
    AuditEvent,
    AccessGrant,
    AccessGrantLocation,
    Session,
    AuthToken,
    SignInRecord,
    Passkey,
    PasskeyChallenge,
    OutboxEmail,
    NotificationTemplate,
    ThrottleCount,
    AccountRequest,
    CardUpdate,
    PaymentAccount,
    OfficeAlert,
    SandboxCheckout,
    StaffToken,
    ActivityEvent,
    DomainEvent,
    ApiKey,
    SyncRecord,
    WebhookEndpoint,
    WebhookDelivery,
    InvoiceDocument,
    Appointment,
    StripeAccount,
    StripeEvent,
    HostRedirect,
    WorkerHeartbeat,
]


def current_engine() -> Engine[Any]:
    """The engine the tables are bound to now (`engine.use_database` binds them)."""
    return Tenant._meta.db
