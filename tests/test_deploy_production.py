"""The deployment the issue describes (13, "what it must show"), end to end: nginx with a
self-signed certificate on a port other than 443, in front of two `portal serve` processes
(the second with `--workers 2`) that send no email, a separate `portal worker`, a real SMTP
server, one database (PostgreSQL in the PostgreSQL pass), `PORTAL_PUBLIC_URL` naming the
proxy. Every absolute link the portal hands out (an invitation email, the card-page
redirect and its return address, the redirect after a host change, the receipt email)
carries the proxy's scheme, host and port, never an app process's; a customer signs in
and pays across both processes; the sign-in throttle counts the forwarded client address
only from a trusted proxy."""

# These tests drive real processes and wait for them on purpose.
# ruff: noqa: ASYNC220, ASYNC221, ASYNC230, ASYNC251

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portal.db.tables import ThrottleCount
from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import MailSink, first_link, free_port
from tests.support.http import CSRF_FIELD
from tests.support.loopback import loopback_client
from tests.support.paying import GOOD_CARD, future_expiry
from tests.support.proxies import Nginx, needs_nginx

pytestmark = [pytest.mark.deploy, needs_nginx]

MOVED_HOST = "xyzmoved"
INVOICE_FIELD = re.compile(r'name="invoice" value="(\d+)"')
KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')


@dataclass
class Stack:
    nginx: Nginx
    sink: MailSink
    env: dict[str, str]
    ports: list[int]
    processes: list[subprocess.Popen]

    @property
    def public(self) -> str:
        return f"https://{DEMO_HOST}.localhost:{self.nginx.https_port}"

    def client(self, base: str | None = None):
        return loopback_client(base or self.public, cafile=self.nginx.certificate)

    def upstreams(self, since: int) -> set[str]:
        return {e["upstream"] for e in self.nginx.access_log()[since:]}


def _wait_healthy(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz")
            if urllib.request.urlopen(request, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(log.read_text())


@pytest.fixture(scope="module")
def stack(var_dir: Path, database_url: str) -> Iterator[Stack]:
    ports = [free_port(), free_port()]
    nginx = Nginx([f"127.0.0.1:{p}" for p in ports], hosts=(DEMO_HOST, MOVED_HOST))
    sink = MailSink().start()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "production-test-secret",
        "PORTAL_PUBLIC_URL": f"https://localhost:{nginx.https_port}",
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
        "PORTAL_MAIL_WORKER": "0",
        "PORTAL_SMTP_URL": sink.url,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS", None)  # refused with https
    for step in (["migrate", "--quiet"], ["demo"]):
        subprocess.run(
            [sys.executable, "-m", "portal.cli", *step], env=env, check=True, timeout=180
        )
    processes = []
    commands = [
        ["serve", "--port", str(ports[0])],
        ["serve", "--port", str(ports[1]), "--workers", "2"],
        ["worker"],
    ]
    for i, command in enumerate(commands):
        log = var_dir / f"production-{i}.log"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "portal.cli", *command],
                env=env,
                stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for i, port in enumerate(ports):
            _wait_healthy(port, processes[i], var_dir / f"production-{i}.log")
        nginx.start()
        yield Stack(nginx, sink, env, ports, processes)
    finally:
        nginx.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        sink.stop()


async def sign_in(client, email: str, password: str, path: str = "/sign-in"):
    page = await client.get(path)
    token = CSRF_FIELD.search(page.text).group(1)
    return await client.post(
        path, data={"_csrf_token": token, "email": email, "password": password}
    )


async def test_the_invitation_email_links_to_the_proxy(stack: Stack):
    async with stack.client() as visitor:
        page = await visitor.get("/invite")
        token = CSRF_FIELD.search(page.text).group(1)
        asked = await visitor.post(
            "/invite", data={"_csrf_token": token, "email": "bob@example.com"}
        )
        assert asked.status_code in (200, 303), asked.text
    (message,) = stack.sink.wait_for("bob@example.com", timeout=30)  # sent by the worker
    link = first_link(message)
    assert link.startswith(f"{stack.public}/confirm?token="), link
    async with stack.client() as visitor:
        assert (await visitor.get(link.removeprefix(stack.public))).status_code == 200


async def test_a_customer_signs_in_and_pays_across_both_processes(stack: Stack):
    seen = len(stack.nginx.access_log())
    async with stack.client() as jane:
        signed = await sign_in(jane, JANE_EMAIL, JANE_PASSWORD)
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] in ("/invoices", f"{stack.public}/invoices")
        invoices = await jane.get("/invoices")
        assert invoices.status_code == 200
        invoice = INVOICE_FIELD.search(invoices.text).group(1)
        started = await jane.post(
            "/invoices/pay",
            data={
                "_csrf_token": CSRF_FIELD.search(invoices.text).group(1),
                "key": KEY_FIELD.search(invoices.text).group(1),
                "invoice": [invoice],
                "action": "full",
                "amount": "",
            },
        )
        assert started.status_code == 303, started.text
        # The card page (the sandbox's, on the business's address) through the proxy.
        card_page = started.headers["location"]
        assert card_page.startswith(f"{stack.public}/"), card_page
        page = await jane.get(card_page)
        assert page.status_code == 200
        paid = await jane.post(
            card_page,
            data={
                "_csrf_token": CSRF_FIELD.search(page.text).group(1),
                "number": GOOD_CARD,
                "expiry": future_expiry(),
                "cvc": "123",
                "name": "Jane Doe",
            },
        )
        assert paid.status_code == 303, paid.text
        back = paid.headers["location"]
        assert back.startswith(f"{stack.public}/payments/"), back  # the return address
        receipt = await jane.get(back.removeprefix(stack.public))
        assert receipt.status_code == 200 and "Thank you" in receipt.text, receipt.text
    # Signed in on one process, the rest answered by both (the session is in the database).
    assert stack.upstreams(seen) == {f"127.0.0.1:{p}" for p in stack.ports}
    assert all(e["status"] < 500 for e in stack.nginx.access_log()[seen:])
    (email,) = stack.sink.wait_for(JANE_EMAIL, timeout=30)
    assert stack.public in email.get_body(("plain",)).get_content()


