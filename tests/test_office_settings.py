"""Settings › Customer Portal: the legal agreement first, then each setting saved inline
or with the whole form; invalid values, reserved and taken hosts, bad logos and
non-admins' forged requests change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from portal import logos
from portal import settings_form as rules
from portal.db import activity
from portal.db.tables import BusinessUnit, Tenant
from portal.testing import engine_kind
from tests.support.businesses import (
    NEW_ADMIN_PASSWORD,
    NEW_CUSTOMER_PASSWORD,
    NEW_OFFICE_PASSWORD,
    import_business,
)
from tests.support.http import csrf_from, make_client, sign_in, staff_sign_in

HX = {"HX-Request": "true", "HX-Request-Type": "partial"}


async def tenant_row(host: str) -> dict[str, Any]:
    row = await Tenant.select().where(Tenant.host == host).first().run()
    assert row is not None
    return row


async def post(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, Any] | None = None,
    *,
    htmx: bool = False,
    files: dict[str, Any] | None = None,
) -> httpx.Response:
    """Post to a settings action as the page's form would (CSRF token from the page)."""
    token = await csrf_from(client, "/office/settings")
    return await client.post(
        path,
        data={"_csrf_token": token, **(data or {})},
        files=files,
        headers=HX if htmx else None,
    )


@contextlib.asynccontextmanager
async def business(
    app, host: str, role: str = "admin", *, open_portal: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """A new business and a client signed in to its office."""
    await import_business(host, open_portal=open_portal)
    async with make_client(app, f"http://{host}.localhost") as client:
        if role == "admin":
            await staff_sign_in(client, f"boss@{host}.example", NEW_ADMIN_PASSWORD)
        else:
            await staff_sign_in(client, f"desk@{host}.example", NEW_OFFICE_PASSWORD)
        yield client


@pytest.fixture(scope="module")
async def steady(app, demo) -> AsyncIterator[httpx.AsyncClient]:
    """One open business for the tests whose requests must change nothing."""
    async with business(app, "steady-biz", open_portal=True) as client:
        yield client


def png(width: int, height: int, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30) if mode == "RGB" else 0).save(buf, format=fmt)
    return buf.getvalue()


# --- the legal agreement comes first ----------------------------------------------------------


async def test_before_acceptance_office_staff_see_an_admin_must_accept(app, demo):
    async with business(app, "legal-office", role="office") as desk:
        page = await desk.get("/office/settings")
        assert "Customer Portal Agreement" in page.text
        assert "An administrator must accept this agreement" in page.text
        assert "I agree and accept these terms" not in page.text
        assert '<fieldset class="plain" disabled>' in page.text  # nothing can be changed
        refused = await post(desk, "/office/settings/legal", {"agree": "yes"})
        assert refused.status_code == 403
        for key, value in (("portal_enabled", "yes"), ("name", "Taken Over")):
            response = await post(desk, f"/office/settings/{key}", {key: value})
            assert response.status_code == 403
            assert "must accept the legal agreement" in response.text
        row = await tenant_row("legal-office")
        assert row["legal_accepted_at"] is None and not row["portal_enabled"]
        assert row["name"] == "Brightwater Plumbing"


async def test_admin_accepts_the_agreement_and_who_and_when_are_recorded(app, demo):
    async with business(app, "legal-admin") as boss:
        page = await boss.get("/office/settings")
        assert (
            "I agree and accept these terms and consent to Partner's access to my account "
            "and data" in page.text
        )
        # Nothing else can change yet, not even by an administrator.
        early = await post(boss, "/office/settings", {"portal_enabled": "yes", "name": "X"})
        assert early.status_code == 403
        unticked = await post(boss, "/office/settings/legal", {}, htmx=True)
        assert unticked.status_code == 422
        assert "Tick the box to accept the agreement." in unticked.text
        assert (await tenant_row("legal-admin"))["legal_accepted_at"] is None
        accepted = await post(boss, "/office/settings/legal", {"agree": "yes"})
        assert accepted.status_code == 303
        row = await tenant_row("legal-admin")
        assert row["legal_accepted_by"] == "boss@legal-admin.example"
        assert row["legal_accepted_at"] is not None
        page = await boss.get(accepted.headers["location"])
        assert "Accepted by boss@legal-admin.example on" in page.text
        assert '<fieldset class="plain" disabled>' not in page.text
        # Accepted but not enabled: customers still see the portal closed.
        async with make_client(app, "http://legal-admin.localhost") as customer:
            assert (await customer.get("/sign-in")).status_code == 503
        await post(boss, "/office/settings/portal_enabled", {"portal_enabled": "yes"}, htmx=True)
        async with make_client(app, "http://legal-admin.localhost") as customer:
            assert (await customer.get("/sign-in")).status_code == 200


