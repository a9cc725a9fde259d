"""Office › API keys and Office › Webhooks in a real browser, JavaScript on and off: an
administrator makes a key (shown once), the business's system uses it on the real server,
the office shows when it was last used, and revoking it stops it; an endpoint is added and
its signing secret shown once."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.support.browser import import_business_into
from tests.support.businesses import NEW_ADMIN_PASSWORD


def office_sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="API keys")).to_be_visible()


def push(port: int, host: str, key: str) -> httpx.Response:
    """The business's own system pushing one customer, from outside the browser."""
    line = {"record": "customer", "id": "EXT-1", "name": "Sam Source"}
    return httpx.post(
        f"http://127.0.0.1:{port}/api/v1/bulk",
        headers={"Host": f"{host}.localhost:{port}", "Authorization": f"Bearer {key}"},
        content=json.dumps(line).encode() + b"\n",
        timeout=15,
    )


def test_an_admin_makes_uses_and_revokes_a_key(server, page: Page, js: bool, tmp_path: Path):
    host = f"keys-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    office_sign_in(page, base, f"boss@{host}.example")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_text("No keys yet.")).to_be_visible()

    # A name is needed (spaces are not one): the form says so and makes nothing.
    page.get_by_label("Name").fill("   ")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("Name the key after the system")).to_be_visible()

    page.get_by_label("Name").fill("ServiceTitan")
    page.get_by_label("Read and write").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    key = page.get_by_label("Key", exact=True).input_value()
    assert key.startswith("portal_")
    expect(page.get_by_role("cell", name="ServiceTitan", exact=True)).to_be_visible()

    answer = push(server.port, host, key)
    assert answer.status_code == 200 and answer.json()["counts"] == {"created": 1}

    page.goto(base + "/office/api-keys")
    expect(page.get_by_role("cell", name="Never")).to_have_count(0)  # last used: now
    assert key not in page.content()  # never shown again

    if js:
        page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke ServiceTitan").click()
    expect(page.get_by_role("status").filter(has_text="was revoked")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke ServiceTitan")).to_have_count(0)
    assert push(server.port, host, key).status_code == 401


def test_an_admin_adds_a_webhook_endpoint(server, page: Page, js: bool, tmp_path: Path):
    host = f"hooks-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    office_sign_in(page, base, f"boss@{host}.example")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.get_by_label("Address (URL)").fill("https://example.com/portal-events")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    assert page.get_by_label("Signing secret").input_value().startswith("whsec_")
    expect(
        page.get_by_role("cell", name="https://example.com/portal-events", exact=True)
    ).to_be_visible()
    page.get_by_role("button", name="Turn off https://example.com/portal-events").click()
    expect(page.get_by_text("The endpoint is off")).to_be_visible()
    expect(
        page.get_by_role("button", name="Turn on https://example.com/portal-events")
    ).to_be_visible()
