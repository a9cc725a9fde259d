"""Browser tests: a real server process on a free port with its own SQLite database,
driven by the system Chromium through Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from portal.testing import (
    CHROMIUM_ARGS,
    Server,
    chromium_path,
    engine_kind,
    start_server,
    stop_server,
)


def pytest_collection_modifyitems(config, items):
    # Browser tests run once, on SQLite; the PostgreSQL run covers the server-side suite.
    if engine_kind() == "postgres":
        skip = pytest.mark.skip(reason="browser tests run on SQLite only")
        for item in items:
            if "/e2e/" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh demo portal for this test module."""
    srv = start_server(tmp_path_factory.mktemp("e2e"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(params=["js", "nojs"])
def js(request: pytest.FixtureRequest) -> bool:
    """Run a test twice: with JavaScript on (htmx swaps) and off (plain links and forms)."""
    return request.param == "js"


@pytest.fixture
def context(browser: Browser, js: bool) -> Iterator[BrowserContext]:
    ctx = browser.new_context(java_script_enabled=js)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on any CSP violation or uncaught script error."""
    pg = context.new_page()
    problems: list[str] = []
    pg.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    pg.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    yield pg
    assert not problems, "CSP violations or script errors:\n" + "\n".join(problems)
