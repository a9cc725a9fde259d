"""Office CSV upload: a spreadsheet of customers or of open invoices, its columns mapped to
the portal's fields, checked and shown as a dry run (what would be created, changed or
refused, row by row) before anything is written. Rows become sync API records
(`api/records.py`), so they follow the same rules and are written the same way
(`api/sync.py`), in one transaction.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgspec

from portal.api import sync
from portal.api.records import CustomerRecord, InvoiceRecord, JobRecord, Record
from portal.forms import Checked, parse_day
from portal.importer import friendly_path

MAX_BYTES = 2_000_000
MAX_ROWS = 5_000
KINDS = {"customers": "Customers", "invoices": "Open invoices"}
# The portal's fields for each kind: (key, label, required, words a header may use).
FIELDS: dict[str, list[tuple[str, str, bool, tuple[str, ...]]]] = {
    "customers": [
        (
            "id",
            "Customer number",
            True,
            ("customer number", "customer id", "id", "number", "account"),
        ),
        ("name", "Name", True, ("name", "customer name", "customer")),
        ("emails", "Emails", False, ("email", "emails", "e-mail")),
        ("phone", "Phone", False, ("phone", "telephone", "mobile")),
        ("street", "Street", False, ("street", "address", "address 1")),
        ("city", "City", False, ("city", "town")),
        ("state", "State", False, ("state", "province", "region")),
        ("zip", "ZIP", False, ("zip", "zip code", "postal code", "postcode")),
    ],
    "invoices": [
        ("number", "Invoice number", True, ("invoice number", "invoice", "number", "invoice #")),
        (
            "customer",
            "Customer number",
            True,
            ("customer number", "customer id", "customer", "account"),
        ),
        ("date", "Invoice date", True, ("date", "invoice date")),
        ("due_date", "Due date", False, ("due date", "due")),
        ("amount", "Amount owed", True, ("amount", "balance", "total", "amount due")),
        ("description", "Description", False, ("description", "summary", "memo")),
    ],
}


class CsvProblem(Exception):
    """The file cannot be read as a CSV (a sentence for the office)."""


@dataclass
class Sheet:
    """A CSV file read: its column names and rows (as lists of cells)."""

    columns: list[str]
    rows: list[list[str]]


@dataclass
class Preview:
    """What an upload would do (or did): counts by result and each refused row."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (spreadsheet row, why)


def read(raw: bytes) -> Sheet:
    """Read an uploaded CSV (UTF-8, with or without BOM; comma, semicolon or tab)."""
    if not raw.strip():
        raise CsvProblem("The file is empty. Choose a CSV file with a header row.")
    if len(raw) > MAX_BYTES:
        raise CsvProblem(f"The file is larger than {MAX_BYTES // 1_000_000} MB; split it in parts.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvProblem(
            "The file is not UTF-8 text. Save it as “CSV UTF-8” and try again."
        ) from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if len(rows) < 2:
        raise CsvProblem("The file needs a header row and at least one row of data.")
    if len(rows) > MAX_ROWS + 1:
        raise CsvProblem(f"The file has more than {MAX_ROWS:,} rows; split it in parts.")
    columns = [c.strip() or f"Column {n}" for n, c in enumerate(rows[0], 1)]
    return Sheet(columns, rows[1:])


def guess_mapping(kind: str, columns: list[str]) -> dict[str, str]:
    """Each field's likely column, from the header's words ("" when none fits)."""
    lowered = {c.lower().strip(): c for c in columns}
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for key, _, _, words in FIELDS[kind]:
        choice = next((lowered[w] for w in words if w in lowered and lowered[w] not in used), "")
        mapping[key] = choice
        if choice:
            used.add(choice)
    return mapping


def clean_column(
    value: str, columns: list[str], label: str, required: bool
) -> tuple[str, str | None]:
    """The file's column chosen for a field: one of the file's; none only when the field
    is not required."""
    if value and value not in columns:
        return value, "Choose one of the file's columns."
    if required and not value:
        return value, f"Choose the column that holds the {label.lower()}."
    return value, None


def clean_unit(value: str, unit_ids: Collection[str]) -> tuple[str, str | None]:
    """The business unit open invoices are for: one of the business's (`unit_ids`)."""
    return value, None if value in unit_ids else "Choose the business unit these invoices are for."


@dataclass(frozen=True)
class ColumnChoice:
    """A checked mapping form: each field's column ("" for none), and the unit."""

    mapping: dict[str, str]
    unit: str