# --- inline saves and the whole form ------------------------------------------------------------


async def test_a_toggle_saves_inline_and_says_saved_beside_it(app, demo):
    async with business(app, "inline-biz", open_portal=True) as boss:
        response = await post(
            boss, "/office/settings/memberships_enabled", {"memberships_enabled": "yes"}, htmx=True
        )
        assert response.status_code == 200
        html = response.text
        assert "<html" not in html  # only the setting's own box
        assert html.startswith('<div class="setting toggle" id="s-memberships_enabled">')
        assert 'id="saved-memberships_enabled">Saved</span>' in html
        assert 'name="memberships_enabled" value="yes" checked' in html
        assert (await tenant_row("inline-biz"))["memberships_enabled"] is True
        off = await post(boss, "/office/settings/memberships_enabled", {}, htmx=True)
        assert (
            "Saved" in off.text and (await tenant_row("inline-biz"))["memberships_enabled"] is False
        )


async def test_each_field_saves_on_its_own(app, demo):
    async with business(app, "fields-biz", open_portal=True) as boss:
        cases = {
            "name": ("  Brightwater   Services ", "Brightwater Services"),
            "email": ("Help@Brightwater.Example", "help@brightwater.example"),
            "phone": ("+1 (555) 333-0102 ext 7", "+1 (555) 333-0102 ext 7"),
            "recurring_service_message": ("Two visits a year.", "Two visits a year."),
        }
        for key, (sent, stored) in cases.items():
            response = await post(boss, f"/office/settings/{key}", {key: sent}, htmx=True)
            assert response.status_code == 200, (key, response.text)
            assert f'id="saved-{key}">Saved' in response.text
            assert (await tenant_row("fields-biz"))[key] == stored
        types = await post(
            boss,
            "/office/settings/service_types",
            {"service_types": "Leak repair\r\n\r\n  Drain cleaning  \n"},
            htmx=True,
        )
        assert types.status_code == 200
        row = await tenant_row("fields-biz")
        assert json.loads(row["service_types"]) == ["Leak repair", "Drain cleaning"]
        statuses = await post(
            boss,
            "/office/settings/membership_statuses",
            {"membership_statuses": ["suspended", "canceled"]},
            htmx=True,
        )
        assert statuses.status_code == 200
        assert json.loads((await tenant_row("fields-biz"))["membership_statuses"]) == [
            "canceled",
            "suspended",
        ]
        assert "Active memberships always show" in (await boss.get("/office/settings")).text


async def test_whole_form_save_without_javascript(app, demo):
    async with business(app, "whole-biz", open_portal=True) as boss:
        tenant_id = (await tenant_row("whole-biz"))["id"]
        electrical = (
            await BusinessUnit.select()
            .where((BusinessUnit.tenant == tenant_id) & (BusinessUnit.name == "Electrical"))
            .first()
            .run()
        )
        form = {
            "portal_enabled": "yes",
            "scheduler_enabled": "yes",
            "service_types": "Leak repair\nWater heater",
            "memberships_enabled": "yes",
            "membership_statuses": ["expired"],
            "recurring_service_message": "See you twice a year.",
            "host": "whole-biz",
            "name": "Whole Biz",
            "email": "desk@whole.example",
            "phone": "555-010-9999",
            "downloadable_units": [str(electrical["id"])],
        }
        response = await post(boss, "/office/settings", form)
        assert response.status_code == 303
        assert response.headers["location"] == "/office/settings?saved=1"
        row = await tenant_row("whole-biz")
        assert row["name"] == "Whole Biz" and row["scheduler_enabled"] and row["portal_enabled"]
        assert json.loads(row["membership_statuses"]) == ["expired"]
        assert row["payments_enabled"] is False  # not sent: a checkbox left off
        flags = {
            u["name"]: u["invoices_downloadable"]
            for u in await BusinessUnit.select().where(BusinessUnit.tenant == row["id"]).run()
        }
        assert flags == {"Plumbing": False, "Electrical": True}
        page = await boss.get("/office/settings?saved=1")
        assert "Your settings were saved." in page.text


