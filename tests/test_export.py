"""`portal export --host H` writes the import format, and the round trip holds: export →
import into an empty database → export gives the same bytes (the demo business: staff,
customers with accounts, jobs, invoices, payments, memberships with visits, a logo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from portal.demo import DEMO_HOST
from portal.importer import parse
from portal.testing import fresh_database


def portal(database_url: str, var_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "PORTAL_VAR_DIR": str(var_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", *args], capture_output=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    return result


async def test_export_import_export_gives_the_same_file(app, demo, settings, tmp_path):
    first = tmp_path / "first.json"
    portal(settings.database_url, tmp_path, "export", "--host", DEMO_HOST, "-o", str(first))
    data = parse(first.read_bytes())  # a valid import file, by the importer's own checks
    assert data.business.host == DEMO_HOST
    assert data.customers and data.jobs and data.invoices and data.payments
    assert data.memberships and any(m.visits for m in data.memberships)
    assert any(c.portal_account for c in data.customers)
    assert all(s.password_hash.startswith("$argon2id$") for s in data.staff)
    assert data.business.logo_png_base64

    async with fresh_database(tmp_path) as empty:
        portal(empty, tmp_path, "migrate", "--quiet")
        portal(empty, tmp_path, "import", str(first))
        second = portal(empty, tmp_path, "export", "--host", DEMO_HOST).stdout
    assert second == first.read_bytes()


def test_export_of_an_unknown_host_says_so(app, settings, tmp_path):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "export", "--host", "nobody-here"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "no business has the host 'nobody-here'" in result.stderr
    assert result.stdout == ""  # nothing half-written
