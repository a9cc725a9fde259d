"""The demo business, XYZ Services, built as an import file (docs/demo.md).

Dates are relative to today so that "upcoming" visits are upcoming whenever
the demo is loaded. Faker is seeded, so the same day gives the same data.
"""

from __future__ import annotations

import base64
import io
import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from faker import Faker

DEMO_HOST = "xyzplumbing"
ADMIN_EMAIL = "admin@xyzservices.example"
ADMIN_PASSWORD = "admin-demo-pass"
OFFICE_EMAIL = "office@xyzservices.example"
OFFICE_PASSWORD = "office-demo-pass"
JANE_EMAIL = "jane@example.com"
JANE_PASSWORD = "jane-demo-pass"
SANDBOX_ACCOUNT = "sandbox_acct_xyzservices"
SERVICE_TYPES = ["Plumbing repair", "Drain cleaning", "HVAC tune-up", "Electrical inspection"]
RECURRING_MESSAGE = (
    "Your membership includes two tune-ups a year. We'll call a week ahead to confirm "
    "each visit; reply to any email from us to move it."
)
UNITS = [
    {"id": "BU-PL", "name": "Plumbing", "invoices_downloadable": True},
    {"id": "BU-EL", "name": "Electrical", "invoices_downloadable": False},
    {"id": "BU-HV", "name": "HVAC", "invoices_downloadable": True},
]
# Per business unit: (job summary, invoice lines as (description, quantity, unit price cents)).
WORK: dict[str, list[tuple[str, list[tuple[str, float, int]]]]] = {
    "BU-PL": [
        (
            "Water heater flush and anode check",
            [("Water heater service", 1, 14500), ("Anode rod", 1, 6500)],
        ),
        ("Kitchen drain cleared", [("Drain cleaning", 1, 18900)]),
        (
            "Leaking shut-off valve replaced",
            [("Labor (hours)", 1.5, 9800), ("1/2 in. ball valve", 1, 2450)],
        ),
        ("Toilet fill valve replaced", [("Service call", 1, 8900), ("Fill valve", 1, 2600)]),
    ],
    "BU-EL": [
        ("Panel inspection", [("Electrical panel inspection", 1, 18000)]),
        ("GFCI outlets installed", [("GFCI outlet", 3, 4200), ("Labor (hours)", 1, 11000)]),
        ("Ceiling fan installed", [("Fan installation", 1, 16500)]),
    ],
    "BU-HV": [
        (
            "AC not cooling: capacitor replaced",
            [
                ("Diagnostic", 1, 8900),
                ("Run capacitor", 1, 12500),
                ("Refrigerant top-up (lb)", 2, 8400),
            ],
        ),
        ("Furnace tune-up", [("Furnace tune-up", 1, 12900)]),
        ("Thermostat replaced", [("Smart thermostat", 1, 21900), ("Installation", 1, 9500)]),
    ],
}