async def test_the_throttle_sees_the_forwarded_address_only_from_a_trusted_proxy(stack: Stack, app):
    """Straight to an app process (loopback, the trusted proxy's address) with a forwarded
    address: counted for that address. A process that trusts no proxy counts its peer."""

    async def wrong_password(port: int, forwarded: str) -> None:
        base = f"http://{DEMO_HOST}.localhost:{port}"
        async with loopback_client(base) as client:
            client.headers["X-Forwarded-For"] = forwarded
            page = await client.get("/sign-in")
            token = CSRF_FIELD.search(page.text).group(1)
            # The CSRF cookie is Secure (the public URL is https): over plain http to the
            # app itself, send it back by hand, as the proxy's TLS side would.
            cookie = f"portal_csrf={page.cookies['portal_csrf']}"
            answer = await client.post(
                "/sign-in",
                data={"_csrf_token": token, "email": JANE_EMAIL, "password": "not-her-password"},
                headers={"Cookie": cookie},
            )
            assert answer.status_code in (200, 401, 422), answer.status_code

    await wrong_password(stack.ports[0], "203.0.113.7")
    untrusting_port = free_port()
    env = {**stack.env, "PORTAL_TRUSTED_PROXIES": ""}
    log = Path(env["PORTAL_VAR_DIR"]) / "untrusting.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(untrusting_port)],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(untrusting_port, process, log)
        await wrong_password(untrusting_port, "203.0.113.8")
    finally:
        process.terminate()
        process.wait(timeout=30)
    keys = {row["key"] for row in await ThrottleCount.select(ThrottleCount.key).run()}
    assert any(k.endswith(":client:203.0.113.7") for k in keys), keys
    assert not any("203.0.113.8" in k for k in keys), keys
    assert any(k.endswith(":client:127.0.0.1") for k in keys), keys


async def test_after_a_host_change_links_and_redirects_carry_the_proxy(stack: Stack):
    """Last: the business moves to a new host name."""
    async with stack.client() as admin:
        signed = await sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD, "/office/sign-in")
        assert signed.status_code == 303, signed.text
        settings_page = await admin.get("/office/settings")
        token = CSRF_FIELD.search(settings_page.text).group(1)
        moved = await admin.post(
            "/office/settings/host",
            # The move confirmed (with JavaScript the new name is checked and asked about first).
            data={"_csrf_token": token, "host": MOVED_HOST, "move": "yes"},
            headers={"HX-Request": "true"},
        )
        new_public = f"https://{MOVED_HOST}.localhost:{stack.nginx.https_port}"
        assert moved.headers.get("hx-redirect", "").startswith(f"{new_public}/office/sign-in"), (
            moved.status_code,
            moved.headers,
            moved.text[:2000],
        )
        # The old address (links already emailed) answers 301 to the new one, via nginx.
        old = await admin.get("/invoices?older=3")
        assert old.status_code == 301
        assert old.headers["location"] == f"{new_public}/invoices?older=3"
    async with stack.client(new_public) as visitor:
        assert (await visitor.get("/sign-in")).status_code == 200
