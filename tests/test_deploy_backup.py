"""Backups as docs/deploy.md tells an operator to take and restore them: deploy/backup/
portal-backup (pg_dump, custom format, retention) on a database with the demo loaded and a
payment made, restored with deploy/backup/portal-restore into an empty database; a
`portal serve` on the restored database shows Jane the same invoices and balances."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from portal.demo import JANE_EMAIL, JANE_PASSWORD
from portal.testing import Server, fresh_database, start_servers, stop_server
from tests.conftest import sign_in
from tests.paying import pay
from tests.support.loopback import loopback_client
from tests.support.proxies import PROJECT_ROOT, needs_postgres

pytestmark = pytest.mark.deploy

BACKUP = PROJECT_ROOT / "deploy" / "backup" / "portal-backup"
RESTORE = PROJECT_ROOT / "deploy" / "backup" / "portal-restore"
INVOICE_BOX = re.compile(r'name="invoice" value="(\d+)"')
DAY = 24 * 3600


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def visible_text(html: str) -> str:
    """What a person reads on a page (no markup, no per-request tokens or nonces)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def janes_view(server: Server) -> dict[str, str]:
    """Jane's Invoices and History tabs, as text."""
    async with loopback_client(server.base_url) as client:
        await sign_in(client, JANE_EMAIL, JANE_PASSWORD)
        return {
            tab: visible_text((await client.get(tab)).text) for tab in ("/invoices", "/history")
        }


@needs_postgres
async def test_backup_restores_into_an_empty_database_and_is_served(
    var_dir: Path, database_url: str
):
    for name in ("live", "restored", "backups"):
        (var_dir / name).mkdir()
    (server,) = start_servers(var_dir / "live", 1, database_url)
    try:
        async with loopback_client(server.base_url) as jane:
            await sign_in(jane, JANE_EMAIL, JANE_PASSWORD)
            first_unpaid = INVOICE_BOX.search((await jane.get("/invoices")).text).group(1)
            receipt = await pay(jane, [int(first_unpaid)])
            assert receipt.status_code == 200 and "Payment received" in receipt.text
            paid = re.search(rf'href="/invoices/{first_unpaid}"[^>]*>([^<]+)<', receipt.text)[1]
        before = await janes_view(server)
    finally:
        stop_server(server)

    backups = var_dir / "backups"
    old, recent = backups / "portal-20200101T000000Z.dump", backups / "portal-recent.dump"
    for path, age in ((old, 30 * DAY), (recent, 2 * DAY)):
        path.write_bytes(b"an earlier dump")
        os.utime(path, (time.time() - age, time.time() - age))
    done = run([BACKUP], DATABASE_URL=database_url, PORTAL_BACKUP_DIR=str(backups))
    assert done.returncode == 0, done.stderr
    (dump,) = [p for p in backups.glob("portal-2*.dump") if p != old]
    assert not old.exists() and recent.exists()  # 14 days kept by default
    assert not list(backups.glob(".*partial"))

    async with fresh_database(var_dir) as empty_url:
        restored = run([RESTORE, dump, empty_url])
        assert restored.returncode == 0, restored.stderr
        # A second restore into the now full database is refused and changes nothing.
        again = run([RESTORE, dump, empty_url])
        assert again.returncode == 1
        assert "already has" in again.stderr and "empty" in again.stderr

        (server,) = start_servers(var_dir / "restored", 1, empty_url, load_demo=False)
        try:
            async with loopback_client(server.base_url) as visitor:
                page = await visitor.get("/sign-in")
                assert page.status_code == 200 and "Sign in" in page.text
            after = await janes_view(server)
        finally:
            stop_server(server)
    assert after == before
    # What is compared holds the payment: the invoice left the Invoices tab, History has it.
    assert paid not in after["/invoices"] and paid in after["/history"]
    assert "$" in after["/invoices"]


def test_backup_refuses_bad_settings_with_one_clear_line(tmp_path: Path):
    for env, problem in (
        ({"DATABASE_URL": ""}, "set DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///var/portal.sqlite3"}, "only PostgreSQL"),
        (
            {"DATABASE_URL": "postgresql://x@127.0.0.1/x", "PORTAL_BACKUP_KEEP_DAYS": "two"},
            "whole number of days",
        ),
    ):
        done = run([BACKUP], PORTAL_BACKUP_DIR=str(tmp_path), **env)
        assert done.returncode == 2 and problem in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written
