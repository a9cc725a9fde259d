"""Fixtures: a fresh database per test module on the engine DATABASE_URL names,
the app built from test settings, and an HTTP client on the demo business's host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from portal.app import create_app
from portal.config import Settings
from portal.db import engine as db_engine
from portal.db.migrate import migrate
from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD, load_demo
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


CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


async def csrf_from(client: httpx.AsyncClient, path: str) -> str:
    """The CSRF token from a page's form (and the cookie set with it)."""
    response = await client.get(path)
    match = CSRF_FIELD.search(response.text)
    assert match, f"no CSRF field on {path} ({response.status_code})"
    return match.group(1)


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, Any],
    *,
    csrf_page: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Submit a form the way a browser does: CSRF token from the page, then POST."""
    token = await csrf_from(client, csrf_page or path)
    return await client.post(path, data={"_csrf_token": token, **data}, headers=headers)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    response = await post_form(
        client, "/sign-in", {"email": email, "password": password}, csrf_page="/sign-in"
    )
    assert response.status_code == 303, response.text
    return response


@pytest.fixture(scope="module")
async def jane(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as Jane Doe, the demo's registered customer."""
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        yield c


# --- office staff (appended by the office work) ---------------------------------------------


async def staff_sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """Sign a client in on the office sign-in page."""
    response = await post_form(
        client,
        "/office/sign-in",
        {"email": email, "password": password},
        csrf_page="/office/sign-in",
    )
    assert response.status_code == 303, response.text
    return response


@pytest.fixture(scope="module")
async def admin(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in to the office as the demo's administrator."""
    from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD

    async with make_client(app) as c:
        await staff_sign_in(c, ADMIN_EMAIL, ADMIN_PASSWORD)
        yield c


@pytest.fixture(scope="module")
async def office(app: Litestar, demo: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in to the office as the demo's office-role staff member."""
    from portal.demo import OFFICE_EMAIL, OFFICE_PASSWORD

    async with make_client(app) as c:
        await staff_sign_in(c, OFFICE_EMAIL, OFFICE_PASSWORD)
        yield c


NEW_ADMIN_PASSWORD = "boss-pass-1234"
NEW_OFFICE_PASSWORD = "desk-pass-1234"
NEW_CUSTOMER_PASSWORD = "pat-pass-12345"


def new_business_data(host: str, *, open_portal: bool = False) -> dict[str, Any]:
    """A small business as an import file: by default just imported, legal agreement not
    accepted and portal disabled. Staff `boss@<host>.example` (admin) and
    `desk@<host>.example` (office); customer Pat Lee (registered, `pat@<host>.example`)."""
    portal: dict[str, Any] = {"enabled": False}
    if open_portal:
        portal = {
            "enabled": True,
            "legal_accepted_by": f"boss@{host}.example",
            "legal_accepted_at": "2026-01-05T15:00:00Z",
        }
    return {
        "format": "portal-import/1",
        "business": {
            "host": host,
            "name": "Brightwater Plumbing",
            "email": f"hello@{host}.example",
            "phone": "(555) 222-0101",
            "time_zone": "America/Denver",
            "portal": portal,
        },
        "business_units": [
            {"id": "PL", "name": "Plumbing"},
            {"id": "EL", "name": "Electrical", "invoices_downloadable": False},
        ],
        "staff": [
            {
                "email": f"boss@{host}.example",
                "name": "Bea Boss",
                "role": "admin",
                "password": NEW_ADMIN_PASSWORD,
            },
            {
                "email": f"desk@{host}.example",
                "name": "Dan Desk",
                "role": "office",
                "password": NEW_OFFICE_PASSWORD,
            },
        ],
        "customers": [
            {
                "id": "C1",
                "name": "Pat Lee",
                "emails": [f"pat@{host}.example"],
                "locations": [
                    {"id": "L1", "name": "Home", "street": "9 Elm Row", "city": "Boulder"}
                ],
                "portal_account": {
                    "email": f"pat@{host}.example",
                    "password": NEW_CUSTOMER_PASSWORD,
                },
            }
        ],
        "jobs": [
            {
                "number": "J-1",
                "customer": "C1",
                "location": "L1",
                "business_unit": "PL",
                "summary": "Leak fixed",
                "status": "completed",
                "completed_at": "2026-10-01T15:00:00Z",
            }
        ],
        "invoices": [
            {
                "number": "INV-1",
                "job": "J-1",
                "date": "2026-10-01",
                "due_date": "2026-10-31",
                "lines": [{"description": "Repair", "unit_price_cents": 12500}],
            }
        ],
        "memberships": [
            {
                "id": "M1",
                "customer": "C1",
                "location": "L1",
                "type": "Leak Guard",
                "status": "active",
                "start_date": "2026-01-01",
            },
            {
                "id": "M2",
                "customer": "C1",
                "location": "L1",
                "type": "Old Plan",
                "status": "canceled",
                "start_date": "2025-01-01",
            },
        ],
    }


async def import_business(host: str, *, open_portal: bool = False) -> int:
    """Import `new_business_data(host)` into the module's database; returns its id."""
    import json

    from portal.db.importer import import_file

    return await import_file(json.dumps(new_business_data(host, open_portal=open_portal)))
