"""The sync API from the tests: an empty business to push into, its keys, an HTTP client
that sends one, and NDJSON batches."""

from __future__ import annotations

import json
from typing import Any

import httpx
from litestar import Litestar

from portal.db import api_keys
from portal.importer import import_file

ADMIN_PASSWORD = "boss-pass-1234"


async def empty_business(host: str) -> int:
    """A business with an open portal, an administrator and no records; returns its id."""
    return await import_file(
        json.dumps(
            {
                "format": "portal-import/1",
                "business": {
                    "host": host,
                    "name": f"{host.title()} Services",
                    "email": f"help@{host}.example",
                    "portal": {
                        "enabled": True,
                        "legal_accepted_by": f"boss@{host}.example",
                        "legal_accepted_at": "2026-01-05T15:00:00Z",
                    },
                },
                "staff": [
                    {"email": f"boss@{host}.example", "role": "admin", "password": ADMIN_PASSWORD}
                ],
            }
        )
    )


async def new_key(tenant_id: int, scope: str = "write", name: str = "Test system") -> str:
    _, key = await api_keys.create(tenant_id, name, scope, "tests")
    return key


def api_client(app: Litestar, host: str, key: str | None) -> httpx.AsyncClient:
    """A client for `host`'s /api/v1/, sending `key` (if any) as a bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"http://{host}.localhost/api/v1",
        headers=headers,
        timeout=120,
    )


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


async def bulk(client: httpx.AsyncClient, records: list[dict[str, Any]]) -> httpx.Response:
    return await client.post(
        "/bulk", content=ndjson(records), headers={"Content-Type": "application/x-ndjson"}
    )


async def register(
    app: Litestar, settings: Any, host: str, email: str, password: str
) -> httpx.AsyncClient:
    """A customer of `host` asks for an invitation, follows the emailed link and creates a
    password: returns the client, signed in (the caller closes it)."""
    import re

    from portal.auth.account_requests import answer_pending
    from portal.db import tables as t
    from tests.support.http import make_client, post_form

    client = make_client(app, f"http://{host}.localhost")
    await post_form(client, "/invite", {"email": email})
    await answer_pending(settings)
    row = (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == email)
        .order_by(t.OutboxEmail.id, ascending=False)
        .first()
        .run()
    )
    assert row is not None, f"no invitation email to {email}"
    link = re.search(r"http://\S+", row["text_body"]).group(0)
    path = "/" + link.split("/", 3)[3]
    token = path.split("token=")[1]
    done = await post_form(
        client, "/confirm", {"token": token, "password": password}, csrf_page=path
    )
    assert done.status_code == 303, done.text
    return client