async def test_one_bad_value_in_the_whole_form_saves_nothing(app, demo):
    async with business(app, "allornothing", open_portal=True) as boss:
        form = {
            "portal_enabled": "yes",
            "host": "allornothing",
            "name": "A New Name",
            "email": "not-an-email",
            "phone": "(555) 222-0101",
        }
        response = await post(boss, "/office/settings", form)
        assert response.status_code == 422
        assert "Nothing was saved" in response.text
        assert "Enter an email address like help@example.com." in response.text
        assert 'value="A New Name"' in response.text  # what was typed is kept
        row = await tenant_row("allornothing")
        assert (
            row["name"] == "Brightwater Plumbing" and row["email"] == "hello@allornothing.example"
        )


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("name", "   ", "Enter your company&#39;s name."),
        ("name", "x" * 121, "Use at most 120 characters"),
        ("email", "help@", "Enter an email address like help@example.com."),
        ("phone", "call me", "Enter a phone number like"),
        ("phone", "12345", "Enter a phone number like"),
        ("service_types", "Leak\nleak", "“leak” is listed twice."),
        ("service_types", "x" * 81, "use at most 80 characters per type"),
        ("recurring_service_message", "x" * 1001, "Use at most 1,000 characters"),
        ("membership_statuses", "active", "Choose from Canceled, Expired and Suspended."),
        ("downloadable_units", "999999", "Choose business units from the list."),
        ("host", "ab", "Use 3 to 40 characters."),
        ("host", "-abc", "Use only lowercase letters, digits and hyphens"),
        ("host", "abc-", "Use only lowercase letters, digits and hyphens"),
        ("host", "a_bc", "Use only lowercase letters, digits and hyphens"),
        ("host", "a.bc", "Use only lowercase letters, digits and hyphens"),
        ("host", "x" * 41, "Use 3 to 40 characters."),
    ],
)
async def test_an_invalid_value_gets_a_message_beside_its_field_and_changes_nothing(
    steady, key, value, message
):
    host, boss = "steady-biz", steady
    before = await tenant_row(host)
    units_before = await BusinessUnit.select().where(BusinessUnit.tenant == before["id"]).run()
    response = await post(boss, f"/office/settings/{key}", {key: value}, htmx=True)
    assert response.status_code == 422
    assert message in response.text
    assert f'id="e-{key}" role="alert"' in response.text
    assert await tenant_row(host) == before
    units_after = await BusinessUnit.select().where(BusinessUnit.tenant == before["id"]).run()
    assert units_after == units_before
    # Without JavaScript the whole page comes back with the message.
    plain = await post(boss, f"/office/settings/{key}", {key: value})
    assert plain.status_code == 422 and plain.text.startswith("<!doctype html>")
    assert message in plain.text


async def test_the_scheduler_needs_a_service_type(app, demo):
    async with business(app, "sched-biz", open_portal=True) as boss:
        response = await post(
            boss, "/office/settings/scheduler_enabled", {"scheduler_enabled": "yes"}, htmx=True
        )
        assert response.status_code == 422
        assert "Add at least one service type before turning on the scheduler." in response.text
        assert (await tenant_row("sched-biz"))["scheduler_enabled"] is False


async def test_another_business_units_cannot_be_ticked(app, demo):
    async with business(app, "units-a", open_portal=True) as boss:
        await import_business("units-b")
        other = await tenant_row("units-b")
        their_unit = (
            await BusinessUnit.select().where(BusinessUnit.tenant == other["id"]).first().run()
        )
        response = await post(
            boss,
            "/office/settings/downloadable_units",
            {"downloadable_units": [str(their_unit["id"])]},
            htmx=True,
        )
        assert response.status_code == 422
        refreshed = await BusinessUnit.select().where(BusinessUnit.id == their_unit["id"]).run()
        assert refreshed[0]["invoices_downloadable"] == their_unit["invoices_downloadable"]


# --- host ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone,ok",
    [("(555) 222-0101", True), ("555-010-9999", True), ("+44 20 7946 0958", True),
     ("555.010.4477 x12", True), ("", True), ("(555)", False), ("12345", False),
     ("call me", False), ("1-800-FLOWERS", False), ("+1 555 010 4477 0000 0000", False)],
)  # fmt: skip
def test_phone_numbers(phone, ok):
    assert (rules.clean_phone(phone)[1] is None) == ok


