"""Privacy requests: one customer's data as a zip (a JSON file of everything the portal
holds about them, and a PDF of each of their invoices), for an administrator to hand
over. Erasing is `db/privacy.py`."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import date, datetime
from typing import Any

import anyio

from portal.db import invoices as invoices_db
from portal.db import privacy as privacy_db
from portal.db import queries
from portal.db.rows import TenantRow
from portal.pdf import invoice_pdf


def _plain(value: Any) -> Any:
    """JSON for what the database gives (dates as ISO text, bytes left out)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return None
    return str(value)


def _file_name(number: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", number)[:60] or "invoice"


async def export_zip(tenant: TenantRow, customer_id: int) -> tuple[str, bytes]:
    """(file name, zip bytes) of one customer's data; raises `db.privacy.NotFound`."""
    data = await privacy_db.export_data(tenant["id"], customer_id)
    logo = await queries.tenant_logo(tenant["id"])
    pdfs: list[tuple[str, bytes]] = []
    for invoice in data["invoices"]:
        detail = await invoices_db.invoice_detail(tenant["id"], customer_id, invoice["id"])
        if detail is not None:  # $0 invoices have no page and no PDF
            body = await anyio.to_thread.run_sync(invoice_pdf, tenant, detail, logo)
            pdfs.append((f"invoices/{_file_name(invoice['number'])}.pdf", body))
    document = {
        "format": "portal-customer-export/1",
        "business": {"name": tenant["name"], "host": tenant["host"]},
        **data,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("customer.json", json.dumps(document, indent=2, default=_plain))
        for name, body in pdfs:
            archive.writestr(name, body)
    number = _file_name(str(data["customer"]["external_id"]))
    return f"customer-{number}.zip", buffer.getvalue()
