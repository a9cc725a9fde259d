"""Small test businesses as import files (docs/import-format.md), beside the demo."""

from __future__ import annotations

import json
from typing import Any

from portal.importer import import_file

NEW_ADMIN_PASSWORD = "boss-pass-1234"
NEW_OFFICE_PASSWORD = "desk-pass-1234"
NEW_CUSTOMER_PASSWORD = "pat-pass-12345"


def new_business_data(host: str, *, open_portal: bool = False) -> dict[str, Any]:
    """A small business as an import file: by default just imported, legal agreement not
    accepted and portal disabled. Staff `boss@<host>.example` (admin) and
    `desk@<host>.example` (office); customer Pat Lee (registered, `pat@<host>.example`)."""
    portal: dict[str, Any] = {"enabled": False}
    if open_portal:
        portal = {
            "enabled": True,
            "legal_accepted_by": f"boss@{host}.example",
            "legal_accepted_at": "2026-01-05T15:00:00Z",
        }
    return {
        "format": "portal-import/1",
        "business": {
            "host": host,
            "name": "Brightwater Plumbing",
            "email": f"hello@{host}.example",
            "phone": "(555) 222-0101",
            "time_zone": "America/Denver",
            "portal": portal,
        },
        "business_units": [
            {"id": "PL", "name": "Plumbing"},
            {"id": "EL", "name": "Electrical", "invoices_downloadable": False},
        ],
        "staff": [
            {
                "email": f"boss@{host}.example",
                "name": "Bea Boss",
                "role": "admin",
                "password": NEW_ADMIN_PASSWORD,
            },
            {
                "email": f"desk@{host}.example",
                "name": "Dan Desk",
                "role": "office",
                "password": NEW_OFFICE_PASSWORD,
            },
        ],
        "customers": [
            {
                "id": "C1",
                "name": "Pat Lee",
                "emails": [f"pat@{host}.example"],
                "locations": [
                    {"id": "L1", "name": "Home", "street": "9 Elm Row", "city": "Boulder"}
                ],
                "portal_account": {
                    "email": f"pat@{host}.example",
                    "password": NEW_CUSTOMER_PASSWORD,
                },
            }
        ],
        "jobs": [
            {
                "number": "J-1",
                "customer": "C1",
                "location": "L1",
                "business_unit": "PL",
                "summary": "Leak fixed",
                "status": "completed",
                "completed_at": "2026-10-01T15:00:00Z",
            }
        ],
        "invoices": [
            {
                "number": "INV-1",
                "job": "J-1",
                "date": "2026-10-01",
                "due_date": "2026-10-31",
                "lines": [{"description": "Repair", "unit_price_cents": 12500}],
            }
        ],
        "memberships": [
            {
                "id": "M1",
                "customer": "C1",
                "location": "L1",
                "type": "Leak Guard",
                "status": "active",
                "start_date": "2026-01-01",
            },
            {
                "id": "M2",
                "customer": "C1",
                "location": "L1",
                "type": "Old Plan",
                "status": "canceled",
                "start_date": "2025-01-01",
            },
        ],
    }


async def import_business(host: str, *, open_portal: bool = False) -> int:
    """Import `new_business_data(host)` into the module's database; returns its id."""
    return await import_file(json.dumps(new_business_data(host, open_portal=open_portal)))
