"""One URL, two answers: a whole page for a plain request, the tab's region for htmx."""

from __future__ import annotations

import base64
import gzip
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from portal.db.tables import Tenant
from portal.pages import INLINE_LOGO_MAX_BYTES

HX_PARTIAL = {"HX-Request": "true", "HX-Request-Type": "partial"}


@pytest.mark.parametrize("path,label", [("/invoices", "Invoices"), ("/history", "History")])
async def test_plain_request_gets_whole_page(jane, path, label):
    response = await jane.get(path)
    assert response.status_code == 200
    html = response.text
    assert html.startswith("<!doctype html>")
    assert "XYZ Services" in html and "(555) 010-4477" in html  # branded header
    assert f"<title>{label} · XYZ Services</title>" in html
    assert 'aria-current="page">' + label in html
    assert "HX-Request" in response.headers["vary"]


@pytest.mark.parametrize("path,label", [("/invoices", "Invoices"), ("/history", "History")])
async def test_htmx_partial_request_gets_only_the_region(jane, path, label):
    response = await jane.get(path, headers=HX_PARTIAL)
    assert response.status_code == 200
    html = response.text
    assert "<html" not in html and "<head" not in html and "<script" not in html
    assert f"<title>{label} · XYZ Services</title>" in html  # htmx updates document.title
    assert f"<h1>{label}</h1>" in html
    assert 'aria-current="page">' + label in html
    assert "HX-Request-Type" in response.headers["vary"]


async def test_full_and_history_restore_requests_get_whole_page(jane):
    for headers in (
        {"HX-Request": "true", "HX-Request-Type": "full"},
        {**HX_PARTIAL, "HX-History-Restore-Request": "true"},
    ):
        response = await jane.get("/history", headers=headers)
        assert response.text.startswith("<!doctype html>"), headers


async def test_static_files_are_fingerprinted_and_immutable(jane):
    page = (await jane.get("/invoices")).text
    css = re.search(r'href="(/static/app\.[0-9a-f]{10}\.css)"', page).group(1)
    js = re.search(r'src="(/static/htmx-4\.0\.1\.min\.[0-9a-f]{10}\.js)"', page).group(1)
    for url in (css, js):
        response = await jane.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert (await jane.get("/static/app.css")).status_code == 404
    assert (await jane.get("/static/app.0000000000.css")).status_code == 404


async def test_static_files_come_compressed_ahead_of_time(jane):
    """Brotli when the browser takes it, else gzip, else the file itself; each decodes
    to the file on disk, and nothing is compressed twice."""
    import brotli

    page = (await jane.get("/invoices")).text
    js = re.search(r'src="(/static/htmx-4\.0\.1\.min\.[0-9a-f]{10}\.js)"', page).group(1)
    original = (Path(__file__).parents[1] / "static" / "htmx-4.0.1.min.js").read_bytes()
    forms = {}
    for accept in ("br, gzip", "gzip", "identity"):
        async with jane.stream("GET", js, headers={"Accept-Encoding": accept}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            forms[accept] = (response.headers.get("content-encoding"), raw)
            assert "Accept-Encoding" in response.headers["vary"]
    assert forms["br, gzip"][0] == "br" and brotli.decompress(forms["br, gzip"][1]) == original
    assert forms["gzip"][0] == "gzip" and gzip.decompress(forms["gzip"][1]) == original
    assert forms["identity"] == (None, original)
    # Compressed once, at brotli's strongest setting (per request it would be quality 3).
    assert len(forms["br, gzip"][1]) == len(brotli.compress(original, quality=11))


async def test_the_sign_in_page_paints_without_another_request(client):
    """Issue 18.2: signed out (most likely a first visit), the stylesheet comes inside the
    page and the file is only prefetched for the pages after signing in."""
    page = (await client.get("/sign-in")).text
    sheet = (Path(__file__).parents[1] / "static" / "app.css").read_text()
    assert f"<style>{sheet}</style>" in page
    assert 'rel="stylesheet"' not in page
    assert re.search(r'<link rel="prefetch" href="/static/app\.[0-9a-f]{10}\.css">', page)


async def test_a_signed_out_page_needs_no_other_request_and_a_large_logo_stays_a_file(client, demo):
    """On a first visit over a slow link every file after the page costs a round trip
    (and, on HTTP/1.1, a new connection): the signed-out pages carry our scripts and a
    small logo inside them; signed-in pages link the cached files."""
    page = (await client.get("/sign-in")).text
    static = Path(__file__).parents[1] / "static"
    for script in ("htmx-4.0.1.min.js", "app.js", "passkeys.js"):
        assert f">{(static / script).read_text()}</script>" in page, script
    assert "<script src=" not in page
    logo = re.search(
        r'<img src="data:image/png;base64,([^"]+)" alt="" width="(\d+)" height="50">', page
    )
    assert logo, "the logo inside the page, with its size"
    before = await Tenant.select().where(Tenant.id == 1).first().run()
    assert base64.b64decode(logo.group(1)) == before["logo_2x"]  # the 2× copy
    assert "/logo/" not in page
    # A logo larger than 8 KB (a photo, say) stays a file, cached after the first visit.
    big = Image.effect_noise((400, 100), 90).convert("RGB")
    for field, size in ((Tenant.logo, (200, 50)), (Tenant.logo_2x, (400, 100))):
        out = io.BytesIO()
        big.resize(size).save(out, "PNG")
        assert out.tell() > INLINE_LOGO_MAX_BYTES
        await (
            Tenant.update({field: out.getvalue(), Tenant.logo_version: 2})
            .where(Tenant.id == 1)
            .run()
        )
    page = (await client.get("/forgot")).text
    assert '<img src="/logo/2" srcset="/logo/2/2x 2x"' in page
    assert "data:image" not in page
    await (
        Tenant.update(
            {Tenant.logo: before["logo"], Tenant.logo_2x: before["logo_2x"], Tenant.logo_version: 1}
        )
        .where(Tenant.id == 1)
        .run()
    )


async def test_signed_in_pages_link_the_cached_stylesheet(jane):
    page = (await jane.get("/history")).text
    assert "<style>" not in page
    assert re.search(r'<link rel="stylesheet" href="/static/app\.[0-9a-f]{10}\.css">', page)


@pytest.mark.parametrize("path", ["/sign-in", "/invite", "/forgot"])
async def test_pages_describe_themselves_with_the_business_name(client, path):
    page = (await client.get(path)).text
    assert '<meta name="description" content="XYZ Services customer portal: see and pay' in page


def test_the_text_filter_escapes_as_markupsafe_does():
    """The Invoices rows' `text` filter (autoescaping off there, for speed) writes every
    character that matters in HTML as MarkupSafe would, and nothing for a missing value."""
    from markupsafe import escape

    from portal.web import escaped_text

    for value in ['<script>alert("x")</script>&', "O'Brien & Sons", "plain", "é ✓", 42]:
        assert escaped_text(value) == str(escape(value))
    assert escaped_text(None) == ""
