"""Passkeys on the server (issue 16.3), answered by a software authenticator: adding one
needs a challenge of the signed-in account; signing in needs a challenge of this business,
a passkey of this business and a signature for its host; each challenge works once."""

from __future__ import annotations

import json

import pytest

from portal.auth.account_requests import answer_pending
from portal.db import tables as t
from portal.demo import JANE_EMAIL, JANE_PASSWORD
from portal.importer import import_file
from tests.support.authenticator import SoftAuthenticator
from tests.support.http import make_client, sign_in, token_of

ORIGIN = "http://xyzplumbing.localhost:8000"


async def post_json(client, path: str, body: object = None):
    return await client.post(
        path,
        content=json.dumps(body if body is not None else {}),
        headers={"Content-Type": "application/json", "X-CSRFToken": await token_of(client)},
    )


async def add_passkey(client, authenticator: SoftAuthenticator) -> dict:
    options = (await post_json(client, "/account/passkeys/options")).json()
    return await post_json(client, "/account/passkeys", authenticator.create(options, ORIGIN))


async def passkey_sign_in(app, authenticator: SoftAuthenticator, **kw):
    async with make_client(app) as c:
        options = (await post_json(c, "/sign-in/passkey/options")).json()
        answer = authenticator.get(options, kw.pop("origin", ORIGIN), **kw)
        response = await post_json(c, "/sign-in/passkey", answer)
        return response, (await c.get("/invoices")).status_code, answer


@pytest.fixture(scope="module")
async def other_business(app, demo) -> int:
    data = {
        "format": "portal-import/1",
        "business": {
            "host": "otherbiz",
            "name": "Other Biz",
            "portal": {
                "enabled": True,
                "legal_accepted_by": "a@other.example",
                "legal_accepted_at": "2026-01-01T00:00:00Z",
            },
        },
        "business_units": [{"id": "U", "name": "Plumbing"}],
        "customers": [
            {
                "id": "O2",
                "name": "Jane at Other",
                "emails": [JANE_EMAIL],
                "locations": [{"id": "OL2", "street": "10 Elm"}],
                "portal_account": {"email": JANE_EMAIL, "password": "other-biz-password"},
            },
        ],
    }
    return await import_file(json.dumps(data))


async def test_the_business_host_is_the_relying_party(app, demo):
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        options = (await post_json(c, "/account/passkeys/options")).json()
        assert options["rp"] == {"id": "xyzplumbing.localhost", "name": "XYZ Services"}
        assert options["user"]["name"] == JANE_EMAIL
        assert options["authenticatorSelection"]["residentKey"] == "required"
        sign_in_options = (await post_json(c, "/sign-in/passkey/options")).json()
        assert sign_in_options["rpId"] == "xyzplumbing.localhost"
        assert not sign_in_options.get("allowCredentials")  # nothing about who has passkeys
    stored = await t.PasskeyChallenge.select(t.PasskeyChallenge.challenge_hash).run()
    assert options["challenge"] not in json.dumps(stored)  # kept hashed


async def test_add_a_passkey_then_sign_in_with_it_once_per_challenge(app, demo, settings):
    authenticator = SoftAuthenticator()
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        added = await add_passkey(c, authenticator)
        assert added.status_code == 200, added.text
        assert added.json() == {"redirect": "/account/security?done=passkey-added"}
        page = await c.get("/account/security?done=passkey-added")
        assert "Your passkey was added." in page.text
    await answer_pending(settings)
    subjects = [
        r["subject"]
        for r in await t.OutboxEmail.select(t.OutboxEmail.subject)
        .where(t.OutboxEmail.to_addr == JANE_EMAIL)
        .run()
    ]
    assert "A passkey was added to your XYZ Services portal account" in subjects

    response, invoices, answer = await passkey_sign_in(app, authenticator)
    assert response.status_code == 200 and response.json() == {"redirect": "/invoices"}
    assert invoices == 200  # signed in
    # The same answer again (a replay): its challenge is used up.
    async with make_client(app) as c:
        replay = await post_json(c, "/sign-in/passkey", answer)
        assert replay.status_code == 422
        assert "That passkey didn't work here." in replay.json()["error"]
        assert (await c.get("/invoices")).status_code == 303


async def test_answers_that_are_not_for_this_business_or_challenge_are_refused(
    app, demo, other_business
):
    authenticator = SoftAuthenticator()
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        assert (await add_passkey(c, authenticator)).status_code == 200
        # A challenge nobody handed out, garbage, and an answer far too large.
        made_up = authenticator.create(
            {"rp": {"id": "xyzplumbing.localhost"}, "challenge": "AAAA"}, ORIGIN
        )
        for body in (made_up, "not json", {"response": {}}, {"pad": "x" * 30_000}):
            refused = await post_json(c, "/account/passkeys", body)
            assert refused.status_code == 422
    # Signed for another host, or sent from another origin: refused.
    response, invoices, _ = await passkey_sign_in(app, authenticator, rp_id="evil.example")
    assert response.status_code == 422 and invoices == 303
    response, invoices, _ = await passkey_sign_in(app, authenticator, origin="http://evil.example")
    assert response.status_code == 422 and invoices == 303
    # Jane's XYZ passkey at another business (where Jane also has an account): nobody there.
    async with make_client(app, "http://otherbiz.localhost") as c:
        options = (await post_json(c, "/sign-in/passkey/options")).json()
        assert options["rpId"] == "otherbiz.localhost"
        answer = authenticator.get(options, "http://otherbiz.localhost:8000", rp_id=options["rpId"])
        assert (await post_json(c, "/sign-in/passkey", answer)).status_code == 422
        assert (await c.get("/invoices")).status_code == 303


async def test_passkeys_are_listed_and_removed_from_the_security_page(app, demo):
    async with make_client(app) as c:
        c.headers["User-Agent"] = (
            "Mozilla/5.0 (Linux; Android 14) Chrome/131.0 Mobile Safari/537.36"
        )
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        authenticator = SoftAuthenticator()
        assert (await add_passkey(c, authenticator)).status_code == 200
        page = await c.get("/account/security")
        assert "Chrome on Android</strong>, added" in page.text
        [mine] = (
            await t.Passkey.select(t.Passkey.id)
            .where(t.Passkey.credential_id.like("%"))
            .order_by(t.Passkey.id, ascending=False)
            .limit(1)
            .run()
        )
        token = await token_of(c)
        removed = await c.post(
            f"/account/passkeys/{mine['id']}/remove", data={"_csrf_token": token}
        )
        assert removed.status_code == 303
        assert removed.headers["location"] == "/account/security?done=passkey-removed"
        assert await t.Passkey.count().where(t.Passkey.id == mine["id"]).run() == 0
    response, invoices, _ = await passkey_sign_in(app, authenticator)
    assert response.status_code == 422 and invoices == 303


async def test_adding_a_passkey_needs_a_signed_in_customer(app, demo):
    async with make_client(app) as c:
        response = await post_json(c, "/account/passkeys/options")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sign-in")
