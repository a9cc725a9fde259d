"""The portal through pgbouncer in transaction pool mode, the usual way to share a few
PostgreSQL connections among many app processes: a minute of customers browsing (sign-in
and every tab) must get no server error.

asyncpg prepares and caches each statement on the server connection it ran on, and in
transaction mode the next transaction may run on another one ("prepared statement … does
not exist" / "… already exists": 88 % of answers failed so). `PORTAL_DB_STATEMENT_CACHE=0`
turns the cache off, as docs/deploy.md says to behind pgbouncer; the server starts without
a warning too (no engine of the process connects without that setting).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from portal.demo import JANE_EMAIL, JANE_PASSWORD
from portal.testing import CHEAP_HASHING_ENV, Server, start_servers, stop_server
from tests.support.loopback import loopback_client
from tests.support.proxies import PgBouncer, needs_pgbouncer, needs_postgres

pytestmark = [pytest.mark.deploy, needs_postgres, needs_pgbouncer]

LOAD_SECONDS = 60  # what issue 13 asks for
BROWSERS = 4
TABS = ("/invoices", "/history", "/memberships", "/schedule")
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


def portal(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )


async def browse(server: Server, deadline: float, answers: Counter) -> None:
    """One customer, over and over until `deadline`: sign in, open every tab. Counts the
    answers by what was asked and its status ("error" when there was no answer)."""
    async with loopback_client(server.base_url) as client:
        while time.monotonic() < deadline:
            client.cookies.clear()
            try:
                page = await client.get("/sign-in")
                answers["sign-in page", page.status_code] += 1
                token = CSRF_FIELD.search(page.text)
                if token is None:
                    continue
                form = {"_csrf_token": token.group(1), "email": JANE_EMAIL}
                signed = await client.post("/sign-in", data={**form, "password": JANE_PASSWORD})
                answers["sign in", signed.status_code] += 1
                if signed.status_code != 303:
                    continue
                for tab in TABS:
                    answers[tab, (await client.get(tab)).status_code] += 1
            except httpx.HTTPError as exc:
                answers["error", type(exc).__name__] += 1


async def test_a_minute_of_browsing_through_pgbouncer_has_no_server_error(
    var_dir: Path, database_url: str
):
    # Schema and demo go straight to PostgreSQL (as docs/deploy.md says to migrate).
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "pgbouncer-test-secret",
    }
    portal(env, "migrate", "--quiet")
    portal(env, "demo")
    with PgBouncer(database_url) as bouncer:
        (server,) = start_servers(
            var_dir,
            1,
            bouncer.url,
            {"PORTAL_DB_STATEMENT_CACHE": "0", **CHEAP_HASHING_ENV},
            load_demo=False,
        )
        try:
            deadline = time.monotonic() + LOAD_SECONDS
            answers: Counter = Counter()
            await asyncio.gather(*(browse(server, deadline, answers) for _ in range(BROWSERS)))
        finally:
            stop_server(server)
    # Not even a warning at start: every engine the process builds (piccolo_conf's too)
    # has the statement cache off, and building one connects to nothing ("prepared
    # statement "__asyncpg_stmt_1__" already exists" from Piccolo's version check before).
    log = (var_dir / "server0.log").read_text()
    assert "prepared statement" not in log and "Warning" not in log, log
    total = sum(answers.values())
    failed = sum(n for (what, status), n in answers.items() if what == "error" or status >= 500)
    summary = f"{failed} of {total} answers were server errors or none ({failed / total:.0%})"
    print(summary, dict(answers))
    signed_in = answers["sign in", 303]
    assert signed_in >= BROWSERS, summary  # the load really ran, for every customer
    assert failed == 0, f"{summary}: {dict(answers)}"
    # Every signed-in customer saw every tab (no sign-in page instead, no error).
    assert all(answers[tab, 200] == signed_in for tab in TABS), dict(answers)