@pytest.mark.parametrize(
    "name",
    ["www", "admin", "api", "mail", "portal", "help", "support", "status", "static", "office",
     "billing", "login", "secure", "localhost", "xn--80ak6aa92e"],
)  # fmt: skip
def test_reserved_hosts_are_refused(name):
    assert rules.clean_host(name) == (name, "That name is reserved, please choose another.")


@pytest.mark.parametrize("name", ["xyzplumbing", "abc", "a1b", "xyz-plumbing-co", "x" * 40])
def test_good_hosts_pass(name):
    assert rules.clean_host(name) == (name, None)


async def test_reserved_and_taken_hosts_are_refused_in_the_office(app, demo):
    async with business(app, "hostcheck", open_portal=True) as boss:
        reserved = await post(boss, "/office/settings/host", {"host": "Support"}, htmx=True)
        assert reserved.status_code == 422
        assert "That name is reserved, please choose another." in reserved.text
        taken = await post(boss, "/office/settings/host", {"host": "xyzplumbing"}, htmx=True)
        assert taken.status_code == 422
        assert "Another business already uses that name, please choose another." in taken.text
        assert (await tenant_row("hostcheck"))["host"] == "hostcheck"


async def test_changing_the_host_moves_the_portal_and_the_office_follows(app, demo, settings):
    async with business(app, "oldname", open_portal=True) as boss:
        # With JavaScript the new name is checked and the move asked about first; nothing
        # moves until it is confirmed.
        asked = await post(boss, "/office/settings/host", {"host": "NewName"}, htmx=True)
        assert asked.status_code == 200
        assert "Move your customer portal to http://newname.localhost:8000/?" in asked.text
        assert (await boss.get("/sign-in")).status_code == 200  # still at the old address
        response = await post(
            boss, "/office/settings/host", {"host": "NewName", "move": "yes"}, htmx=True
        )
        target = response.headers["hx-redirect"]
        assert target == (
            "http://newname.localhost:8000/office/sign-in?done=moved"
            "&next=/office/settings%3Fsaved%3Dmoved"
        )
        # The old address answers 301 to the new one (links already emailed keep working),
        # path and query kept; a form posted there is not replayed.
        moved_page = await boss.get("/reset?token=abc")
        assert moved_page.status_code == 301
        assert moved_page.headers["location"] == "http://newname.localhost:8000/reset?token=abc"
        assert (await boss.get("/office/settings")).headers["location"] == (
            "http://newname.localhost:8000/office/settings"
        )
        assert (await boss.post("/sign-in", data={})).status_code in (403, 404)
        logged = await activity.entries((await tenant_row("newname"))["id"], action_prefix="host.")
        assert [(e["old_value"], e["new_value"]) for e in logged] == [("oldname", "newname")]
        assert logged[0]["actor"] == "boss@oldname.example"
    async with make_client(app, "http://newname.localhost") as moved:
        page = await moved.get("/office/sign-in?done=moved&next=/office/settings%3Fsaved%3Dmoved")
        assert "The portal moved to this address." in page.text
        await staff_sign_in(moved, "boss@oldname.example", NEW_ADMIN_PASSWORD)
        assert "newname" in (await moved.get("/office/settings?saved=moved")).text
        await sign_in(moved, "pat@oldname.example", NEW_CUSTOMER_PASSWORD)


async def test_a_host_that_cannot_be_used_is_refused_before_any_move_is_asked(app, demo):
    async with business(app, "checkfirst", open_portal=True) as boss:
        for host, message in (
            ("www", "That name is reserved"),
            ("xyzplumbing", "Another business already uses that name"),
        ):
            answer = await post(boss, "/office/settings/host", {"host": host}, htmx=True)
            assert answer.status_code == 422
            assert message in answer.text
            assert "Move your customer portal" not in answer.text
        kept = await post(
            boss, "/office/settings/host", {"host": "fine-name", "keep": "yes"}, htmx=True
        )
        assert 'value="checkfirst"' in kept.text
        assert (await boss.get("/office/settings")).status_code == 200  # nothing moved


