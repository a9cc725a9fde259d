"""What the business's system of record sends, as a customer sees it in a real browser,
JavaScript on and off: a void invoice is not on the Invoices tab or in its total, shows as
Void in History and on its own page (no Pay button); an appointment the business booked is
on the Scheduler under Upcoming appointments. The records come in through `portal import`
(the same rules and writers as the sync API's records)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.browser import sign_in

PASSWORD = "a garden of tulips"


def business(host: str) -> dict:
    start = (datetime.now(UTC) + timedelta(days=5)).replace(
        hour=16, minute=0, second=0, microsecond=0
    )
    job = {
        "customer": "C1",
        "location": "L1",
        "business_unit": "PL",
        "status": "completed",
        "completed_at": "2026-10-01T15:00:00Z",
    }
    return {
        "format": "portal-import/1",
        "business": {
            "host": host,
            "name": "Void and Visit Plumbing",
            "email": f"help@{host}.example",
            "time_zone": "UTC",
            "portal": {
                "enabled": True,
                "legal_accepted_by": f"boss@{host}.example",
                "legal_accepted_at": "2026-01-05T15:00:00Z",
                "scheduler_enabled": True,
                "service_types": ["Water heater install"],
            },
        },
        "business_units": [{"id": "PL", "name": "Plumbing"}],
        "customers": [
            {
                "id": "C1",
                "name": "Val Visit",
                "emails": [f"val@{host}.example"],
                "locations": [{"id": "L1", "name": "Home", "street": "3 Birch Lane"}],
                "portal_account": {"email": f"val@{host}.example", "password": PASSWORD},
            }
        ],
        "jobs": [{"number": "J1", **job}, {"number": "J2", **job}],
        "invoices": [
            {
                "number": "INV-OWED",
                "job": "J1",
                "date": "2026-10-01",
                "lines": [{"description": "Repair", "unit_price_cents": 12000}],
            },
            {
                "number": "INV-VOID",
                "job": "J2",
                "date": "2026-10-02",
                "lines": [{"description": "Billed by mistake", "unit_price_cents": 8000}],
                "status": "void",
            },
        ],
        "appointments": [
            {
                "id": "APT-1",
                "customer": "C1",
                "location": "L1",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat(),
                "service_type": "Water heater install",
            }
        ],
    }


def test_a_void_invoice_and_a_booked_appointment(server, page: Page, js: bool, tmp_path: Path):
    host = f"voidvisit-{'js' if js else 'nojs'}"
    path = tmp_path / f"{host}.json"
    path.write_text(json.dumps(business(host)))
    result = server.cli("import", str(path))
    assert result.returncode == 0, result.stderr
    base = f"http://{host}.localhost:{server.port}"
    sign_in(page, base, f"val@{host}.example", PASSWORD)

    # Invoices tab: only the invoice that is owed, and only its amount in the total.
    expect(page.get_by_role("cell", name=re.compile("INV-OWED"))).to_be_visible()
    expect(page.get_by_text("INV-VOID")).to_have_count(0)
    expect(page.locator("tfoot")).to_contain_text("$120.00")

    page.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()
    void_row = page.get_by_role("row").filter(has_text="INV-VOID")
    expect(void_row).to_contain_text("Void")
    expect(void_row).not_to_contain_text("Unpaid")

    page.get_by_role("link", name="INV-VOID", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Invoice INV-VOID Void"))).to_be_visible()
    expect(page.get_by_text("voided this invoice: nothing is owed on it")).to_be_visible()
    expect(page.get_by_role("link", name="Pay this invoice")).to_have_count(0)

    page.get_by_role("link", name="Scheduler").click()
    upcoming = page.get_by_role("region", name="Upcoming appointments")
    expect(upcoming).to_contain_text("Water heater install")
    expect(upcoming).to_contain_text("6 PM")  # 16:00 UTC ends at 18:00 in the business's zone
