"""Office › Emails in a real browser, JavaScript on and off: an invoice email the real
mail server refuses ("550 No such mailbox") shows as failed with the reason; Retry
sends it again and the mail server gets it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e.conftest import Server, start_server, stop_server
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, JANE_EMAIL
from portal.testing import MailSink


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory, sink: MailSink) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("e2e-emails"), {"PORTAL_SMTP_URL": sink.url})
    yield srv
    stop_server(srv)


def test_a_refused_email_shows_why_and_retry_delivers_it(
    mail_server: Server, sink: MailSink, page: Page, js: bool
):
    base = mail_server.base_url
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()

    # Email one of Jane's invoices (another one in each run); the mail server refuses it.
    page.goto(base + "/office/customers?q=Jane")
    page.get_by_role("link", name="Jane Doe").click()
    invoices = page.get_by_role("region", name="Invoices")
    button = invoices.get_by_role("button", name="Email invoice").nth(0 if js else 1)
    number = (button.get_attribute("aria-label") or "").removeprefix("Email invoice ")
    received_before = len(sink.to(JANE_EMAIL))
    sink.fail_next(1, "550 No such mailbox")
    button.click()
    expect(invoices.get_by_text("The invoice email is on its way")).to_be_visible()

    invoices.get_by_role("link", name="Emails").click()  # "…it shows under Emails"
    expect(page.get_by_role("heading", name="Emails", level=1)).to_be_visible()
    retry_name = f"Retry the email to {JANE_EMAIL}: Invoice {number}"
    # The worker tries it within moments; the page shows it from then on.
    failed = reload_until(page, lambda: page.get_by_role("region", name="Failed emails"))
    retry = reload_until(page, lambda: failed.get_by_role("button", name=retry_name))
    row = failed.get_by_role("row").filter(has_text=f"Invoice {number}")
    expect(row).to_contain_text("550 No such mailbox")
    expect(row).to_contain_text(JANE_EMAIL)

    retry.click()
    expect(page.get_by_role("status")).to_contain_text("on its way again")
    expect(page.get_by_role("button", name=retry_name)).to_have_count(0)
    messages = sink.wait_for(JANE_EMAIL, received_before + 1)
    assert messages[-1]["Subject"] == f"Invoice {number} from XYZ Services"
    recent = page.get_by_role("region", name="Recent emails")
    sent = reload_until(
        page,
        lambda: (
            recent.get_by_role("row").filter(has_text=f"Invoice {number}").filter(has_text="Sent")
        ),
    )
    expect(sent).to_be_visible()


def reload_until(page: Page, find: Callable[[], Locator]) -> Locator:
    """`find()` once it matches, reloading the page while it does not (up to ~10 s)."""
    for _ in range(100):
        if find().count():
            break
        time.sleep(0.1)
        page.reload()
    return find()
