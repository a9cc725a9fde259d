"""Household and property access (issue 16.4) in a real browser, JavaScript on and off:
the owner shares their account by email with a role and chosen locations, the invited
person registers through the normal flow and sees only what was shared, a property
manager with access from two customers switches between them, the owner and the office
revoke access and the next page no longer shows the record.

Two ways in: the pages themselves (invite, register from the email, revoke, the office's
"Who has access"), and, per role, grants written straight into the server's database (a
grantee of each role sees that location's records only, under "Jane Doe — <role>", with
only the controls the role may use; the server refuses the rest regardless:
tests/test_grants.py, tests/test_isolation.py)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from portal.demo import JANE_EMAIL, OFFICE_EMAIL, OFFICE_PASSWORD
from portal.testing import MailSink, Server, first_link, stop_server
from tests.support.a11y import assert_accessible
from tests.support.browser import add_portal_account, broken_words, fits_the_width, sign_in

SAME_ANSWER = "If this email is on your account with XYZ Services, we've sent you a link."
BOB_EMAIL = "bob@example.com"
BOB_PASSWORD = "bob keeps the birch lane tidy"
EXPIRY = "12 / 39"


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture
def mail_server(tmp_path_factory, start_demo_server, sink: MailSink) -> Iterator[Server]:
    srv = start_demo_server(tmp_path_factory.mktemp("e2e-grants"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


@pytest.fixture
def second(browser: Browser, js: bool) -> Iterator[Page]:
    """Another person's browser (the invited one), with JavaScript as the first's."""
    ctx: BrowserContext = browser.new_context(java_script_enabled=js)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    ctx.close()


def open_access_page(page: Page, base: str) -> None:
    page.get_by_role("link", name="Your account").click()
    page.get_by_role("link", name=re.compile("^People with access")).click()
    expect(page).to_have_url(base + "/account/access")
    expect(page.get_by_role("heading", name="People with access", level=1)).to_be_visible()


def invite(page: Page, email: str, role: str, locations: list[str]) -> None:
    form = page.locator("#invite-person")
    form.get_by_label("Their email").fill(email)
    form.get_by_role("radio", name=role).check()
    for name in locations:
        form.get_by_role("checkbox", name=re.compile(f"^{name}")).check()
    form.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_contain_text("The invitation is on its way")


def register_from_invitation(page: Page, sink: MailSink, base: str, email: str) -> None:
    """The invitation's link → the register page with the email filled in → the usual
    confirmation email → create a password → signed in."""
    page.goto(first_link(sharing_email(sink, email, "Jane Doe")))
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text(SAME_ANSWER)
    confirmation = sink.wait_for(email, 2)[1]
    assert confirmation["Subject"] == "Create your password for the XYZ Services customer portal"
    page.goto(first_link(confirmation))
    page.get_by_label("New password").fill(f"{email} has a long password")
    page.get_by_role("button", name="Create password and sign in").click()
    expect(page).to_have_url(base + "/invoices")


def sharing_email(sink: MailSink, address: str, owner: str, timeout: float = 20.0):
    """The email telling `address` that `owner` shared their account (other emails, such
    as a receipt, may come in between)."""
    deadline = time.monotonic() + timeout
    subject = f"{owner} shared their XYZ Services account with you"
    while time.monotonic() < deadline:
        found = [m for m in sink.to(address) if m["Subject"] == subject]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no email {subject!r} to {address}")


def body_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def locations_on_invoices_tab(page: Page) -> set[str]:
    cells = page.locator("td[data-label='Service location']")
    expect(cells.first).to_be_visible()
    return {text.splitlines()[0].strip() for text in cells.all_inner_texts()}


def test_a_spouse_sees_only_the_shared_location_until_the_owner_revokes(
    mail_server: Server, sink: MailSink, page: Page, second: Page, js: bool
):
    base = mail_server.base_url
    page.on("dialog", lambda dialog: dialog.accept())
    spouse = "sam.doe@example.org"

    # Jane shares her account, view only, for the lake cabin; a form without a location
    # is sent back with the problem shown at the field.
    sign_in(page, base)
    open_access_page(page, base)
    expect(page.get_by_text("Nobody else has access yet.")).to_be_visible()
    form = page.locator("#invite-person")
    form.get_by_label("Their email").fill(spouse)
    form.get_by_role("radio", name="View only").check()
    form.get_by_role("checkbox", name=re.compile("^Home")).uncheck()
    form.get_by_role("button", name="Send invitation").click()
    expect(page.locator("#f-locations-error")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(re.escape(spouse)))).to_have_count(0)
    expect(page.locator("#invite-person").get_by_label("Their email")).to_have_value(spouse)
    invite(page, spouse, "View only", ["Lake cabin"])
    row = page.get_by_role("row", name=re.compile(re.escape(spouse)))
    expect(row).to_contain_text("View only")
    expect(row).to_contain_text("Lake cabin")
    expect(row).not_to_contain_text("Home")

    # The invitation reads well, and its link leads to registering with the email filled.
    message = sharing_email(sink, spouse, "Jane Doe")
    text = body_of(message)
    assert "Jane Doe shared their account at XYZ Services with you" in text, text
    assert "(view only, Lake cabin)" in text, text
    assert first_link(message).endswith("/invite?email=sam.doe%40example.org")
    register_from_invitation(second, sink, base, spouse)

    # Only the lake cabin's invoices, no Pay, no appointment requests.
    expect(second.get_by_role("heading", name="Invoices", level=1)).to_be_visible()
    assert locations_on_invoices_tab(second) == {"Lake cabin"}
    expect(second.get_by_role("button", name="Pay in full")).to_have_count(0)
    expect(second.get_by_text(f"{JANE_EMAIL} can pay them")).to_be_visible()
    second.get_by_role("link", name="History", exact=True).click()
    expect(second.get_by_role("heading", name="History", level=1)).to_be_visible()
    expect(second.get_by_role("heading", name=re.compile("^Lake cabin"), level=2)).to_be_visible()
    expect(second.get_by_role("heading", name=re.compile("^Home"), level=2)).to_have_count(0)
    second.get_by_role("link", name="Scheduler", exact=True).click()
    expect(second.get_by_role("heading", name="Scheduler", level=1)).to_be_visible()
    expect(second.get_by_role("button", name="Send request")).to_have_count(0)
    open_access_page(second, base)
    shared = second.get_by_role("row", name=re.compile("Jane Doe"))
    expect(shared).to_contain_text("View only")
    expect(shared).to_contain_text("Lake cabin")
    expect(shared).to_contain_text(JANE_EMAIL)
    expect(second.get_by_role("button", name="Send invitation")).to_have_count(0)

    # Jane revokes: the spouse's next page no longer shows her account.
    page.reload()
    page.get_by_role("button", name=f"Revoke access for {spouse}").click()
    expect(page.get_by_role("status")).to_contain_text("Access was revoked")
    expect(page.get_by_role("row", name=re.compile(re.escape(spouse)))).to_have_count(0)
    second.get_by_role("link", name="Invoices", exact=True).click()
    expect(second.get_by_text("Your email is no longer on a customer record")).to_be_visible()
    expect(second.get_by_role("cell", name="Lake cabin")).to_have_count(0)


def test_a_property_manager_pays_for_one_customer_and_requests_for_another(
    mail_server: Server, sink: MailSink, page: Page, second: Page, js: bool
):
    base = mail_server.base_url
    page.on("dialog", lambda dialog: dialog.accept())
    manager = "pm@rentals.example"

    # Jane gives billing access to her home; the manager registers.
    sign_in(page, base)
    open_access_page(page, base)
    invite(page, manager, "Billing — invoices, history and paying", ["Home"])
    register_from_invitation(second, sink, base, manager)

    # Billing: pays an invoice at the home, cannot request appointments.
    assert locations_on_invoices_tab(second) == {"Home"}
    second.get_by_role("checkbox", name=re.compile("^Select ")).first.check()
    second.get_by_role("button", name="Pay in full").click()
    expect(second).to_have_url(re.compile(r"/sandbox-gateway/checkout/chk_[\w-]+$"))
    second.get_by_label("Card number").fill("4242 4242 4242 4242")
    second.get_by_label("Expiry date (MM / YY)").fill(EXPIRY)
    second.get_by_label("Security code (CVC)").fill("123")
    second.get_by_role("button", name=re.compile(r"^Pay \$")).click()
    expect(second.get_by_role("heading", name="Payment received")).to_be_visible()
    second.get_by_role("link", name="Scheduler", exact=True).click()
    expect(second.get_by_role("button", name="Send request")).to_have_count(0)

    # Bob (registered) gives full access to his home: the email sends the manager, who
    # has an account now, to the sign-in page.
    add_portal_account(mail_server, BOB_EMAIL, BOB_PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, base, BOB_EMAIL, BOB_PASSWORD)
    open_access_page(page, base)
    invite(page, manager, "Full access — pay, request appointments, manage cards", ["Home"])
    message = sharing_email(sink, manager, "Bob Stone")
    assert "Bob Stone shared their account at XYZ Services with you" in body_of(message)
    assert first_link(message).endswith("/sign-in")

    # The manager switches between the two customers with the record switcher.
    second.goto(base + "/invoices")
    second.get_by_label("Viewing").select_option(label="Bob Stone — full access")
    second.get_by_role("button", name="Switch").click()
    expect(second.get_by_text("7 Birch Lane").first).to_be_visible()
    second.get_by_role("link", name="Scheduler", exact=True).click()
    expect(second.get_by_role("button", name="Send request")).to_be_visible()
    second.get_by_label("Viewing").select_option(label="Jane Doe — billing")
    second.get_by_role("button", name="Switch").click()
    second.get_by_role("link", name="Scheduler", exact=True).click()
    expect(second.get_by_role("heading", name="Scheduler", level=1)).to_be_visible()
    expect(second.get_by_role("button", name="Send request")).to_have_count(0)
    second.get_by_role("link", name="Invoices", exact=True).click()
    assert locations_on_invoices_tab(second) == {"Home"}

    # The office (the office role is enough) sees who has access to Jane's record and
    # revokes the manager's.
    page.get_by_role("button", name="Sign out").click()
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(OFFICE_EMAIL)
    page.get_by_label("Password").fill(OFFICE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    page.goto(base + "/office/customers?q=jane")
    page.get_by_role("link", name="Jane Doe").click()
    who = page.locator("#access")
    expect(who.get_by_role("row", name=re.compile("^" + re.escape(JANE_EMAIL)))).to_contain_text(
        "On the customer's record"
    )
    grant = who.get_by_role("row", name=re.compile(re.escape(manager)))
    expect(grant).to_contain_text("Billing")
    expect(grant).to_contain_text(JANE_EMAIL)
    grant.get_by_role("button", name=f"Revoke access for {manager}").click()
    expect(page.get_by_role("status")).to_contain_text("Access was revoked")
    grant = page.locator("#access").get_by_role("row", name=re.compile(re.escape(manager)))
    expect(grant).to_contain_text(f"by office: {OFFICE_EMAIL}")
    expect(grant.get_by_role("button")).to_have_count(0)

    # The manager's next page shows Bob's record only.
    second.reload()
    expect(second.get_by_label("Viewing")).to_have_count(0)
    expect(second.get_by_text("Bob Stone").first).to_be_visible()


# --- per role, the grant written straight into the database -----------------------------------

GRANTEE_PASSWORD = "grantee-pass-2468"
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
            (tenant, email, PasswordHasher(**TEST_COST).hash(GRANTEE_PASSWORD), moment, moment),
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
    sign_in(page, server.base_url, email, GRANTEE_PASSWORD)
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


# --- the access pages at phone width -----------------------------------------------------------

LONG_EMAILS = ("sam.doe@example.org", "pm-team@valley-rentals.example", "old.tenant@example.net")


def share_widely(server) -> None:
    """Jane's record shared with three people (two live, one revoked by the office, two
    locations on one), and Bob's shared with Jane: every row both pages can draw."""
    moment = datetime.now(UTC).isoformat()
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        tenant, jane = db.execute(
            "SELECT tenant, customer FROM customer_email WHERE email = 'jane@example.com'"
        ).fetchone()
        (bob,) = db.execute(
            "SELECT customer FROM customer_email WHERE email = 'bob@example.com'"
        ).fetchone()
        places = {
            key: db.execute(
                "SELECT id FROM location WHERE tenant = ? AND external_id = ?", (tenant, key)
            ).fetchone()[0]
            for key in ("L-JANE-HOME", "L-JANE-CABIN", "L-BOB")
        }
        rows = [
            (jane, LONG_EMAILS[0], "view", None, ["L-JANE-HOME"]),
            (jane, LONG_EMAILS[1], "billing", None, ["L-JANE-HOME", "L-JANE-CABIN"]),
            (jane, LONG_EMAILS[2], "full", "office: office@xyzservices.example", ["L-JANE-HOME"]),
            (bob, JANE_EMAIL, "full", None, ["L-BOB"]),
        ]
        for customer, email, role, revoked_by, keys in rows:
            grant = db.execute(
                "INSERT INTO access_grant (tenant, customer, invitee_email, role, granted_by,"
                " created_at, revoked_at, revoked_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    customer,
                    email,
                    role,
                    "bob@example.com" if customer == bob else JANE_EMAIL,
                    moment,
                    moment if revoked_by else None,
                    revoked_by,
                ),
            ).lastrowid
            for key in keys:
                db.execute(
                    'INSERT INTO access_grant_location (tenant, "grant", location) VALUES (?, ?, ?)',
                    (tenant, grant, places[key]),
                )


