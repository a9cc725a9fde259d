"""Steps shared by the browser tests (e2e/), through the pages as a person uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from portal.demo import JANE_EMAIL, JANE_PASSWORD
from tests.support.businesses import new_business_data


def sign_in(
    page: Page, base_url: str, email: str = JANE_EMAIL, password: str = JANE_PASSWORD
) -> None:
    """Sign in through the sign-in page and wait for the Invoices tab."""
    page.goto(base_url + "/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base_url + "/invoices")


def import_business_into(server: Any, tmp_path: Path, host: str) -> str:
    """Import a new business into a running test server's database (agreement not
    accepted, portal disabled) with `portal import`; returns its base URL."""
    path = tmp_path / f"{host}.json"
    path.write_text(json.dumps(new_business_data(host)))
    result = server.cli("import", str(path))
    assert result.returncode == 0, result.stderr
    return f"http://{host}.localhost:{server.port}"
