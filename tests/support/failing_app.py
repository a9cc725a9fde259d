"""`portal.asgi:app` with one route more, `/boom`, whose handler has a bug: how the tests
make a real server process end a request in the 500 page (tests/test_observability.py).

    uvicorn tests.support.failing_app:app
"""

from __future__ import annotations

from typing import Any

from litestar import get

from portal.asgi import app
from portal.auth.context import TenantDep


class Bug(RuntimeError):
    """What a handler with a bug raises."""


@get("/boom")
async def boom(tenant: TenantDep) -> Any:
    """A business's page (its business resolved first, as every page's is) with a bug."""
    raise Bug(f"a bug in a page of {tenant['host']}, for the fake Sentry ingest")


app.register(boom)  # type: ignore[attr-defined]
