"""Issue 11.4 in the browser: when password checking is busy, the sign-in form says so
("try again in a moment") instead of hanging; with JavaScript on (htmx swaps the 503 into
the form) and off (the whole page)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import Server, start_server, stop_server
from portal.demo import JANE_EMAIL, JANE_PASSWORD

BUSY = "Lots of people are signing in right now. Please try again in a moment."


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory) -> Iterator[Server]:
    """One hashing thread and no wait allowed: any sign-in that finds a hash running is
    answered "busy" (a real lane, just a small one)."""
    srv = start_server(
        tmp_path_factory.mktemp("e2e-busy"),
        {"PORTAL_HASH_THREADS": "1", "PORTAL_HASH_MAX_WAIT": "0"},
    )
    yield srv
    stop_server(srv)


def keep_signing_in(server: Server, stop: threading.Event) -> None:
    """Someone else signing in over and over, so a hash is nearly always running."""
    host = {"Host": f"xyzplumbing.localhost:{server.port}"}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers=host, timeout=30
    ) as client:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/sign-in").text)
        while not stop.is_set():
            client.cookies.pop("portal_session", None)
            client.post(
                "/sign-in",
                data={
                    "_csrf_token": token.group(1),
                    "email": JANE_EMAIL,
                    "password": JANE_PASSWORD,
                },
            )


def test_a_busy_sign_in_says_try_again_in_a_moment(busy_server: Server, page: Page, js: bool):
    base = busy_server.base_url
    stop = threading.Event()
    others = [threading.Thread(target=keep_signing_in, args=(busy_server, stop)) for _ in range(3)]
    for other in others:
        other.start()
    try:
        page.goto(base + "/sign-in")
        busy, signed_in = page.get_by_text(BUSY), page.get_by_role("button", name="Sign out")
        for _ in range(30):  # a try can slip in between two of the others' hashes
            page.get_by_label("Email").fill(JANE_EMAIL)
            page.get_by_label("Password").fill(JANE_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(busy.or_(signed_in)).to_be_visible()
            if busy.is_visible():
                break
            signed_in.click()
            page.goto(base + "/sign-in")
        expect(page.get_by_text(BUSY)).to_be_visible()
        # The form is still there, with the email kept, ready for the next try.
        expect(page.get_by_label("Email")).to_have_value(JANE_EMAIL)
        expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
    finally:
        stop.set()
        for other in others:
            other.join()
    page.get_by_label("Password").fill(JANE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/invoices")
