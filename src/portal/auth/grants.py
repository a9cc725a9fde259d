"""Household and property access (issue 16.4): the rules of sharing a customer record.

The owner of a record (an account whose email is on it) invites another person by email
to chosen locations of theirs with a role; the invitee registers through the normal flow
(`/invite`, which accepts an email with a live grant as well as one on a record) and sees
only what was granted, from the session read (`auth/sessions.py`). The owner revokes, the
grantee may leave, the office revokes. The rows are `db/grants.py`; this module checks,
emails and writes the activity lines, each in the transaction of its change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg

from portal.config import Settings
from portal.db import accounts, activity
from portal.db import grants as grants_db
from portal.db.engine import transaction
from portal.db.rows import GrantRow, TenantRow
from portal.forms import Checked, clean_email, record_id
from portal.mail.links import portal_url
from portal.mail.outbox import queue_email

ROLES = grants_db.ROLES
ROLE_WORDS = {
    "full": "Full access — pay, request appointments, manage cards",
    "billing": "Billing — invoices, history and paying",
    "view": "View only",
}
# Short words for an email's sentence ("… with you (billing, at Home)").
ROLE_SHORT = {"full": "full access", "billing": "billing", "view": "view only"}
MAX_LIVE_GRANTS = 20  # per customer record
ALREADY_SHARED = (
    "You have already shared your account with that email. Remove that access first to change it."
)
TOO_MANY = (
    f"You have shared your account {MAX_LIVE_GRANTS} times, the most there can be. "
    "Remove someone's access first."
)

# What each role may do beyond reading (the owner may do everything).
CAN_PAY = frozenset({"owner", "full", "billing"})
CAN_REQUEST = frozenset({"owner", "full"})
CAN_MANAGE_CARDS = frozenset({"owner", "full"})


class InviteRefused(Exception):
    """The invitation lost a race to another one (the same email, or the last free grant)
    after `check_invite` passed: the same problems a sequential second try gets."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(problems)
        self.problems = problems


@dataclass(frozen=True)
class Invitation:
    """A checked invitation, ready to save."""

    email: str
    role: str
    location_ids: list[int]


def clean_invitee_email(value: str) -> tuple[str, str | None]:
    """The invitee's email (`forms.clean_email`, its messages about "their" email)."""
    email, problem = clean_email(value)
    return email, problem.replace("your email address", "their email address") if problem else None


def clean_new_invitee(
    email: str, owner_email: str, on_record: Collection[str], live: Sequence[GrantRow]
) -> tuple[str, str | None]:
    """A valid email that does not see the record already: not the owner's own nor one on
    the record (`on_record`), and without a live grant for it (`live`: the customer's)."""
    if email == owner_email.strip().lower() or email in on_record:
        return email, "That email is already on your account: it sees everything."
    if any(g["invitee_email"] == email for g in live):
        return email, ALREADY_SHARED
    return email, None


def clean_role(value: str) -> tuple[str, str | None]:
    """One of `ROLES`."""
    return value, None if value in ROLES else "Choose what they may do."


def clean_locations(values: Sequence[str], own: Collection[int]) -> tuple[list[int], str | None]:
    """At least one location, every one of them the owner's (`own`); ids in order, once."""
    wanted = [record_id(value) for value in values]
    location_ids = sorted({n for n in wanted if n is not None})
    if not location_ids:
        return location_ids, "Choose at least one location."
    if None in wanted or any(n not in own for n in location_ids):
        return location_ids, "Choose among your own locations."
    return location_ids, None


async def check_invite(
    tenant_id: int,
    customer_id: int,
    owner_email: str,
    *,
    email: str,
    role: str,
    locations: Sequence[str],
) -> Checked[Invitation]:
    """Check the owner's invitation form (fields `email`, `role`, `locations`; `forms.Checked`):
    a valid email, not the owner's own nor one on the customer's record, no live grant to it
    for this customer already; a known role; at least one location, every one the owner's;
    at most MAX_LIVE_GRANTS live grants per customer."""
    clean, email_problem = clean_invitee_email(email)
    live = await grants_db.given(tenant_id, customer_id)
    if not email_problem:
        on_record = await grants_db.record_emails(tenant_id, customer_id)
        clean, email_problem = clean_new_invitee(clean, owner_email, on_record, live)
    role, role_problem = clean_role(role)
    own = await grants_db.owner_location_ids(tenant_id, customer_id)
    location_ids, locations_problem = clean_locations(locations, own)
    form_problem = None
    if len(live) >= MAX_LIVE_GRANTS:
        form_problem = TOO_MANY
    problems = {
        field: problem
        for field, problem in (
            ("email", email_problem),
            ("role", role_problem),
            ("locations", locations_problem),
            ("form", form_problem),
        )
        if problem
    }
    return Checked(
        clean=Invitation(email=clean, role=role, location_ids=location_ids),
        problems=problems,
        values={"email": email.strip()[:320], "role": role, "locations": list(locations)},
    )