async def test_host_change_without_javascript_is_a_plain_redirect(app, demo):
    async with business(app, "plainold", open_portal=True) as boss:
        form = {"host": "plainnew", "name": "Brightwater Plumbing", "portal_enabled": "yes"}
        response = await post(boss, "/office/settings", form)
        assert response.status_code == 303
        assert response.headers["location"].startswith("http://plainnew.localhost:8000/office/")


# --- logo ---------------------------------------------------------------------------------------


async def upload(client, data: bytes, filename: str, content_type: str, *, htmx: bool = True):
    return await post(
        client,
        "/office/settings/logo",
        files={"logo": (filename, data, content_type)},
        htmx=htmx,
    )


@pytest.mark.parametrize(
    "fmt,mime,name",
    [("PNG", "image/png", "logo.png"), ("JPEG", "image/jpeg", "logo.jpg"), ("WEBP", "image/webp", "logo.webp")],
)  # fmt: skip
async def test_logo_is_stored_50_pixels_high_with_a_new_url(app, demo, fmt, mime, name):
    host = f"logo-{fmt.lower()}"
    async with business(app, host, open_portal=True) as boss:
        response = await upload(boss, png(400, 200, fmt=fmt), name, mime)
        assert response.status_code == 200, response.text
        assert 'id="saved-logo">Saved' in response.text
        row = await tenant_row(host)
        stored = Image.open(io.BytesIO(row["logo"]))
        assert stored.format == "PNG" and stored.size == (100, 50)
        version = row["logo_version"]
        assert version > 0 and f'src="/logo/{version}"' in response.text
        served = await boss.get(f"/logo/{version}")
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert "immutable" in served.headers["cache-control"]
        # A new logo gets a new address; the old one is gone.
        await upload(boss, png(100, 100), "square.png", "image/png")
        newer = (await tenant_row(host))["logo_version"]
        assert newer > version
        assert (await boss.get(f"/logo/{version}")).status_code == 404
        assert Image.open(io.BytesIO((await boss.get(f"/logo/{newer}")).content)).size == (50, 50)


async def test_logo_keeps_its_place_and_has_a_sharp_copy_for_2x_screens(app, demo):
    """Issue 18.2: the header's logo has its width and height, so nothing moves when it
    arrives, and a copy twice as large for phones' 2× screens when the upload has one."""
    host = "logo-sharp"
    async with business(app, host, open_portal=True) as boss:
        await upload(boss, png(400, 200), "wide.png", "image/png")
        version = (await tenant_row(host))["logo_version"]
        page = (await boss.get("/office/settings")).text
        assert (
            f'<img src="/logo/{version}" srcset="/logo/{version}/2x 2x" alt="" width="100"'
            ' height="50">' in page
        )
        sharp = await boss.get(f"/logo/{version}/2x")
        assert sharp.status_code == 200 and "immutable" in sharp.headers["cache-control"]
        assert Image.open(io.BytesIO(sharp.content)).size == (200, 100)
        # Under 100 px high there is nothing sharper to offer: no srcset, no 2× copy.
        await upload(boss, png(60, 40), "small.png", "image/png")
        small = (await tenant_row(host))["logo_version"]
        page = (await boss.get("/office/settings")).text
        assert f'<img src="/logo/{small}" alt="" width="75" height="50">' in page
        assert (await boss.get(f"/logo/{small}/2x")).status_code == 404
        assert (await boss.get(f"/logo/{version}/2x")).status_code == 404  # the old one is gone