def check_mapping(
    kind: str, form: dict[str, str], columns: list[str], unit_ids: Collection[str]
) -> Checked[ColumnChoice | None]:
    """Check the mapping form of a file of `kind` (`forms.Checked`): the columns to read
    (None while there are problems), the form to show again (`mapping`, `unit`), the
    problems by field (the field's key; `unit`). Only open invoices need a unit."""
    mapping: dict[str, str] = {}
    problems: dict[str, str] = {}
    for key, label, required, _ in FIELDS[kind]:
        mapping[key], problem = clean_column(form.get(f"map_{key}", ""), columns, label, required)
        if problem:
            problems[key] = problem
    unit = form.get("unit", "")
    if kind == "invoices":
        unit, problem = clean_unit(unit, unit_ids)
        if problem:
            problems["unit"] = problem
    values = {"mapping": mapping, "unit": unit}
    return Checked(None if problems else ColumnChoice(mapping, unit), problems, values)


def _cents(text: str) -> int | None:
    cleaned = re.sub(r"[\s$,]", "", text)
    if not re.fullmatch(r"\d+(\.\d{1,2})?", cleaned):
        return None
    whole, _, part = cleaned.partition(".")
    return int(whole) * 100 + int((part + "00")[:2])


def _records(
    kind: str, sheet: Sheet, mapping: dict[str, str], locations: dict[str, str], unit: str
) -> tuple[list[Record], list[int], list[tuple[int, str]]]:
    index = {c: n for n, c in enumerate(sheet.columns)}

    def cell(row: list[str], key: str) -> str:
        column = mapping.get(key, "")
        n = index.get(column)
        return row[n].strip() if column and n is not None and n < len(row) else ""

    records: list[Record] = []
    lines: list[int] = []
    problems: list[tuple[int, str]] = []
    for number, row in enumerate(sheet.rows, 2):  # row 1 is the header
        try:
            if kind == "customers":
                cid = cell(row, "id")
                emails = [e for e in re.split(r"[;,\s]+", cell(row, "emails")) if e]
                street = cell(row, "street")
                raw: dict[str, Any] = {
                    "id": cid,
                    "name": cell(row, "name"),
                    "phone": cell(row, "phone"),
                    "emails": emails,
                    "locations": [
                        {
                            "id": f"{cid}-1",
                            "street": street,
                            "city": cell(row, "city"),
                            "state": cell(row, "state"),
                            "zip": cell(row, "zip"),
                        }
                    ]
                    if street
                    else [],
                }
                records.append(msgspec.convert(raw, CustomerRecord))
                lines.append(number)
                continue
            day = parse_day(cell(row, "date"))
            if day is None:
                raise ValueError(f"Invoice date: {cell(row, 'date')!r} is not a date")
            due_text = cell(row, "due_date")
            due = parse_day(due_text) if due_text else None
            if due_text and due is None:
                raise ValueError(f"Due date: {due_text!r} is not a date")
            cents = _cents(cell(row, "amount"))
            if cents is None:
                raise ValueError(
                    f"Amount owed: {cell(row, 'amount')!r} is not an amount like 125.00"
                )
            customer = cell(row, "customer")
            if customer not in locations:
                raise ValueError(
                    f"Customer number: no customer {customer!r} with a service address"
                )
            invoice = cell(row, "number")
            description = cell(row, "description") or "Invoice"
            records.append(
                msgspec.convert(
                    {
                        "number": invoice,
                        "customer": customer,
                        "location": locations[customer],
                        "business_unit": unit,
                        "status": "completed",
                        "completed_at": f"{day.isoformat()}T12:00:00Z",
                        "summary": description,
                    },
                    JobRecord,
                )
            )
            lines.append(number)
            records.append(
                msgspec.convert(
                    {
                        "number": invoice,
                        "job": invoice,
                        "date": day.isoformat(),
                        "due_date": due.isoformat() if isinstance(due, date) else None,
                        "summary": description,
                        "lines": [{"description": description, "unit_price_cents": cents}],
                    },
                    InvoiceRecord,
                )
            )
            lines.append(number)
        except msgspec.ValidationError as exc:
            problems.append((number, friendly_path(str(exc))))
        except ValueError as exc:
            problems.append((number, str(exc)))
    return records, lines, problems


async def run(
    tenant_id: int,
    kind: str,
    sheet: Sheet,
    mapping: dict[str, str],
    *,
    unit: str = "",
    dry_run: bool,
) -> Preview:
    """Check every row and write them (or, for a dry run, only say what would happen)."""
    locations = await sync.first_locations(tenant_id) if kind == "invoices" else {}
    records, lines, problems = _records(kind, sheet, mapping, locations, unit)
    summary = await sync.push(tenant_id, records, dry_run=dry_run)
    preview = Preview(problems=problems)
    for outcome in summary.outcomes:
        if kind == "invoices" and outcome.kind == "job":
            continue  # each invoice row is a job and its invoice: count the invoice
        preview.counts[outcome.result] = preview.counts.get(outcome.result, 0) + 1
    for outcome in summary.errors:
        where = f"{outcome.field}: " if outcome.field else ""
        problems.append((lines[outcome.index], f"{where}{outcome.problem}"))
    if problems:
        preview.counts["error"] = len({row for row, _ in problems})
        preview.counts.pop("", None)
    problems.sort()
    return preview
