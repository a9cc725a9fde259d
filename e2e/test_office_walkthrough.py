"""What a first real use of the office found (issue 17, items 7–9), in a real browser with
JavaScript on and off: saving says so, locked settings look and behave locked, and size
messages tell the truth."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, OFFICE_EMAIL, OFFICE_PASSWORD
from tests.support.browser import import_business_into
from tests.support.businesses import NEW_ADMIN_PASSWORD


def office_sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()


@pytest.fixture(params=[1280, 360])
def width(request: pytest.FixtureRequest) -> int:
    return request.param


def test_the_page_says_how_settings_save_and_confirms_each_save_by_the_field(
    server, page: Page, js: bool
):
    office_sign_in(page, server.base_url, OFFICE_EMAIL, OFFICE_PASSWORD)
    as_you_go = page.get_by_text("Changes are saved as you make them")
    press_save = page.get_by_text("Press Save at the bottom of the page to keep your changes.")
    if js:
        expect(as_you_go).to_be_visible()
        expect(press_save).to_be_hidden()
    else:
        expect(press_save).to_be_visible()
        expect(as_you_go).to_be_hidden()
    phone = page.get_by_label("Phone", exact=True)
    phone.fill("(555) 010-4478" if js else "(555) 010-4479")
    if not js:
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text("Your settings were saved.")).to_be_visible()
        return
    phone.press("Tab")
    saved = page.locator("#saved-phone")
    expect(saved).to_have_text("Saved")
    field = page.get_by_label("Phone", exact=True).bounding_box()
    note = saved.bounding_box()
    assert field and note
    # Right under the field that was just typed in, not across the page.
    assert 0 <= note["y"] - (field["y"] + field["height"]) <= 24
    assert abs(note["x"] - field["x"]) <= 24


def test_a_new_host_is_checked_before_the_move_is_asked_about(server, page: Page, js: bool):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    office_sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    host = page.get_by_label("Host", exact=True)
    host.fill("www")
    if js:
        host.press("Tab")
    else:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("That name is reserved, please choose another.")).to_be_visible()
    expect(page.get_by_role("button", name="Move portal")).to_have_count(0)
    assert dialogs == []  # never asked to move to a name that cannot be used
    if not js:
        return
    host = page.get_by_label("Host", exact=True)
    host.fill("xyz-elsewhere")
    host.press("Tab")
    expect(page.get_by_text("Move your customer portal to http://xyz-elsewhere.")).to_be_visible()
    page.get_by_role("button", name="Keep the current address").click()
    expect(page.get_by_label("Host", exact=True)).to_have_value("xyzplumbing")
    expect(page.get_by_role("button", name="Move portal")).to_have_count(0)
    assert dialogs == []
    page.goto(server.url("/office/settings"))
    expect(page.get_by_label("Host", exact=True)).to_have_value("xyzplumbing")


WHITE = "rgb(255, 255, 255)"
BRAND = "rgb(15, 76, 129)"  # --brand: a live button's background


def test_before_the_agreement_locked_settings_look_and_behave_locked(
    server, page: Page, js: bool, tmp_path: Path
):
    host = f"locked-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    page.goto(base + "/office/sign-in")
    # The administrator: the one who can accept the agreement, and sees the most buttons.
    page.get_by_label("Email").fill(f"boss@{host}.example")
    page.get_by_label("Password").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(
        page.get_by_text("These settings can be changed once the legal agreement")
    ).to_be_visible()
    name = page.get_by_label("Name", exact=True)
    expect(name).to_be_disabled()
    style = name.evaluate(
        "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).cursor]"
    )
    assert style[0] != WHITE, "a locked field looks editable"
    assert style[1] == "not-allowed"
    toggle = page.get_by_label("Enable Customer Portal")
    expect(toggle).to_be_disabled()
    assert toggle.evaluate("el => getComputedStyle(el.closest('label')).cursor") == "not-allowed"
    buttons = page.locator("#settings-form button")
    assert buttons.count() >= 1
    for button in buttons.all():
        expect(button).to_be_disabled()
        colours = button.evaluate(
            "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).cursor]"
        )
        assert colours[1] == "not-allowed", colours
        assert colours[0] not in (BRAND, WHITE), colours  # not a live button's colours
    expect(page.get_by_role("button", name="Accept")).to_be_enabled()  # the way forward
    # Behaves locked: a click changes nothing.
    toggle.click(force=True)
    expect(toggle).not_to_be_checked()
    page.reload()
    expect(page.get_by_label("Enable Customer Portal")).not_to_be_checked()


def noisy_png(path: Path, megabytes: float) -> Path:
    """A PNG of random pixels (it barely compresses) of about `megabytes` MB."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, format="PNG")
    return path


