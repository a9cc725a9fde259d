"""Fixtures: a fresh database per test module on the engine DATABASE_URL names,
the app built from test settings, and an HTTP client on the demo business's host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from portal.app import create_app
from portal.config import Settings
from portal.db import engine as db_engine
from portal.db.migrate import migrate
from portal.demo import DEMO_HOST, load_demo
from portal.testing import fresh_database

DEMO_BASE_URL = f"http://{DEMO_HOST}.localhost"


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
async def database_url(var_dir: Path) -> AsyncIterator[str]:
    async with fresh_database(var_dir) as url:
        yield url


@pytest.fixture(scope="module")
def settings(database_url: str, var_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        var_dir=var_dir,
        run_mail_worker=False,
    )


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app, its database migrated, its engine started on this module's event loop.

    Requests go straight to the ASGI app in the same loop (Litestar's own test client
    runs the app in another thread and loop, which a connection pool cannot share).
    """
    application = create_app(settings)
    engine = db_engine.current_engine()
    await db_engine.start(engine)
    await migrate(quiet=True)
    yield application
    await db_engine.stop(engine)


def make_client(app: Litestar, base_url: str = DEMO_BASE_URL) -> httpx.AsyncClient:
    """An HTTP client that calls the app in-process, for the host in `base_url`."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture(scope="module")
async def demo(app: Litestar) -> int:
    """The demo business loaded into this module's database; returns its id."""
    return await load_demo(date.today())


@pytest.fixture(scope="module")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c
