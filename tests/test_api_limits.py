"""The sync API's limits: requests per key per minute counted in the database (so two app
processes share one count), answered 429 with Retry-After; bodies capped."""

from __future__ import annotations

import httpx

from portal.api.app import create_api
from portal.db import tables as t
from tests.support.api import api_client, empty_business, new_key


def bare(api, key: str) -> httpx.AsyncClient:
    """A client of an API app on its own (not mounted under /api/v1)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://rateco.localhost",
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_a_key_over_its_rate_is_answered_429_across_processes(app, settings):
    tenant_id = await empty_business("rateco")
    key = await new_key(tenant_id, scope="read")
    other_key = await new_key(tenant_id, scope="read", name="Other system")
    limited = settings.with_(api_requests_per_minute=5)
    # Two API apps on one database stand for two server processes: nothing in memory is
    # shared between them, only the database.
    first, second = create_api(limited), create_api(limited)
    async with bare(first, key) as a, bare(second, key) as b:
        answers = [await (a if n % 2 else b).get("/events") for n in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        over = await a.get("/events")
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert "5 requests a minute" in over.json()["detail"]
        assert (await b.get("/events")).status_code == 429
    # Another key of the same business has its own count.
    async with bare(first, other_key) as c:
        assert (await c.get("/events")).status_code == 200
    row = await t.ThrottleCount.select().where(t.ThrottleCount.tenant == tenant_id).run()
    assert len(row) == 2


async def test_a_body_over_the_cap_is_refused_before_it_is_read_whole(app):
    tenant_id = await empty_business("capco")
    async with api_client(app, "capco", await new_key(tenant_id)) as api:
        too_big = b'{"record": "business_unit", "id": "B", "name": "B"}\n' * 400_000  # ~21 MB
        answer = await api.post("/bulk", content=too_big)
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert not await t.BusinessUnit.exists().where(t.BusinessUnit.tenant == tenant_id).run()