def test_a_too_big_logo_is_reported_at_its_real_size(server, page: Page, js: bool, tmp_path):
    logo = noisy_png(tmp_path / "big-logo.png", 3.2)
    size = f"{logo.stat().st_size / (1024 * 1024):.1f} MB"
    assert size != "2.0 MB"
    office_sign_in(page, server.base_url, OFFICE_EMAIL, OFFICE_PASSWORD)
    page.get_by_label("Logo", exact=True).set_input_files(str(logo))
    if not js:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(f"That file is {size}; a logo can be at most 2 MB.")).to_be_visible()


def test_the_activity_page_shows_who_changed_what_and_filters(server, page: Page, js: bool):
    phone = "(555) 010-7001" if js else "(555) 010-7002"
    office_sign_in(page, server.base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    field = page.get_by_label("Phone", exact=True)
    field.fill(phone)
    if js:
        field.press("Tab")
        expect(page.locator("#saved-phone")).to_have_text("Saved")
    else:
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text("Your settings were saved.")).to_be_visible()
    menu = page.get_by_role("navigation", name="Office sections")
    menu.get_by_role("link", name="Activity").click()
    expect(page.get_by_role("heading", name="Activity", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text=phone).first
    expect(row).to_contain_text("Setting changed: Phone")
    expect(row).to_contain_text(ADMIN_EMAIL)
    expect(row.locator("td[data-label='After']")).to_have_text(phone)
    if js:
        page.evaluate("window.stayed = true")
    page.get_by_label("What changed").select_option(label="Staff")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/office/activity\?kind=staff\.(&|$)"))
    expect(page.get_by_role("row").filter(has_text=phone)).to_have_count(0)
    page.get_by_label("What changed").select_option(label="Settings")
    page.get_by_label("Who").select_option(label=ADMIN_EMAIL)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("row").filter(has_text=phone).first).to_be_visible()
    if js:  # only the list was swapped
        assert page.evaluate("window.stayed") is True


def test_an_admin_exports_and_then_erases_a_customer(server, page: Page, js: bool, tmp_path):
    host = f"privacy-{'js' if js else 'nojs'}"
    base = import_business_into(server, tmp_path, host)
    page.goto(base + "/office/sign-in")
    page.get_by_label("Email").fill(f"boss@{host}.example")
    page.get_by_label("Password").fill(NEW_ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Settings › Customer Portal")).to_be_visible()
    page.goto(base + "/office/customers")
    page.get_by_role("link", name="Pat Lee").click()
    privacy = page.locator("section#privacy")
    with page.expect_download() as download:
        privacy.get_by_role("link", name="Download this customer's data").click()
    archive = zipfile.ZipFile(download.value.path())
    assert "Pat Lee" in archive.read("customer.json").decode()
    assert any(n.endswith(".pdf") for n in archive.namelist())

    privacy.get_by_role("button", name="Erase personal data").click()
    expect(privacy.get_by_label(re.compile("I understand"))).to_be_focused()  # required first
    privacy.get_by_label(re.compile("I understand")).check()
    privacy.get_by_role("button", name="Erase personal data").click()
    expect(page.get_by_role("status").filter(has_text="personal data is erased")).to_be_visible()
    expect(page.get_by_role("heading", name="Erased customer")).to_be_visible()
    expect(page.get_by_text("Pat Lee")).to_have_count(0)
