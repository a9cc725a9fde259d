"""Invoice PDFs: offered and served only for business units the office allowed, valid
PDF files with the business's name, logo and contact details, and small."""

from __future__ import annotations

import contextlib
import re
import zlib

from portal.db.tables import BusinessUnit
from portal.pdf import plain
from tests.support.paying import invoice_ids


def check_pdf(body: bytes) -> str:
    """Check a PDF's structure (header, cross-reference table, trailer) and return the
    text of its decompressed page streams."""
    assert body.startswith(b"%PDF-1.")
    assert body.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", body).group(1))
    assert body[startxref : startxref + 4] == b"xref"
    table = re.match(rb"xref\s+0 (\d+)\s+((?:\d{10} \d{5} [nf]\s+)+)", body[startxref:])
    count = int(table.group(1))
    entries = re.findall(rb"(\d{10}) \d{5} ([nf])", table.group(2))
    assert len(entries) == count
    for number, (offset, kind) in enumerate(entries):
        if kind == b"n":  # each object is where the table says it is
            assert re.match(rb"%d 0 obj" % number, body[int(offset) :]), number
    assert b"/Type /Catalog" in body and b"/Type /Pages" in body
    text = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S):
        with contextlib.suppress(zlib.error):  # images are not zlib text
            text.append(zlib.decompress(stream).decode("latin-1"))
    # PDF strings escape parentheses and backslashes.
    return "\n".join(text).replace("\\(", "(").replace("\\)", ")").replace("\\\\", "\\")


async def test_pdf_of_an_allowed_business_unit(jane, demo):
    (inv,) = await invoice_ids(demo, "INV-1039")  # Plumbing
    response = await jane.get(f"/invoices/{inv}/pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'attachment; filename="INV-1039.pdf"'
    body = response.content
    assert len(body) < 40_000  # small on a slow connection
    text = check_pdf(body)
    for expected in (
        "XYZ Services",
        "(555) 010-4477",
        "help@xyzservices.example",
        "Invoice INV-1039",
        "Jane Doe",
        "Drain cleaning",
        "$189.00",
        "Balance due",
        "$139.00",
        "Visa ending 4242",
    ):
        assert expected in text, expected
    assert b"/Subtype /Image" in body  # the logo


async def test_no_pdf_for_business_units_the_office_did_not_allow(jane, demo):
    (inv,) = await invoice_ids(demo, "INV-1037")  # Electrical: not downloadable
    assert (await jane.get(f"/invoices/{inv}/pdf")).status_code == 404
    page = (await jane.get(f"/invoices/{inv}")).text
    assert page.count("Download PDF") == 0 and f"/invoices/{inv}/pdf" not in page
    history = (await jane.get("/history")).text
    assert f"/invoices/{inv}/pdf" not in history
    (allowed,) = await invoice_ids(demo, "INV-1036")
    assert f"/invoices/{allowed}/pdf" in history


async def test_office_choice_takes_effect_at_once(jane, demo):
    (inv,) = await invoice_ids(demo, "INV-1036")  # Plumbing
    await (
        BusinessUnit.update({BusinessUnit.invoices_downloadable: False})
        .where((BusinessUnit.tenant == demo) & (BusinessUnit.name == "Plumbing"))
        .run()
    )
    try:
        assert (await jane.get(f"/invoices/{inv}/pdf")).status_code == 404
        assert "Download PDF" not in (await jane.get(f"/invoices/{inv}")).text
    finally:
        await (
            BusinessUnit.update({BusinessUnit.invoices_downloadable: True})
            .where((BusinessUnit.tenant == demo) & (BusinessUnit.name == "Plumbing"))
            .run()
        )
    assert (await jane.get(f"/invoices/{inv}/pdf")).status_code == 200


async def test_pdf_of_another_customers_invoice_is_404(jane, demo):
    (bob,) = await invoice_ids(demo, "INV-1041")  # Plumbing, but Bob's
    assert (await jane.get(f"/invoices/{bob}/pdf")).status_code == 404


def test_text_the_core_fonts_cannot_draw_is_replaced():
    assert plain("Café – “quoted” • 50¢") == 'Café - "quoted" * 50¢'
    assert plain("水") == "?"
