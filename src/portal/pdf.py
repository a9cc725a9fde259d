"""An invoice as a PDF (fpdf2): the business's logo, name and contact details, who and
where the work was for, the lines, totals and payments.

Kept small on purpose (customers download on slow connections): the PDF core font
Helvetica (no embedded font files), compressed page streams, the logo embedded once.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from portal.db.invoices import as_date
from portal.db.rows import TenantRow
from portal.formatting import format_date, money

if TYPE_CHECKING:
    from fpdf import FPDF

log = logging.getLogger("portal.pdf")

# The core fonts know Latin-1 only: map the typographic characters people paste.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2022": "*",
        "\u2026": "...",
        "\u00a0": " ",
        "\u20ac": "EUR ",
    }
)
BRAND = (15, 76, 129)
MUTED = (91, 102, 117)


def plain(text: Any) -> str:
    """Text the PDF core fonts can draw (anything else becomes '?')."""
    return str(text or "").translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def _quantity(value: float) -> str:
    return f"{value:g}"


def _when(value: date | datetime | str | None, tz: str) -> str:
    if isinstance(value, datetime):
        return format_date(value, tz)
    return format_date(as_date(value))


@cache
def _document() -> Callable[[TenantRow], FPDF]:
    """fpdf2's document with the invoice's footer. fpdf2 is imported on the first PDF,
    not when the portal starts: with fontTools it is about a quarter of a second of every
    process's start-up (each server, each command), and most processes never draw one."""
    from fpdf import FPDF

    class InvoicePDF(FPDF):
        def __init__(self, tenant: TenantRow) -> None:
            super().__init__(orientation="portrait", unit="mm", format="Letter")
            self.tenant = tenant
            self.set_margins(16, 16, 16)
            self.set_auto_page_break(auto=True, margin=18)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Helvetica", size=8)
            self.set_text_color(*MUTED)
            contact = " | ".join(
                p for p in (self.tenant["name"], self.tenant["phone"], self.tenant["email"]) if p
            )
            self.cell(0, 5, plain(contact), align="L")
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")

    return InvoicePDF


def invoice_pdf(
    tenant: TenantRow, invoice: dict[str, Any], logo: tuple[bytes, str] | None
) -> bytes:
    """The PDF of an invoice (as loaded by `portal.db.invoices.invoice_detail`)."""
    from fpdf.enums import XPos, YPos  # loaded with fpdf by _document
    from fpdf.fonts import FontFace

    currency = tenant["currency"]
    tz = tenant["time_zone"]
    pdf = _document()(tenant)
    pdf.set_title(plain(f"Invoice {invoice['number']}"))
    pdf.set_author(plain(tenant["name"]))
    pdf.set_creator("Customer Portal")
    pdf.add_page()

    # Header: logo and business name on the left, contact details on the right.
    top = pdf.get_y()
    text_x = pdf.l_margin
    if logo:
        try:
            info = pdf.image(io.BytesIO(logo[0]), x=pdf.l_margin, y=top, h=13)
            text_x = pdf.l_margin + float(info.rendered_width) + 4
        except Exception as exc:  # a broken logo must not cost the customer their invoice
            log.warning("logo of business %s not drawn: %s", tenant["id"], exc)
    pdf.set_xy(text_x, top + 1)
    pdf.set_font("Helvetica", "B", 16)
    pdf.set_text_color(*BRAND)
    pdf.cell(90, 8, plain(tenant["name"]))
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(*MUTED)
    contact_lines = [p for p in (tenant["phone"], tenant["email"]) if p]
    for i, line in enumerate(contact_lines):
        pdf.set_xy(pdf.w - pdf.r_margin - 70, top + 1 + i * 5)
        pdf.cell(70, 5, plain(line), align="R")
    pdf.set_y(top + 18)
    pdf.set_draw_color(*BRAND)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(5)

    # Title and facts.
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, plain(f"Invoice {invoice['number']}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=10)
    location = ", ".join(
        p
        for p in (
            invoice["location_name"],
            invoice["location_street"],
            invoice["location_city"],
            " ".join(p for p in (invoice.get("location_state"), invoice.get("location_zip")) if p),
        )
        if p
    )
    facts = [
        ("Billed to", invoice["customer_name"]),
        ("Service location", location),
        ("Invoice date", _when(invoice["invoice_date"], tz)),
        ("Due date", _when(invoice["due_date"], tz) if invoice["due_date"] else ""),
        ("Job", f"{invoice['job_number']}: {invoice['job_summary']}"),
        ("Business unit", invoice["unit_name"]),
        ("Status", invoice["status"]),
    ]
    for label, value in facts:
        if not value:
            continue
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(38, 6, plain(label))
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 6, plain(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    heading = FontFace(emphasis="BOLD", fill_color=(232, 237, 242))
    with pdf.table(
        col_widths=(100, 20, 30, 30),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        headings_style=heading,
        line_height=6,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        table.row(["Description", "Qty", "Unit price", "Amount"])
        for line in invoice["lines"]:
            table.row(
                [
                    plain(line["description"]),
                    _quantity(line["quantity"]),
                    plain(money(line["unit_price_cents"], currency)),
                    plain(money(line["amount_cents"], currency)),
                ]
            )
    pdf.ln(3)
    for label, cents, bold in (
        ("Total", invoice["total_cents"], False),
        ("Paid", invoice["paid_cents"], False),
        ("Balance due", invoice["balance_cents"], True),
    ):
        pdf.set_font("Helvetica", "B" if bold else "", 11 if bold else 10)
        pdf.cell(150, 6, label, align="R")
        pdf.cell(
            0, 6, plain(money(cents, currency)), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )

    if invoice["payments"]:
        pdf.ln(5)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 7, "Payments", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", size=10)
        with pdf.table(
            col_widths=(35, 55, 60, 30),
            text_align=("LEFT", "LEFT", "LEFT", "RIGHT"),
            headings_style=heading,
            line_height=6,
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            table.row(["Date", "Method", "Reference", "Amount"])
            for p in invoice["payments"]:
                method = (
                    f"{p['card_brand']} ending {p['card_last4']}" if p["card_last4"] else "Payment"
                )
                table.row(
                    [
                        plain(_when(p["completed_at"], tz)),
                        plain(method),
                        plain(p["reference"]),
                        plain(money(p["amount_cents"], currency)),
                    ]
                )
    return bytes(pdf.output())
