"""Issue 16.4 in a real browser, JS on and off: a person Jane shared her Home with sees that
location's records only, under "Jane Doe — <role>", and only the controls their role may
use (the server refuses the rest regardless: tests/test_grants.py, tests/test_isolation.py).
The grants are written straight into the server's database: their pages are another
branch's work."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import sign_in

PASSWORD = "grantee-pass-2468"
ROLE_SHORT = {"full": "full access", "billing": "billing", "view": "view only"}


def add_grantee(server, email: str, role: str, location: str) -> None:
    """A confirmed account for `email` and a live grant of Jane's `location` to it."""
    from argon2 import PasswordHasher

    from portal.auth.passwords import TEST_COST

    moment = datetime.now(UTC).isoformat()
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        tenant, customer = db.execute(
            "SELECT tenant, customer FROM customer_email WHERE email = 'jane@example.com'"
        ).fetchone()
        (place,) = db.execute(
            "SELECT id FROM location WHERE tenant = ? AND external_id = ?", (tenant, location)
        ).fetchone()
        db.execute(
            "INSERT INTO portal_account (tenant, email, password_hash, confirmed_at, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (tenant, email, PasswordHasher(**TEST_COST).hash(PASSWORD), moment, moment),
        )
        grant = db.execute(
            "INSERT INTO access_grant (tenant, customer, invitee_email, role, granted_by,"
            " created_at) VALUES (?, ?, ?, ?, 'jane@example.com', ?)",
            (tenant, customer, email, role, moment),
        ).lastrowid
        db.execute(
            'INSERT INTO access_grant_location (tenant, "grant", location) VALUES (?, ?, ?)',
            (tenant, grant, place),
        )


@pytest.mark.parametrize("role", ["view", "billing", "full"])
def test_a_grantee_sees_the_shared_location_and_the_controls_of_their_role(
    server, page: Page, js: bool, role: str
):
    email = f"{role}-{'js' if js else 'nojs'}@grantee.example"
    add_grantee(server, email, role, "L-JANE-HOME")
    sign_in(page, server.base_url, email, PASSWORD)
    expect(page.get_by_text(f"Jane Doe — {ROLE_SHORT[role]}")).to_be_visible()

    # Invoices: the Home's open invoices; the pay buttons only for those who may pay.
    expect(page.get_by_role("table", name="Unpaid invoices")).to_contain_text("Home")
    expect(page.get_by_role("table", name="Unpaid invoices")).not_to_contain_text("Lake cabin")
    pay = page.get_by_role("button", name="Pay in full")
    if role == "view":
        expect(pay).to_have_count(0)
        expect(
            page.get_by_role("status").filter(has_text="jane@example.com can pay")
        ).to_be_visible()
    else:
        expect(pay).to_be_visible()

    # History: the Home only.
    page.get_by_role("link", name="History").click()
    expect(page).to_have_url(server.url("/history"))
    main = page.locator("main")
    expect(main).to_contain_text("12 Oak Street")
    expect(main).not_to_contain_text("48 Shoreline Road")

    # The Home's membership: its card can be changed with full access only.
    page.get_by_role("link", name="Memberships").click()
    expect(page).to_have_url(server.url("/memberships"))
    expect(page.locator("main")).not_to_contain_text("Plumbing Protection Plan")  # the cabin's
    page.get_by_role("link", name="Visits for Comfort Club Gold").click()
    expect(page.get_by_role("heading", name="Comfort Club Gold", level=1)).to_be_visible()
    card = page.get_by_role("button", name="Update payment card")
    expect(card).to_have_count(1 if role == "full" else 0)

    # Scheduler: only the Home to choose, and the form for full access only.
    page.get_by_role("link", name="Scheduler").click()
    expect(page).to_have_url(server.url("/schedule"))
    if role == "full":
        location = page.get_by_label("Service location")
        expect(location).to_contain_text("12 Oak Street")
        expect(location).not_to_contain_text("48 Shoreline Road")
        expect(page.get_by_role("button", name="Send request")).to_be_visible()
    else:
        expect(page.get_by_role("button", name="Send request")).to_have_count(0)
        expect(page.locator("#request-appointment")).to_contain_text(
            f"Your access to Jane Doe is {ROLE_SHORT[role]}"
        )