async def test_logos_stored_before_their_width_was_kept_get_it_from_their_pixels(app, demo):
    from importlib import import_module

    backfill = import_module("portal.db.migrations.portal_2026_12_02t01_11_00_000000_logo_widths")
    host = "logo-earlier"
    async with business(app, host, open_portal=True):
        await Tenant.update({Tenant.logo: png(240, 100), Tenant.logo_width: 0}).where(
            Tenant.host == host
        )
        manager = await backfill.forwards()
        for step in manager.raw:
            await step()
        row = await tenant_row(host)
        assert row["logo_width"] == 120 and not row["logo_sharp"]


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")  # 81 megapixels, a few KB
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,name,mime,message",
    [
        (b"", "empty.png", "image/png", "Choose a logo file to upload"),
        (b"GIF89a" + png(10, 10)[6:], "x.png", "image/png", "isn&#39;t an image we can read"),
        (None, "anim.gif", "image/gif", "That file is a GIF image."),
        (b"not an image at all", "logo.png", "image/png", "isn&#39;t an image we can read"),
        (png(60, 60), "logo.jpg", "image/jpeg", "says it is a JPEG image but it is really a PNG"),
        (png(60, 60), "logo.png", "image/jpeg", "says it is a JPEG image but it is really a PNG"),
        (png(300, 300)[:200], "cut.png", "image/png", "damaged or incomplete"),
        (b"\x89PNG" + b"\0" * (2 * 1024 * 1024 + 10), "big.png", "image/png", "a logo can be at most 2 MB"),
        (png(1000, 50), "banner.png", "image/png", "too wide for a logo"),
        ("bomb", "bomb.png", "image/png", "far too many pixels"),
    ],
)  # fmt: skip
async def test_bad_logo_files_get_a_clear_error_and_change_nothing(
    steady, data, name, mime, message
):
    if data is None:
        buf = io.BytesIO()
        Image.new("RGB", (30, 30)).save(buf, format="GIF")
        data = buf.getvalue()
    elif data == "bomb":
        data = _bomb()
    host, boss = "steady-biz", steady
    before = await tenant_row(host)
    response = await upload(boss, data, name, mime)
    assert response.status_code == 422
    assert message in response.text
    after = await tenant_row(host)
    assert after["logo"] == before["logo"] and after["logo_version"] == before["logo_version"]


async def test_a_105_kb_png_of_36_megapixels_is_refused_from_its_header(steady):
    """A black 6,000 × 6,000 PNG is 105 KB but 36 megapixels decoded (144 MB as RGBA;
    four at once took a server to 1.2 GiB): refused from its header, before decoding,
    with the reason and the limit, and nothing changes. Issue 11.8."""
    from portal.testing import blank_png

    data = blank_png(6000, 6000)
    assert 100_000 < len(data) < 110_000
    before = await tenant_row("steady-biz")
    for htmx in (True, False):
        response = await upload(steady, data, "big.png", "image/png", htmx=htmx)
        assert response.status_code == 422
        assert "That image is 6000 × 6000 pixels (36 megapixels)" in response.text
        assert "at most 16 megapixels" in response.text
    after = await tenant_row("steady-biz")
    assert after["logo"] == before["logo"] and after["logo_version"] == before["logo_version"]


@pytest.mark.skipif(engine_kind() != "sqlite", reason="a server process on SQLite; once is enough")
async def test_logos_uploaded_at_once_are_decoded_one_at_a_time(tmp_path):
    """Four of the largest logos accepted (4,000 × 4,000, 64 MB decoded as RGBA at most),
    uploaded to a real server at the same moment: its peak memory grows by less than one
    decoded image would take, because they are decoded one after the other (in one
    thread, whose memory each decode reuses). Figures: bench/logo_memory.py."""
    from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST
    from portal.testing import blank_png, peak_rss_mb, start_server, stop_server

    data = blank_png(4000, 4000)

    async def burst(client: httpx.AsyncClient, count: int) -> list[int]:
        token = await csrf_from(client, "/office/settings")
        answers = await asyncio.gather(
            *(
                client.post(
                    "/office/settings/logo",
                    data={"_csrf_token": token},
                    files={"logo": ("logo.png", data, "image/png")},
                    headers=HX,
                )
                for _ in range(count)
            )
        )
        return [r.status_code for r in answers]

    server = await asyncio.to_thread(start_server, tmp_path, {"PORTAL_MAIL_WORKER": "0"})
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
            timeout=120,
        ) as client:
            await staff_sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            assert await burst(client, 1) == [200]  # the first decode sets the floor
            before = peak_rss_mb(server.process.pid)
            assert await burst(client, 4) == [200] * 4
            grown = peak_rss_mb(server.process.pid) - before
            assert grown < 40, f"peak memory grew by {grown:.0f} MB"
    finally:
        stop_server(server)


def test_the_pixel_limit_is_checked_before_anything_is_decoded(monkeypatch):
    """The refusal comes from the header alone: decoding is never started."""
    from portal.testing import blank_png

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "draft", no_decoding)
    png_, problem = logos.process_logo(blank_png(4001, 4000), "big.png", "image/png")
    assert png_ == b"" and "at most 16 megapixels" in (problem or "")


