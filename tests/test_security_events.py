"""Security and money events in the log (issue 13.5): one JSON line each for password
changes (customer and staff, in the account and from reset links), staff changes (added,
role changed, disabled, re-enabled, reset link sent), passkeys added and removed, a
sign-in link used, sign-in failures and lockouts, payments and failed emails. Each made
during a request carries its request id (the one in `X-Request-ID`), the Host header, the
business and who did it; none carries a password, a token or card data.

Read as an operator reads them: the lines the app's `portal.events` logger writes, through
the portal's own JSON formatter (a real server process's lines: tests/test_operations.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from portal import logs
from portal.auth.account_requests import answer_pending
from portal.db import tables as t
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.mail.backends import PermanentFailure
from portal.mail.worker import deliver_due
from tests.support.authenticator import SoftAuthenticator
from tests.support.http import make_client, post_form, sign_in, staff_sign_in, token_of
from tests.support.paying import GOOD_CARD, new_invoice, pay

ORIGIN = f"http://{DEMO_HOST}.localhost:8000"  # the links' address (settings.public_url)
NEW_JANE = "a new tune for jane"
NEW_ADMIN = "the admin's second password"


class Lines(logging.Handler):
    """The JSON lines the events logger writes, as the server's formatter makes them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logs.JSONFormatter())
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(self.format(record))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [line for line in map(json.loads, self.raw) if line["event"] == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.of(name)
        assert len(found) == 1, (name, self.raw)
        return found[0]


@pytest.fixture
def events() -> Iterator[Lines]:
    lines = Lines()
    logs.events_log.addHandler(lines)
    previous = logs.events_log.level
    logs.events_log.setLevel(logging.INFO)
    yield lines
    logs.events_log.removeHandler(lines)
    logs.events_log.setLevel(previous)


def from_request(line: dict[str, Any], response: Any) -> None:
    """The event was made while answering `response`'s request, for the demo business."""
    assert line["request_id"] == response.headers["x-request-id"], line
    assert line["business"] == DEMO_HOST and line["host"] == f"{DEMO_HOST}.localhost", line


def no_secrets(lines: Lines, *secrets: str) -> None:
    text = "\n".join(lines.raw)
    for secret in secrets:
        assert secret not in text, secret
    assert "password_hash" not in text and "$argon2" not in text


async def emails_to(settings, address: str) -> list[dict]:
    await answer_pending(settings)
    return (
        await t.OutboxEmail.select()
        .where(t.OutboxEmail.to_addr == address)
        .order_by(t.OutboxEmail.id)
        .run()
    )


def link_path(row: dict) -> str:
    match = re.search(r"http://[^/\s]+(/\S+)", row["text_body"])
    assert match, row["text_body"]
    return match.group(1)


async def jane_id() -> int:
    row = (
        await t.PortalAccount.select(t.PortalAccount.id)
        .where(t.PortalAccount.email == JANE_EMAIL)
        .first()
    )
    assert row is not None
    return int(row["id"])


async def staff_id(email: str) -> int:
    row = await t.StaffUser.select(t.StaffUser.id).where(t.StaffUser.email == email).first()
    assert row is not None
    return int(row["id"])


async def test_a_customer_password_change_and_reset_are_logged_with_who_and_the_request(
    app, demo, settings, events
):
    account = await jane_id()
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        changed = await post_form(
            c,
            "/account/password",
            {"current_password": JANE_PASSWORD, "new_password": NEW_JANE},
            csrf_page="/account",
        )
        assert changed.status_code == 303
    line = events.one("password.changed")
    from_request(line, changed)
    assert line["actor"] == f"customer:{account}" and line["area"] == "customer"
    assert line["level"] == "info" and line["logger"] == "portal.events"

    async with make_client(app) as c:
        await post_form(c, "/forgot", {"email": JANE_EMAIL})
        path = link_path((await emails_to(settings, JANE_EMAIL))[-1])
        token = path.split("token=")[1]
        reset = await post_form(
            c, "/reset", {"token": token, "password": JANE_PASSWORD}, csrf_page=path
        )
        assert reset.status_code == 303
    line = events.one("password.reset")
    from_request(line, reset)
    assert line["actor"] == f"customer:{account}" and line["area"] == "customer"
    no_secrets(events, JANE_PASSWORD, NEW_JANE, token)


async def test_a_sign_in_link_used_is_logged(app, demo, settings, events):
    account = await jane_id()
    async with make_client(app) as c:
        await post_form(c, "/sign-in/link", {"email": JANE_EMAIL}, csrf_page="/sign-in")
        path = link_path((await emails_to(settings, JANE_EMAIL))[-1])
        assert path.startswith("/sign-in/email?token="), path
        token = path.split("token=")[1]
        used = await post_form(c, "/sign-in/email", {"token": token}, csrf_page=path)
        assert used.status_code == 303 and (await c.get("/invoices")).status_code == 200
    line = events.one("signin.link_used")
    from_request(line, used)
    assert line["actor"] == f"customer:{account}"
    no_secrets(events, token)


async def test_sign_in_failures_and_the_lockout_carry_the_request(app, demo, events):
    async with make_client(app) as c:
        for _ in range(10):
            wrong = await post_form(
                c, "/sign-in", {"email": "customer2002@example.net", "password": "not it at all"}
            )
            assert wrong.status_code == 422
        locked = await post_form(
            c, "/sign-in", {"email": "customer2002@example.net", "password": "not it at all"}
        )
        assert locked.status_code == 429
    failed = events.of("signin.failed")
    assert len(failed) == 10 and failed[0]["area"] == "signin"
    from_request(failed[-1], wrong)
    line = events.one("signin.locked")
    from_request(line, locked)
    assert line["level"] == "warning" and line["area"] == "signin"
    no_secrets(events, "not it at all", "customer2002@example.net")


async def test_passkeys_added_and_removed_are_logged(app, demo, events):
    account = await jane_id()
    async with make_client(app) as c:
        await sign_in(c, JANE_EMAIL, JANE_PASSWORD)
        headers = {"Content-Type": "application/json", "X-CSRFToken": await token_of(c)}
        options = (await c.post("/account/passkeys/options", content="{}", headers=headers)).json()
        authenticator = SoftAuthenticator()
        answer = authenticator.create(options, ORIGIN)
        added = await c.post("/account/passkeys", content=json.dumps(answer), headers=headers)
        assert added.status_code == 200
        row = await t.Passkey.select(t.Passkey.id).where(t.Passkey.account == account).first()
        assert row is not None
        removed = await c.post(
            f"/account/passkeys/{row['id']}/remove", data={"_csrf_token": await token_of(c)}
        )
        assert removed.status_code == 303
    line = events.one("passkey.added")
    from_request(line, added)
    assert line["actor"] == f"customer:{account}"
    line = events.one("passkey.removed")
    from_request(line, removed)
    assert line["actor"] == f"customer:{account}" and line["passkey"] == row["id"]
    # The removed passkey no longer signs in: a failed sign-in, with its request.
    async with make_client(app) as c:
        headers = {"Content-Type": "application/json", "X-CSRFToken": await token_of(c)}
        options = (await c.post("/sign-in/passkey/options", content="{}", headers=headers)).json()
        answer = authenticator.get(options, ORIGIN)
        refused = await c.post("/sign-in/passkey", content=json.dumps(answer), headers=headers)
        assert refused.status_code == 422
    line = events.one("signin.failed")
    from_request(line, refused)
    assert line["area"] == "passkey"


async def test_staff_changes_and_staff_passwords_are_logged(app, demo, settings, events):
    admin = await staff_id(ADMIN_EMAIL)
    actor = f"staff:{admin}"
    async with make_client(app) as boss:
        await staff_sign_in(boss, ADMIN_EMAIL, ADMIN_PASSWORD)

        async def act(path: str, data: dict | None = None):
            answer = await post_form(boss, path, data or {}, csrf_page="/office/staff")
            assert answer.status_code == 303, answer.text
            return answer

        added = await act(
            "/office/staff", {"name": "Pat Doe", "email": "pat@xyz.example", "role": "office"}
        )
        pat = await staff_id("pat@xyz.example")
        role = await act(f"/office/staff/{pat}/role", {"role": "admin"})
        same = await act(f"/office/staff/{pat}/role", {"role": "admin"})  # nothing changes
        disabled = await act(f"/office/staff/{pat}/disable")
        enabled = await act(f"/office/staff/{pat}/enable")
        sent = await act(f"/office/staff/{pat}/reset-link")
        changed = await post_form(
            boss,
            "/office/password",
            {"current_password": ADMIN_PASSWORD, "new_password": NEW_ADMIN},
        )
        assert changed.status_code == 303
    assert same.status_code == 303
    for name, response, extra in [
        ("staff.added", added, {"staff_member": pat, "role": "office"}),
        ("staff.role_changed", role, {"staff_member": pat, "role": "admin"}),
        ("staff.disabled", disabled, {"staff_member": pat}),
        ("staff.enabled", enabled, {"staff_member": pat}),
        ("staff.reset_link_sent", sent, {"staff_member": pat}),
        ("password.changed", changed, {"area": "staff"}),
    ]:
        line = events.one(name)
        from_request(line, response)
        assert line["actor"] == actor, line
        assert {k: line[k] for k in extra} == extra, line

    # Pat chooses a password from the reset link (the newest email to Pat).
    [*_, email] = await emails_to(settings, "pat@xyz.example")
    path = link_path(email)
    token = path.split("token=")[1]
    async with make_client(app) as c:
        reset = await post_form(
            c, "/office/reset", {"token": token, "password": "pat picks a long one"}, csrf_page=path
        )
        assert reset.status_code == 303
    line = events.one("password.reset")
    from_request(line, reset)
    assert line["actor"] == f"staff:{pat}" and line["area"] == "staff"
    no_secrets(events, ADMIN_PASSWORD, NEW_ADMIN, "pat picks a long one", token)
    # The demo administrator's password back, for the other tests of this module.
    async with make_client(app) as boss:
        await staff_sign_in(boss, ADMIN_EMAIL, NEW_ADMIN)
        back = await post_form(
            boss,
            "/office/password",
            {"current_password": NEW_ADMIN, "new_password": ADMIN_PASSWORD},
        )
        assert back.status_code == 303


async def test_payment_state_changes_are_logged_without_card_data(jane, demo, events):
    invoice = await new_invoice(demo, total=4200)
    page = await pay(jane, [invoice["id"]])
    assert page.status_code == 200
    started = events.one("payment.started")
    assert started["amount_cents"] == 4200 and started["business"] == DEMO_HOST
    succeeded = events.one("payment.succeeded")
    assert succeeded["payment"] == started["payment"] and succeeded["amount_cents"] == 4200
    assert succeeded["actor"] == "gateway"
    no_secrets(events, GOOD_CARD, GOOD_CARD.replace(" ", ""))


async def test_an_email_that_fails_for_good_is_an_event(app, demo, settings, events):
    class Refusing:
        async def send(self, message: Any) -> None:
            raise PermanentFailure("550 no such mailbox")

    await answer_pending(settings)
    await deliver_due(settings, backend=Refusing())  # what was queued before: out of the way
    async with make_client(app) as c:
        await post_form(c, "/sign-in/link", {"email": JANE_EMAIL}, csrf_page="/sign-in")
    await answer_pending(settings)
    events.raw.clear()
    counts = await deliver_due(settings, backend=Refusing())
    assert counts["failed"] == 1
    line = events.one("email.failed")
    assert line["level"] == "warning" and "550 no such mailbox" in line["message"]
    assert isinstance(line["email_id"], int) and line["actor"] == "worker"
    assert line["tenant"] == demo
    assert JANE_EMAIL not in "\n".join(events.raw)
