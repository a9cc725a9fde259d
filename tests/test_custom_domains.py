"""A business's own domain (issue 13.8): `portal domain` gives XYZ `portal.xyzplumbing.com`
besides `xyzplumbing.<base domain>`; its pages answer there, its links use it; a former host
name redirects (301) for the set period only; both changes are in the activity log."""

# These tests run `portal domain` as a real process and wait for it on purpose.
# ruff: noqa: ASYNC221

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx

from portal.db import activity
from portal.db.queries import tenant_by_host
from portal.db.tables import HostRedirect, Tenant
from portal.demo import DEMO_HOST
from portal.mail.links import portal_url
from portal.testing import CHEAP_HASHING_ENV
from tests.support.http import make_client

DOMAIN = "portal.xyzplumbing.com"


def portal_domain(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": settings.database_url,
        "PORTAL_VAR_DIR": str(settings.var_dir),
        "PORTAL_SECRET_KEY": settings.secret_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", "domain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_business_answers_on_its_own_domain_and_links_use_it(app, demo, settings, admin):
    done = portal_domain(settings, "--host", DEMO_HOST, "--domain", "Portal.XYZPlumbing.com")
    assert done.returncode == 0, done.stderr
    try:
        async with make_client(app, f"http://{DOMAIN}") as visitor:
            page = await visitor.get("/sign-in")
            assert page.status_code == 200 and "XYZ" in page.text
        # Its primary address is its own domain: every link (emails, gateway return
        # addresses) is built by portal_url from its row.
        tenant = await tenant_by_host(DEMO_HOST)
        assert portal_url(settings, tenant, "/invoices") == f"http://{DOMAIN}:8000/invoices"
        office_page = await admin.get("/office/settings")
        assert f"http://{DOMAIN}:8000/" in office_page.text
        # The usual address still works too.
        async with make_client(app) as usual:
            assert (await usual.get("/sign-in")).status_code == 200
        logged = await activity.entries(demo, action_prefix="domain.")
        assert logged[0]["new_value"] == DOMAIN and logged[0]["actor_kind"] == "system"
    finally:
        assert portal_domain(settings, "--host", DEMO_HOST, "--remove").returncode == 0
    assert (await Tenant.select(Tenant.custom_domain).where(Tenant.id == demo).first().run())[
        "custom_domain"
    ] is None
    async with make_client(app, f"http://{DOMAIN}") as visitor:
        assert (await visitor.get("/sign-in")).status_code == 404  # nobody's domain now


async def test_bad_or_taken_domains_are_refused_in_one_line(settings, demo):
    for domain, says in [
        ("not a domain", "Enter a full domain name"),
        ("localhost", "Enter a full domain name"),
        ("other.localhost", "are host names"),
    ]:
        refused = portal_domain(settings, "--host", DEMO_HOST, "--domain", domain)
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    unknown = portal_domain(settings, "--host", "nosuchbusiness", "--domain", DOMAIN)
    assert unknown.returncode == 1 and "no business has the host name" in unknown.stderr


async def test_a_former_host_redirects_only_for_the_set_period(app, demo):
    until = datetime.now(UTC) + timedelta(days=90)
    rows = await HostRedirect.insert(
        HostRedirect(tenant=demo, old_host="xyzoldname", until=until)
    ).run()
    try:
        async with make_client(app, "http://xyzoldname.localhost") as old:
            moved = await old.get("/invoices?older=5")
            assert moved.status_code == 301
            assert (
                moved.headers["location"] == f"http://{DEMO_HOST}.localhost:8000/invoices?older=5"
            )
            await (
                HostRedirect.update({HostRedirect.until: datetime.now(UTC) - timedelta(seconds=1)})
                .where(HostRedirect.id == rows[0]["id"])
                .run()
            )
            assert (await old.get("/invoices")).status_code == 404  # the period is over
    finally:
        await HostRedirect.delete().where(HostRedirect.id == rows[0]["id"]).run()


async def test_an_unknown_foreign_host_is_still_a_404(app, demo):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://evil.example"
    ) as stranger:
        assert (await stranger.get("/sign-in")).status_code == 404