def test_a_large_photo_is_decoded_small(monkeypatch):
    """A 12-megapixel JPEG photo (4032 × 3024, a phone's) is accepted, decoded at an
    eighth of its size (the JPEG decoder's draft mode), and stored 50 pixels high."""
    buf = io.BytesIO()
    Image.new("RGB", (4032, 3024), (10, 120, 200)).save(buf, format="JPEG", quality=60)
    decoded: list[tuple[int, int]] = []
    real_load = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    out, problem = logos.process_logo(buf.getvalue(), "van.jpg", "image/jpeg")
    assert problem is None
    assert Image.open(io.BytesIO(out)).size == (67, 50)
    assert decoded and max(w * h for w, h in decoded) <= 4032 * 3024 // 64


def test_a_photo_taken_sideways_is_stored_upright():
    """EXIF orientation 6 (a phone held sideways): turned after shrinking, stored upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (400, 200), (200, 30, 30)).save(buf, format="JPEG", exif=exif.tobytes())
    out, problem = logos.process_logo(buf.getvalue(), "side.jpg", "image/jpeg")
    assert problem is None and Image.open(io.BytesIO(out)).size == (25, 50)


async def test_logo_upload_and_remove_without_javascript(app, demo):
    async with business(app, "logo-plain", open_portal=True) as boss:
        form = {"host": "logo-plain", "name": "Brightwater Plumbing", "portal_enabled": "yes"}
        token = await csrf_from(boss, "/office/settings")
        saved = await boss.post(
            "/office/settings",
            data={"_csrf_token": token, **form},
            files={"logo": ("logo.png", png(120, 60), "image/png")},
        )
        assert saved.status_code == 303
        assert (await tenant_row("logo-plain"))["logo_version"] > 0
        removed = await post(boss, "/office/settings/logo/remove")
        assert removed.status_code == 303
        row = await tenant_row("logo-plain")
        assert row["logo"] is None and row["logo_version"] == 0


def test_logo_processing_keeps_transparency_and_drops_metadata():
    buf = io.BytesIO()
    image = Image.new("RGBA", (80, 40), (0, 0, 0, 0))
    image.save(buf, format="PNG", pnginfo=None)
    out, problem = logos.process_logo(buf.getvalue(), "t.png", "image/png")
    assert problem is None
    stored = Image.open(io.BytesIO(out))
    assert stored.size == (100, 50) and stored.mode == "RGBA"
    assert stored.getpixel((10, 10))[3] == 0


# --- who may change what ------------------------------------------------------------------------


async def test_office_staff_may_change_the_rest_but_not_host_or_payments(app, demo):
    async with business(app, "roles-biz", role="office", open_portal=True) as desk:
        page = await desk.get("/office/settings")
        assert "Only an administrator can change the host." in page.text
        assert "Link a sandbox payment account" not in page.text
        name = await post(desk, "/office/settings/name", {"name": "Desk Renamed"}, htmx=True)
        assert name.status_code == 200
        before = await tenant_row("roles-biz")
        forged = [
            ("/office/settings/host", {"host": "deskhost"}),
            ("/office/settings/payments_enabled", {"payments_enabled": "yes"}),
            ("/office/settings/payments/link", {}),
            ("/office/settings/payments/unlink", {}),
            ("/office/settings/legal", {"agree": "yes"}),
            # The whole form with an admin-only field added by hand.
            ("/office/settings", {"name": "Forged", "host": "deskhost", "portal_enabled": "yes"}),
            ("/office/settings", {"name": "Forged", "payments_enabled": "yes"}),
        ]
        for path, data in forged:
            response = await post(desk, path, data)
            assert response.status_code == 403, path
            assert "Nothing was changed." in response.text
            assert await tenant_row("roles-biz") == before, path
        # The whole form as office staff send it (no admin-only fields) is saved, and
        # leaves payments alone.
        await (
            Tenant.update(
                {Tenant.payment_account_id: "sandbox_acct_x", Tenant.payments_enabled: True}
            )
            .where(Tenant.host == "roles-biz")
            .run()
        )
        ok = await post(desk, "/office/settings", {"name": "Desk Saved", "portal_enabled": "yes"})
        assert ok.status_code == 303
        row = await tenant_row("roles-biz")
        assert row["name"] == "Desk Saved" and row["payments_enabled"] is True


async def test_admin_links_the_payment_account_and_enables_card_payments(app, demo):
    async with business(app, "pay-biz", open_portal=True) as boss:
        refused = await post(
            boss, "/office/settings/payments_enabled", {"payments_enabled": "yes"}, htmx=True
        )
        assert refused.status_code == 422
        assert "Link a payment account before turning on card payments." in refused.text
        linked = await post(boss, "/office/settings/payments/link", htmx=True)
        assert linked.status_code == 200
        account = (await tenant_row("pay-biz"))["payment_account_id"]
        assert account.startswith("sandbox_acct_") and len(account) > len("sandbox_acct_") + 8
        assert account in linked.text
        twice = await post(boss, "/office/settings/payments/link", htmx=True)
        assert "A payment account is already linked." in twice.text
        assert (await tenant_row("pay-biz"))["payment_account_id"] == account
        enabled = await post(
            boss, "/office/settings/payments_enabled", {"payments_enabled": "yes"}, htmx=True
        )
        assert enabled.status_code == 200 and "Saved" in enabled.text
        assert (await tenant_row("pay-biz"))["payments_enabled"] is True
        await post(boss, "/office/settings/payments/unlink")
        row = await tenant_row("pay-biz")
        assert row["payment_account_id"] == "" and row["payments_enabled"] is False


async def test_unknown_setting_is_404(admin):
    token = await csrf_from(admin, "/office/settings")
    response = await admin.post("/office/settings/logo_version", data={"_csrf_token": token})
    assert response.status_code == 404


# --- the customer side follows ------------------------------------------------------------------


async def test_customer_side_follows_each_setting(app, demo):
    async with (
        business(app, "follow-biz", open_portal=True) as boss,
        make_client(app, "http://follow-biz.localhost") as pat,
    ):
        await sign_in(pat, "pat@follow-biz.example", NEW_CUSTOMER_PASSWORD)
        tabs = (await pat.get("/invoices")).text
        assert 'href="/memberships"' not in tabs and 'href="/schedule"' not in tabs
        await post(boss, "/office/settings/memberships_enabled", {"memberships_enabled": "yes"})
        await post(boss, "/office/settings/service_types", {"service_types": "Leak repair"})
        await post(boss, "/office/settings/scheduler_enabled", {"scheduler_enabled": "yes"})
        tabs = (await pat.get("/invoices")).text
        assert 'href="/memberships"' in tabs and 'href="/schedule"' in tabs
        await post(boss, "/office/settings/name", {"name": "Brightwater & Sons"})
        await post(boss, "/office/settings/phone", {"phone": "(555) 777-1234"})
        page = (await pat.get("/invoices")).text
        assert "Brightwater &amp; Sons" in page and "(555) 777-1234" in page
        await post(boss, "/office/settings/portal_enabled", {})
        closed = await pat.get("/invoices")
        assert closed.status_code == 503
        assert "(555) 777-1234" in closed.text


# --- sizes in messages --------------------------------------------------------------------------


async def test_sizes_in_messages_are_the_real_ones_or_say_more_than(steady):
    boss = steady
    # A 3.2 MB upload: its real size, not the 2 MB the portal read of it.
    big = b"\x89PNG" + b"\0" * int(3.2 * 1024 * 1024)
    answer = await upload(boss, big, "big.png", "image/png")
    assert answer.status_code == 422
    assert "That file is 3.2 MB; a logo can be at most 2 MB." in answer.text
    # A 100,000-character name: more than the portal reads, and said so.
    answer = await post(boss, "/office/settings/name", {"name": "N" * 100_000}, htmx=True)
    assert answer.status_code == 422
    assert "Use at most 120 characters (this has more than 5,000)." in answer.text
    answer = await post(boss, "/office/settings/name", {"name": "N" * 300}, htmx=True)
    assert "Use at most 120 characters (this has 300)." in answer.text


async def test_a_huge_password_is_said_to_be_more_than_the_limit(steady):
    boss = steady
    answer = await boss.post(
        "/office/password",
        data={
            "_csrf_token": await csrf_from(boss, "/office/password"),
            "current_password": NEW_ADMIN_PASSWORD,
            "new_password": "x" * 100_000,
        },
    )
    assert answer.status_code == 422
    assert "Use at most 128 characters (this has more than 1,000)." in answer.text
    assert "1024" not in answer.text
