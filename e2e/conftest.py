"""Browser tests: a real server process on a free port with its own SQLite database,
driven by the system Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from portal.demo import DEMO_HOST
from portal.testing import engine_kind, free_port

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config, items):
    # Browser tests run once, on SQLite; the PostgreSQL run covers the server-side suite.
    if engine_kind() == "postgres":
        skip = pytest.mark.skip(reason="browser tests run on SQLite only")
        for item in items:
            if "/e2e/" in str(item.fspath):
                item.add_marker(skip)


@dataclass
class Server:
    """A running `portal serve` process."""

    port: int
    var_dir: Path
    process: subprocess.Popen
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{DEMO_HOST}.localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run a `portal` command against this server's database."""
        return subprocess.run(
            [sys.executable, "-m", "portal.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def start_server(var_dir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """Migrate a new SQLite database, load the demo and start serving it."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{var_dir / 'portal.sqlite3'}",
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "e2e-secret-key-not-for-production",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    for step in (["migrate", "--quiet"], ["demo"]):
        subprocess.run(
            [sys.executable, "-m", "portal.cli", *step],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
    log = open(var_dir / "server.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(port=port, var_dir=var_dir, process=process, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((var_dir / "server.log").read_text())
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "localhost"})
            urllib.request.urlopen(req, timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start:\n" + (var_dir / "server.log").read_text())


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh demo portal for this test module."""
    srv = start_server(tmp_path_factory.mktemp("e2e"))
    yield srv
    stop_server(srv)


def chromium_path() -> str | None:
    """The system Chromium (this machine cannot download Playwright's own)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None  # fall back to a browser installed by `playwright install chromium`


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
