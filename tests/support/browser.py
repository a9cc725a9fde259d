"""Steps shared by the browser tests (e2e/), through the pages as a person uses them."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
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


# How many lines a text takes on screen: one client rectangle per line box of its text.
_LINES = """el => {
  const range = document.createRange();
  range.selectNodeContents(el);
  const tops = new Set();
  for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
  return tops.size;
}"""


def text_lines(locator: Any) -> int:
    """The number of lines `locator`'s text wraps onto (1: it did not wrap)."""
    return locator.evaluate(_LINES)


_BROKEN_WORDS = """el => {
  const broken = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const box = node.parentElement && node.parentElement.getBoundingClientRect();
    if (!box || box.width === 0) continue;  // not shown (visually-hidden labels, closed)
    for (const m of node.data.matchAll(/[^\\s\\-\u2013\u2014]+/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set();
      for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""


def broken_words(locator: Any) -> list[str]:
    """The words inside `locator` that wrap across lines mid-word ("Revok" / "e"); a
    break at a hyphen or a dash is a break between words."""
    return list(locator.evaluate(_BROKEN_WORDS))


def fits_the_width(page: Page) -> bool:
    """Nothing on the page sticks out sideways (no horizontal scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def add_portal_account(server: Any, email: str, password: str) -> None:
    """Give `email` (on one or more customer records of the demo business) a confirmed
    portal account in a running test server's SQLite database, hashed at test cost."""
    from argon2 import PasswordHasher

    from portal.auth.passwords import TEST_COST

    moment = datetime.now(UTC).isoformat()
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as db:
        (tenant,) = db.execute(
            "SELECT tenant FROM customer_email WHERE email = ? LIMIT 1", (email,)
        ).fetchone()
        db.execute(
            "INSERT INTO portal_account (tenant, email, password_hash, confirmed_at, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (tenant, email, PasswordHasher(**TEST_COST).hash(password), moment, moment),
        )
