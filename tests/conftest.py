"""Fixtures: a database per test module on the engine DATABASE_URL names (a copy of the
session's template: with the demo loaded when the module uses it), the app built from test
settings, and HTTP clients on the demo business's host. Helpers live in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from portal.app import create_app
from portal.auth import passwords
from portal.config import Settings
from portal.db import engine as db_engine
from portal.demo import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    JANE_EMAIL,
    JANE_PASSWORD,
    OFFICE_EMAIL,
    OFFICE_PASSWORD,
)
from portal.testing import fresh_database
from tests.support.databases import DemoBusiness, Template, Templates
from tests.support.http import make_client, sign_in, staff_sign_in
from tests.support.world import World, build_world


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """The session's template databases (made on first use, dropped at the end)."""
    made = Templates(tmp_path_factory.mktemp("templates"))
    yield made
    made.drop()


def module_uses_demo(request: pytest.FixtureRequest) -> bool:
    """True when a test of the requesting module uses the demo (directly or through a
    fixture such as `jane`): the others get a database without it, so their snapshots of
    every table stay small."""
    return any(
        "demo" in item.fixturenames
        for item in request.session.items
        if item.module is request.module
    )


@pytest.fixture(scope="module")
def database_template(request: pytest.FixtureRequest, templates: Templates) -> Template:
    return templates.get(with_demo=module_uses_demo(request))


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
async def database_url(var_dir: Path, database_template: Template) -> AsyncIterator[str]:
    """This module's own database: a copy of its template, migrated and maybe with the demo."""
    async with fresh_database(var_dir, database_template.url) as url:
        yield url


@pytest.fixture(scope="module")
def settings(database_url: str, var_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        var_dir=var_dir,
        run_mail_worker=False,
        cheap_password_hashing_for_tests=True,
    )


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app on this module's (migrated) database, its engine started on this module's
    event loop.

    Requests go straight to the ASGI app in the same loop (Litestar's own test client
    runs the app in another thread and loop, which a connection pool cannot share).
    """
    application = create_app(settings)
    engine = db_engine.current_engine()
    await db_engine.start(engine)
    yield application
    await db_engine.stop(engine)


@pytest.fixture
def production_hashing() -> Iterator[None]:
    """Passwords hashed at the production cost for one test (the suites hash at test cost)."""
    passwords.use_cost(cheap_for_tests=False)
    yield
    passwords.use_cost(cheap_for_tests=True)


@pytest.fixture(scope="module")
async def demo(app: Litestar, database_template: Template) -> DemoBusiness:
    """The demo business in this module's database: its id, and `.today`, the date its
    data were loaded with."""
    assert database_template.demo is not None, "module_uses_demo missed this module"
    return database_template.demo


@pytest.fixture(scope="module")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c


@pytest.fixture(scope="module")
async def jane(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as Jane Doe, the demo's registered customer."""
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        yield c


@pytest.fixture(scope="module")
async def admin(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in to the office as the demo's administrator."""
    async with make_client(app) as c:
        await staff_sign_in(c, ADMIN_EMAIL, ADMIN_PASSWORD)
        yield c


@pytest.fixture(scope="module")
async def office(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in to the office as the demo's office-role staff member."""
    async with make_client(app) as c:
        await staff_sign_in(c, OFFICE_EMAIL, OFFICE_PASSWORD)
        yield c


@pytest.fixture(scope="module")
async def world(app: Litestar) -> AsyncIterator[World]:
    """Two businesses (A: alphaplumb, B: betaheat) with their customers signed in, and an
    admin and an office-role staff member of each signed in (tests/support/world.py)."""
    async with build_world(app) as made:
        yield made
