"""Office › API keys: administrators make a named key (shown once, stored hashed, read or
read-and-write), see when it was last used and revoke it; a key works only for its own
business, and a read key cannot write."""

from __future__ import annotations

import hashlib
import re
from contextlib import asynccontextmanager

import pytest

from portal.db import activity
from portal.db import tables as t
from tests.support.api import ADMIN_PASSWORD, api_client, bulk, empty_business, new_key
from tests.support.http import make_client, post_form, staff_sign_in

KEY = re.compile(r'value="(portal_[0-9a-f]{12}_[A-Za-z0-9_-]+)"')
CUSTOMER = {"record": "customer", "id": "C1", "name": "Pat Lee", "emails": ["pat@x.example"]}


@pytest.fixture(scope="module")
async def keyco(app):
    return await empty_business("keyco")


@pytest.fixture(scope="module")
async def otherco(app):
    return await empty_business("otherco")


@asynccontextmanager
async def _admin(app, host):
    async with make_client(app, f"http://{host}.localhost") as client:
        await staff_sign_in(client, f"boss@{host}.example", ADMIN_PASSWORD)
        yield client


async def test_an_admin_makes_a_key_shown_once_and_stored_hashed(app, keyco):
    async with _admin(app, "keyco") as office:
        page = await office.get("/office/api-keys")
        assert page.status_code == 200 and "No keys yet." in page.text
        made = await post_form(
            office, "/office/api-keys", {"name": "ServiceTitan", "scope": "write"}
        )
        assert made.status_code == 200
        key = KEY.search(made.text).group(1)
        assert "shown only this once" in made.text
        again = await office.get("/office/api-keys")
        assert key not in again.text and "ServiceTitan" in again.text and "Never" in again.text
    row = await t.ApiKey.select().where(t.ApiKey.tenant == keyco).first().run()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(row)
    async with api_client(app, "keyco", key) as api:
        assert (await bulk(api, [CUSTOMER])).status_code == 200
    used = await t.ApiKey.select().where(t.ApiKey.id == row["id"]).first().run()
    assert used["last_used_at"] is not None
    async with _admin(app, "keyco") as office:
        assert "Never" not in (await office.get("/office/api-keys")).text
    log = await activity.entries(keyco, action_prefix="api_key.")
    assert [e["action"] for e in log] == ["api_key.created"]


async def test_a_key_needs_a_name_and_a_scope(app, keyco):
    before = await t.ApiKey.count().where(t.ApiKey.tenant == keyco).run()
    async with _admin(app, "keyco") as office:
        refused = await post_form(office, "/office/api-keys", {"name": " \n ", "scope": "root"})
    assert refused.status_code == 422
    assert "Name the key" in refused.text and "Choose what the key may do." in refused.text
    assert await t.ApiKey.count().where(t.ApiKey.tenant == keyco).run() == before


async def test_a_revoked_key_is_refused_at_once(app, keyco):
    key = await new_key(keyco, name="Old system")
    row = await t.ApiKey.select().where(t.ApiKey.name == "Old system").first().run()
    async with _admin(app, "keyco") as office:
        done = await post_form(
            office, f"/office/api-keys/{row['id']}/revoke", {}, csrf_page="/office/api-keys"
        )
        assert done.status_code == 303
        assert "The key was revoked." in (await office.get(done.headers["location"])).text
    async with api_client(app, "keyco", key) as api:
        refused = await bulk(api, [CUSTOMER])
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    log = await activity.entries(keyco, action_prefix="api_key.revoked")
    assert log[0]["subject"] == "Old system"


async def test_office_staff_who_are_not_admins_cannot_see_or_make_keys(app, demo, office):
    assert (await office.get("/office/api-keys")).status_code == 403
    before = await t.ApiKey.count().run()
    refused = await post_form(
        office, "/office/api-keys", {"name": "Mine", "scope": "write"}, csrf_page="/office/settings"
    )
    assert refused.status_code == 403
    assert await t.ApiKey.count().run() == before
    assert "API keys" not in (await office.get("/office/settings")).text


async def test_a_key_works_only_on_its_own_business(app, keyco, otherco):
    key = await new_key(keyco)
    async with api_client(app, "otherco", key) as api:
        refused = await bulk(api, [CUSTOMER])
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("/unauthorized")
    assert not await t.Customer.exists().where(t.Customer.tenant == otherco).run()
    async with api_client(app, "otherco", "portal_000000000000_guess") as api:
        assert (await api.get("/events")).status_code == 401
    async with api_client(app, "otherco", None) as api:
        assert (await api.get("/events")).status_code == 401


async def test_a_read_key_reads_but_cannot_write(app, otherco):
    key = await new_key(otherco, scope="read")
    async with api_client(app, "otherco", key) as api:
        assert (await api.get("/events")).status_code == 200
        refused = await bulk(api, [CUSTOMER])
        put = await api.put(
            "/customers/C1", json={k: v for k, v in CUSTOMER.items() if k != "record"}
        )
    assert refused.status_code == 403 and put.status_code == 403
    assert refused.json()["type"].endswith("/read-only-key")
    assert not await t.Customer.exists().where(t.Customer.tenant == otherco).run()
