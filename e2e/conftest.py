"""Browser tests: a real server process on a free port with its own SQLite database (a copy
of the session's migrated, demo-loaded template), driven by the system Chromium through
Playwright."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from portal.db.engine import sqlite_path
from portal.testing import (
    CHEAP_HASHING_ENV,
    CHROMIUM_ARGS,
    Server,
    chromium_path,
    engine_kind,
    start_server,
    stop_server,
)
from tests.support.databases import make_template

# An expectation waits as long as an action (10 s, below): on a busy machine an answer that
# hashes a password can take longer than Playwright's default 5 s.
expect.set_options(timeout=10_000)


def pytest_collection_modifyitems(config, items):
    # Browser tests run once, on SQLite; the PostgreSQL run covers the server-side suite.
    if engine_kind() == "postgres":
        skip = pytest.mark.skip(reason="browser tests run on SQLite only")
        for item in items:
            if "/e2e/" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with the demo loaded, made once and copied for each server."""
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e-template') / 'demo.sqlite3'}"
    return Path(sqlite_path(make_template(url, with_demo=True).url))


@pytest.fixture(scope="session")
def start_demo_server(demo_database: Path) -> Callable[..., Server]:
    """Start a `portal serve` process on a fresh copy of the demo database (passwords hashed
    at test cost); stop it with `stop_server`."""

    def start(var_dir: Path, extra_env: dict[str, str] | None = None) -> Server:
        return start_server(
            var_dir, {**CHEAP_HASHING_ENV, **(extra_env or {})}, template=demo_database
        )

    return start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_demo_server) -> Iterator[Server]:
    """A fresh demo portal for this test module."""
    srv = start_demo_server(tmp_path_factory.mktemp("e2e"))
    yield srv
    stop_server(srv)


# Package scope, not session: while Playwright's sync API runs, its event loop occupies this
# thread, so a server-side test module run after it by the same pytest-xdist worker could not
# run its own loop. The browser closes whenever a worker leaves the browser tests.
@pytest.fixture(scope="package")
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