def places_text(locations: Sequence[tuple[int, str]]) -> str:
    """A grant's locations in words: "Home", "Home and Cabin", "Home, Cabin and Shop"."""
    names = [name or "a location" for _, name in locations]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


async def invite(
    settings: Settings,
    tenant: TenantRow,
    customer_id: int,
    owner_name: str,
    owner_email: str,
    invitation: Invitation,
) -> int:
    """Save a checked invitation, queue its email and write its activity line, together
    or not at all; returns the grant's id. The email links to the registration page (with
    the email filled in) when that email has no confirmed account here, else to sign in.

    `check_invite` ran before, outside any transaction, so two invitations sent at once can
    both pass it: here the customer's grants are locked (PostgreSQL: the customer's row,
    FOR NO KEY UPDATE; SQLite: the immediate transaction holds the write lock) and the email and
    the limit checked again. The loser raises `InviteRefused` with the message a second
    try gets; the partial unique index `access_grant_live_once` backs the email rule."""
    try:
        return await _save(settings, tenant, customer_id, owner_name, owner_email, invitation)
    except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as exc:
        raise InviteRefused({"email": ALREADY_SHARED}) from exc


async def _save(
    settings: Settings,
    tenant: TenantRow,
    customer_id: int,
    owner_name: str,
    owner_email: str,
    invitation: Invitation,
) -> int:
    async with transaction():
        live = await grants_db.lock_live_emails(tenant["id"], customer_id)
        if invitation.email in live:
            raise InviteRefused({"email": ALREADY_SHARED})
        if len(live) >= MAX_LIVE_GRANTS:
            raise InviteRefused({"form": TOO_MANY})
        grant_id = await grants_db.create(
            tenant["id"],
            customer_id,
            invitation.email,
            invitation.role,
            invitation.location_ids,
            owner_email,
        )
        grant = await grants_db.live_grant(tenant["id"], grant_id)
        assert grant is not None  # made just now, in this transaction
        account = await accounts.account_by_email(tenant["id"], invitation.email)
        registered = account is not None and account["confirmed_at"] is not None
        path = "/sign-in" if registered else f"/invite?email={quote(invitation.email)}"
        await queue_email(
            settings,
            tenant,
            invitation.email,
            "access_granted",
            {
                "owner_name": owner_name,
                "role_words": ROLE_SHORT[invitation.role],
                "places": places_text(grant["locations"]),
                "registered": registered,
                "link": portal_url(settings, tenant, path),
            },
        )
        await activity.record(
            tenant["id"],
            activity.Actor(owner_email, "customer"),
            "grant.created",
            f"Access to {owner_name} for {invitation.email}",
            new=f"{ROLE_WORDS[invitation.role]}; {places_text(grant['locations'])}",
        )
    return grant_id


async def _revoke(
    tenant_id: int,
    grant_id: int,
    actor: activity.Actor,
    action: str,
    *,
    by: str,
    customer_id: int | None = None,
    invitee_email: str | None = None,
) -> bool:
    async with transaction():
        grant = await grants_db.live_grant(tenant_id, grant_id)
        if grant is None or not await grants_db.revoke(
            tenant_id, grant_id, by=by, customer_id=customer_id, invitee_email=invitee_email
        ):
            return False
        await activity.record(
            tenant_id,
            actor,
            action,
            f"Access to {grant['customer_name']} for {grant['invitee_email']}",
            old=f"{ROLE_WORDS.get(grant['role'], grant['role'])}; "
            f"{places_text(grant['locations'])}",
        )
    return True


async def revoke_by_owner(
    tenant_id: int, customer_id: int, grant_id: int, owner_email: str
) -> bool:
    """The owner removes someone's access to their record. False (nothing changed) when
    the grant is not a live one of this customer (another's id answers like a missing one)."""
    return await _revoke(
        tenant_id,
        grant_id,
        activity.Actor(owner_email, "customer"),
        "grant.revoked",
        by=owner_email,
        customer_id=customer_id,
    )


async def leave(tenant_id: int, grant_id: int, invitee_email: str) -> bool:
    """A grantee gives up access shared with them. False when it is not a live grant to
    that email."""
    invitee_email = invitee_email.strip().lower()
    return await _revoke(
        tenant_id,
        grant_id,
        activity.Actor(invitee_email, "customer"),
        "grant.left",
        by=invitee_email,
        invitee_email=invitee_email,
    )


async def revoke_by_office(tenant_id: int, grant_id: int, staff_email: str) -> bool:
    """Office staff revoke a grant of one of the business's customers (with an activity
    line). False when no live grant of this business has that id."""
    return await _revoke(
        tenant_id,
        grant_id,
        activity.Actor(staff_email),
        "grant.revoked",
        by=f"office: {staff_email}",
    )


def role_words(role: str) -> str:
    """A role in words for pages ("View only")."""
    return ROLE_WORDS.get(role, role)