def _logo_png() -> str:
    """A small logo drawn with Pillow, as base64: "XYZ" in large letters that read at the
    header's size (Pillow's bundled scalable font; its tiny bitmap font, drawn without a
    size, was unreadable), 100 px high so it is sharp on a phone's 2× screen (shown 50 px
    high)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (240, 100), (15, 76, 129))
    draw = ImageDraw.Draw(img)
    draw.rectangle((4, 4, 235, 95), outline=(255, 214, 102), width=6)
    font = ImageFont.load_default(size=60)
    draw.text((120, 50), "XYZ", fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def _at(day: date, hour: int = 15) -> str:
    return datetime.combine(day, time(hour, 0), tzinfo=UTC).isoformat()


class _Builder:
    def __init__(self, today: date) -> None:
        self.today = today
        self.customers: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []
        self.invoices: list[dict[str, Any]] = []
        self.payments: list[dict[str, Any]] = []
        self.memberships: list[dict[str, Any]] = []
        self._n = 1000

    def number(self) -> int:
        self._n += 1
        return self._n

    def invoice(
        self,
        customer: str,
        location: str,
        unit: str,
        days_ago: int,
        *,
        work: int = 0,
        paid: int | None = None,
        status: str = "completed",
        lines: list[tuple[str, float, int]] | None = None,
        summary: str | None = None,
        card: tuple[str, str] = ("Visa", "4242"),
    ) -> str:
        """Add a job with one invoice; `paid` cents already paid (None: unpaid)."""
        n = self.number()
        day = self.today - timedelta(days=days_ago)
        job_summary, work_lines = WORK[unit][work % len(WORK[unit])]
        job: dict[str, Any] = {
            "number": f"J-{n}",
            "customer": customer,
            "location": location,
            "business_unit": unit,
            "summary": summary or job_summary,
            "status": status,
            "scheduled_start": _at(day, 14),
            "scheduled_end": _at(day, 17),
        }
        if status == "completed":
            job["completed_at"] = _at(day, 17)
        self.jobs.append(job)
        inv_lines = lines if lines is not None else work_lines
        number = f"INV-{n}"
        self.invoices.append(
            {
                "number": number,
                "job": f"J-{n}",
                "date": day.isoformat(),
                "due_date": (day + timedelta(days=30)).isoformat(),
                "lines": [
                    {"description": d, "quantity": q, "unit_price_cents": p}
                    for d, q, p in inv_lines
                ],
            }
        )
        if paid:
            self.payments.append(
                {
                    "reference": f"PAY-{n}",
                    "customer": customer,
                    "paid_at": _at(day + timedelta(days=3), 18),
                    "card_brand": card[0],
                    "card_last4": card[1],
                    "allocations": [{"invoice": number, "amount_cents": paid}],
                }
            )
        return number


def _total(lines: list[tuple[str, float, int]]) -> int:
    return sum(int(round(q * p + 1e-9)) for _, q, p in lines)


def demo_data(today: date | None = None, extra_customers: int = 60) -> dict[str, Any]:
    """The demo business as an import-format dict."""
    today = today or date.today()
    fake = Faker("en_US")
    Faker.seed(4477)
    rng = random.Random(4477)
    b = _Builder(today)

    # Jane Doe: registered, two locations, a bit of everything.
    jane_locations = [
        {
            "id": "L-JANE-HOME",
            "name": "Home",
            "street": "12 Oak Street",
            "city": "Springfield",
            "state": "IL",
            "zip": "62704",
        },
        {
            "id": "L-JANE-CABIN",
            "name": "Lake cabin",
            "street": "48 Shoreline Road",
            "city": "Lake Carroll",
            "state": "IL",
            "zip": "61046",
        },
    ]
    b.customers.append(
        {
            "id": "C-1001",
            "name": "Jane Doe",
            "kind": "residential",
            "phone": "(555) 201-3344",
            "emails": [JANE_EMAIL],
            "locations": jane_locations,
            "portal_account": {"email": JANE_EMAIL, "password": JANE_PASSWORD},
        }
    )
    home, cabin = "L-JANE-HOME", "L-JANE-CABIN"
    # Older, paid history on both locations (enough for more than one page).
    for i in range(34):
        unit = ["BU-PL", "BU-HV", "BU-EL"][i % 3]
        lines = WORK[unit][i % len(WORK[unit])][1]
        b.invoice("C-1001", [home, cabin][i % 2], unit, 90 + i * 31, work=i, paid=_total(lines))
    # A $0 warranty call-back: never shown in History.
    b.invoice(
        "C-1001",
        home,
        "BU-PL",
        40,
        summary="Warranty call-back: valve re-checked",
        lines=[("Warranty call-back", 1, 0)],
    )
    # Unpaid invoices for completed jobs, across units and locations (oldest first on the tab).
    b.invoice("C-1001", home, "BU-PL", 35, work=0)
    b.invoice("C-1001", cabin, "BU-EL", 21, work=0)
    b.invoice("C-1001", home, "BU-HV", 12, work=0)
    # Partly paid already: the balance is what is left.
    b.invoice("C-1001", cabin, "BU-PL", 8, work=1, paid=5000)
    # A job not yet completed has an invoice too; it is not payable on the portal yet.
    b.invoice("C-1001", home, "BU-HV", -3, work=2, status="scheduled")
    b.memberships.extend(
        [
            {
                "id": "M-JANE-GOLD",
                "customer": "C-1001",
                "location": home,
                "type": "Comfort Club Gold",
                "status": "active",
                "start_date": (today - timedelta(days=200)).isoformat(),
                "end_date": (today + timedelta(days=165)).isoformat(),
                "card": {"brand": "Visa", "last4": "1881"},
                "visits": [
                    {
                        "date": (today - timedelta(days=150)).isoformat(),
                        "description": "Spring AC tune-up",
                        "status": "completed",
                    },
                    {
                        "date": (today + timedelta(days=18)).isoformat(),
                        "window_start": "08:00",
                        "window_end": "12:00",
                        "description": "Fall furnace tune-up",
                    },
                    {
                        "date": (today + timedelta(days=140)).isoformat(),
                        "window_start": "12:00",
                        "window_end": "16:00",
                        "description": "Spring AC tune-up",
                    },
                ],
            },
            {
                "id": "M-JANE-PLUMB",
                "customer": "C-1001",
                "location": cabin,
                "type": "Plumbing Protection Plan",
                "status": "canceled",
                "start_date": (today - timedelta(days=500)).isoformat(),
                "end_date": (today - timedelta(days=100)).isoformat(),
                "card": {"brand": "Mastercard", "last4": "5100"},
                "visits": [
                    {
                        "date": (today - timedelta(days=300)).isoformat(),
                        "description": "Annual plumbing inspection",
                        "status": "completed",
                    }
                ],
            },
            {
                "id": "M-JANE-SILVER",
                "customer": "C-1001",
                "location": home,
                "type": "Comfort Club Silver",
                "status": "expired",
                "start_date": (today - timedelta(days=900)).isoformat(),
                "end_date": (today - timedelta(days=535)).isoformat(),
                "card": {"brand": "Visa", "last4": "0077"},
                "visits": [
                    {
                        "date": (today - timedelta(days=700)).isoformat(),
                        "description": "Furnace tune-up",
                        "status": "completed",
                    }
                ],
            },
            {
                "id": "M-JANE-ELEC",
                "customer": "C-1001",
                "location": cabin,
                "type": "Electrical Safety Plan",
                "status": "suspended",
                "start_date": (today - timedelta(days=300)).isoformat(),
                "end_date": (today + timedelta(days=65)).isoformat(),
                "card": {"brand": "Amex", "last4": "0005"},
                "visits": [
                    {
                        "date": (today + timedelta(days=30)).isoformat(),
                        "description": "Panel and surge check",
                    }
                ],
            },
        ]
    )

    # Bob Stone: not registered, one unpaid invoice.
    b.customers.append(
        {
            "id": "C-1002",
            "name": "Bob Stone",
            "kind": "residential",
            "phone": "(555) 301-8870",
            "emails": ["bob@example.com"],
            "locations": [
                {
                    "id": "L-BOB",
                    "name": "Home",
                    "street": "7 Birch Lane",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62711",
                }
            ],
        }
    )
    b.invoice("C-1002", "L-BOB", "BU-PL", 16, work=3)

    # Acme Property Management: commercial, a contract; its facilities contact also
    # manages Maple Court HOA, so one portal account sees two customer records.
    b.customers.append(
        {
            "id": "C-1003",
            "name": "Acme Property Management",
            "kind": "commercial",
            "phone": "(555) 400-1200",
            "emails": ["facilities@acme.example", "ap@acme.example"],
            "locations": [
                {
                    "id": "L-ACME-1",
                    "name": "Riverside Offices",
                    "street": "200 River Road",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62701",
                },
                {
                    "id": "L-ACME-2",
                    "name": "Elm Street Plaza",
                    "street": "1450 Elm Street",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62702",
                },
            ],
        }
    )
    b.invoice("C-1003", "L-ACME-1", "BU-HV", 25, work=1)
    b.invoice("C-1003", "L-ACME-2", "BU-EL", 50, work=1, paid=_total(WORK["BU-EL"][1][1]))
    b.memberships.append(
        {
            "id": "K-ACME-HVAC",
            "customer": "C-1003",
            "location": "L-ACME-1",
            "type": "Commercial HVAC Service Agreement",
            "status": "active",
            "start_date": (today - timedelta(days=120)).isoformat(),
            "end_date": (today + timedelta(days=245)).isoformat(),
            "card": {"brand": "Visa", "last4": "3056"},
            "visits": [
                {
                    "date": (today + timedelta(days=10)).isoformat(),
                    "window_start": "07:00",
                    "window_end": "11:00",
                    "description": "Quarterly rooftop unit service",
                },
                {
                    "date": (today + timedelta(days=100)).isoformat(),
                    "window_start": "07:00",
                    "window_end": "11:00",
                    "description": "Quarterly rooftop unit service",
                },
            ],
        }
    )
    b.customers.append(
        {
            "id": "C-1004",
            "name": "Maple Court HOA",
            "kind": "commercial",
            "phone": "(555) 400-1290",
            "emails": ["facilities@acme.example"],
            "locations": [
                {
                    "id": "L-MAPLE",
                    "name": "Clubhouse",
                    "street": "3 Maple Court",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62704",
                }
            ],
        }
    )
    b.invoice("C-1004", "L-MAPLE", "BU-PL", 30, work=1)

    # Other customers, so that office lists have more than one page.
    for i in range(extra_customers):
        cid = f"C-{2000 + i}"
        kind = "commercial" if i % 9 == 0 else "residential"
        name = fake.company() if kind == "commercial" else fake.name()
        email = f"customer{2000 + i}@example.net"
        loc_id = f"L-{2000 + i}"
        b.customers.append(
            {
                "id": cid,
                "name": name,
                "kind": kind,
                "phone": f"(555) {rng.randint(200, 899)}-{rng.randint(1000, 9999)}",
                "emails": [email],
                "locations": [
                    {
                        "id": loc_id,
                        "name": "Main" if kind == "commercial" else "Home",
                        "street": fake.street_address(),
                        "city": fake.city(),
                        "state": fake.state_abbr(),
                        "zip": fake.zipcode(),
                    }
                ],
            }
        )
        for k in range(rng.randint(1, 4)):
            unit = rng.choice(["BU-PL", "BU-EL", "BU-HV"])
            lines = WORK[unit][k % len(WORK[unit])][1]
            days = rng.randint(5, 700)
            paid = _total(lines) if days > 60 or rng.random() < 0.5 else None
            b.invoice(
                cid,
                loc_id,
                unit,
                days,
                work=k,
                paid=paid,
                card=("Visa", f"{rng.randint(0, 9999):04d}"),
            )
        if i % 4 == 0:
            b.memberships.append(
                {
                    "id": f"M-{2000 + i}",
                    "customer": cid,
                    "location": loc_id,
                    "type": "Comfort Club Gold"
                    if kind == "residential"
                    else "Commercial HVAC Service Agreement",
                    "status": rng.choice(["active", "active", "canceled", "expired"]),
                    "start_date": (today - timedelta(days=rng.randint(30, 400))).isoformat(),
                    "card": {"brand": "Visa", "last4": f"{rng.randint(0, 9999):04d}"},
                    "visits": [
                        {
                            "date": (today + timedelta(days=rng.randint(5, 120))).isoformat(),
                            "description": "Seasonal tune-up",
                        }
                    ],
                }
            )

    accepted_at = datetime.combine(today - timedelta(days=400), time(16, 0), tzinfo=UTC)
    return {
        "format": "portal-import/1",
        "business": {
            "host": DEMO_HOST,
            "name": "XYZ Services",
            "email": "help@xyzservices.example",
            "phone": "(555) 010-4477",
            "time_zone": "America/Chicago",
            "currency": "USD",
            "logo_png_base64": _logo_png(),
            "portal": {
                "enabled": True,
                "legal_accepted_by": ADMIN_EMAIL,
                "legal_accepted_at": accepted_at.isoformat(),
                "scheduler_enabled": True,
                "service_types": SERVICE_TYPES,
                "memberships_enabled": True,
                "membership_statuses": ["canceled", "expired"],
                "recurring_service_message": RECURRING_MESSAGE,
                "payment_account": SANDBOX_ACCOUNT,
                "payments_enabled": True,
            },
        },
        "business_units": UNITS,
        "staff": [
            {
                "email": ADMIN_EMAIL,
                "name": "Alex Admin",
                "role": "admin",
                "password": ADMIN_PASSWORD,
            },
            {
                "email": OFFICE_EMAIL,
                "name": "Olivia Office",
                "role": "office",
                "password": OFFICE_PASSWORD,
            },
        ],
        "customers": b.customers,
        "jobs": b.jobs,
        "invoices": b.invoices,
        "payments": b.payments,
        "memberships": b.memberships,
    }


async def load_demo(today: date | None = None) -> int:
    """Import the demo business through the normal import path; returns its id."""
    import json

    from portal.importer import import_file

    return await import_file(json.dumps(demo_data(today)))
