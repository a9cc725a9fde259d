"""Office › Staff in a real browser, JavaScript on and off (issue 17.11): an administrator
adds a staff member, who chooses a password from the email and signs in; roles change;
a disabled member cannot sign in until enabled again; the last active administrator is
kept."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mail import dev_mailbox

NEW_PASSWORD = "copper pipes hum at dawn"


def office_sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def swapped(page: Page, js: bool) -> None:
    """With JavaScript the staff list was swapped in place (the page was not reloaded)."""
    if js:
        assert page.evaluate("window.stayed") is True


def test_admin_adds_changes_disables_and_enables_staff(server, page: Page, js: bool):
    mode = "js" if js else "nojs"
    name, email = f"Robin Reed {mode}", f"robin-{mode}@xyzservices.example"
    office_sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("navigation", name="Office sections").get_by_role("link", name="Staff").click()
    expect(page.get_by_role("heading", name="Staff", level=1)).to_be_visible()
    if js:
        page.evaluate("window.stayed = true")

    # The only administrator cannot step down.
    me = page.get_by_role("row").filter(has_text=ADMIN_EMAIL)
    me.get_by_label(re.compile("^Role of")).select_option(label="Office")
    me.get_by_role("button", name=re.compile("^Change role")).click()
    expect(page.get_by_role("alert")).to_contain_text("is the only active administrator")
    expect(page.get_by_role("row").filter(has_text=ADMIN_EMAIL)).to_contain_text("Administrator")
    swapped(page, js)

    form = page.locator("form#add-staff")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Email").fill(email)
    form.get_by_label("Role").select_option(label="Office")
    form.get_by_role("button", name="Add staff member").click()
    expect(page.get_by_role("status")).to_contain_text(f"{name} was added. We've emailed {email}")
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_contain_text("Invited")
    swapped(page, js)

    row.get_by_label(f"Role of {name}").select_option(label="Administrator")
    row.get_by_role("button", name=f"Change role of {name}").click()
    expect(page.get_by_role("status")).to_have_text(f"{name} is now an administrator.")
    row = page.get_by_role("row").filter(has_text=email)
    expect(row.get_by_role("cell", name="Administrator", exact=True)).to_be_visible()

    row.get_by_role("button", name=f"Disable {name}").click()
    expect(page.get_by_role("status")).to_contain_text(f"{name} is disabled")
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_contain_text("Disabled")
    expect(row.get_by_role("button", name=re.compile("^Send password reset link"))).to_have_count(0)
    row.get_by_role("button", name=f"Enable {name}").click()
    expect(page.get_by_role("status")).to_have_text(f"{name} can sign in again.")
    row = page.get_by_role("row").filter(has_text=email)
    row.get_by_label(f"Role of {name}").select_option(label="Office")
    row.get_by_role("button", name=f"Change role of {name}").click()
    expect(page.get_by_role("status")).to_have_text(f"{name} is now office staff.")
    swapped(page, js)

    # The new member chooses a password from the email and signs in.
    message = dev_mailbox(server.var_dir / "mail", email, "added you to the")
    link = re.search(
        r"https?://\S+/office/reset\?token=\S+", message.get_body(("plain",)).get_content()
    ).group(0)
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name=re.compile("password", re.I)).click()
    expect(page.get_by_role("heading", name="Your password")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    office_sign_in(page, server.base_url, email, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