@pytest.fixture(scope="module")
def shared(server) -> Server:
    share_widely(server)
    return server


@pytest.mark.parametrize("width", [1280, 360, 320])
def test_the_access_pages_fit_a_phone_and_break_between_words(
    shared: Server, browser: Browser, width: int
):
    """People with access (the owner's) and Who has access (the office's), with live and
    revoked grants: nothing sticks out sideways, no word wraps mid-word (the tables squeezed
    "Locations" at 1280 px; stacked at 360 px an email or the "Revoked … by office: …" badge
    broke mid-word beside its label) and axe finds nothing, on a desktop and on a phone."""
    ctx = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    sign_in(page, shared.base_url)
    page.get_by_label("Viewing").select_option(label="Jane Doe")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_label("Viewing")).to_have_value(
        page.locator("form.switch option", has_text="Jane Doe").get_attribute("value")
    )
    page.goto(shared.url("/account/access"))
    main = page.locator("main")
    for email in (*LONG_EMAILS[:2], "Bob Stone"):
        expect(main).to_contain_text(email)
    assert fits_the_width(page), "People with access sticks out sideways"
    assert broken_words(main) == [], "People with access"
    assert_accessible(page)

    page.get_by_role("button", name="Sign out").click()
    page.goto(shared.url("/office/sign-in"))
    page.get_by_label("Email").fill(OFFICE_EMAIL)
    page.get_by_label("Password").fill(OFFICE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    page.goto(shared.url("/office/customers?q=jane"))
    page.get_by_role("link", name="Jane Doe").click()
    who = page.locator("#access")
    for email in (JANE_EMAIL, *LONG_EMAILS):
        expect(who).to_contain_text(email)
    assert fits_the_width(page), "Who has access sticks out sideways"
    assert broken_words(who) == [], "Who has access"
    assert_accessible(page)
    ctx.close()
