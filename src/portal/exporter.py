"""`portal export --host H`: one business written in the import format
(docs/import-format.md), so that export → import into an empty database → export gives the
same bytes.

Fields come out in the format's order, lists in a fixed order (by the business's own ids,
then by row), times in UTC. Payments come out whatever their state (pending, failed,
refunded, with their refunds), invoices with their pushed PDF and, when the business set
one, their balance. What the format cannot carry is left out: portal accounts without a
password hash (a sign-up not finished), the link from an appointment to the portal's
appointment request, and the sync API's versions and digests.
A business unit without a source id (made in the office) gets `BU<row id>`, which the next
import keeps. A portal account goes with the first customer (by id) listing its email.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
from piccolo.table import Table

from portal import importer as fmt
from portal.auth.passwords import is_password_hash
from portal.db import tables as t


class ExportProblem(Exception):
    """The business cannot be exported (unknown host)."""


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


async def _rows(table: type[Table], tenant_id: int, *order: Any) -> list[dict[str, Any]]:
    query = table.select().where(getattr(table, "tenant") == tenant_id)  # noqa: B009
    for column in order:
        query = query.order_by(column)
    rows: list[dict[str, Any]] = await query.run()
    return rows


async def export_business(host: str) -> bytes:
    """The business at `host` as an import file (UTF-8 JSON, two-space indented)."""
    tenant = await t.Tenant.select().where(t.Tenant.host == host).first().run()
    if tenant is None:
        raise ExportProblem(f"no business has the host {host!r}")
    tid = tenant["id"]
    units = await _rows(t.BusinessUnit, tid, t.BusinessUnit.id)
    unit_ids = {
        r["row_id"]: r["external_id"]
        for r in await t.SyncRecord.select()
        .where(
            (t.SyncRecord.tenant == tid)
            & (t.SyncRecord.kind == "business_unit")
            & (t.SyncRecord.deleted == False)  # noqa: E712 (a column comparison)
        )
        .run()
    }
    unit_id = {u["id"]: unit_ids.get(u["id"], f"BU{u['id']}") for u in units}
    customers = await _rows(t.Customer, tid, t.Customer.external_id)
    customer_id = {c["id"]: c["external_id"] for c in customers}
    emails: dict[int, list[str]] = {}
    for e in await _rows(t.CustomerEmail, tid, t.CustomerEmail.id):
        emails.setdefault(e["customer"], []).append(e["email"])
    locations: dict[int, list[dict[str, Any]]] = {}
    location_id: dict[int, str] = {}
    for loc in await _rows(t.Location, tid, t.Location.external_id):
        locations.setdefault(loc["customer"], []).append(loc)
        location_id[loc["id"]] = loc["external_id"]
    accounts = {
        a["email"]: a
        for a in await _rows(t.PortalAccount, tid, t.PortalAccount.email)
        if a["confirmed_at"] is not None and is_password_hash(a["password_hash"])
    }
    placed: set[str] = set()

    def account_of(customer: dict[str, Any]) -> fmt.PortalAccountIn | None:
        for email in emails.get(customer["id"], []):
            if email in accounts and email not in placed:
                placed.add(email)
                return fmt.PortalAccountIn(
                    email=email, password_hash=accounts[email]["password_hash"]
                )
        return None

    jobs = await _rows(t.Job, tid, t.Job.number)
    job_number = {j["id"]: j["number"] for j in jobs}
    invoices = await _rows(t.Invoice, tid, t.Invoice.number)
    invoice_number = {i["id"]: i["number"] for i in invoices}
    lines: dict[int, list[dict[str, Any]]] = {}
    for line in await _rows(t.InvoiceLine, tid, t.InvoiceLine.position, t.InvoiceLine.id):
        lines.setdefault(line["invoice"], []).append(line)
    payments = await _rows(t.Payment, tid, t.Payment.id)
    allocations: dict[int, list[dict[str, Any]]] = {}
    for a in await _rows(t.PaymentAllocation, tid, t.PaymentAllocation.id):
        allocations.setdefault(a["payment"], []).append(a)
    refunds: dict[int, list[dict[str, Any]]] = {}
    for r in await _rows(t.PaymentRefund, tid, t.PaymentRefund.id):
        refunds.setdefault(r["payment"], []).append(r)
    paid: dict[int, int] = {}  # by invoice: succeeded payments less what was refunded
    for p in payments:
        if p["status"] == "succeeded":
            for a in allocations.get(p["id"], []):
                paid[a["invoice"]] = (
                    paid.get(a["invoice"], 0) + a["amount_cents"] - a["refunded_cents"]
                )
    documents = {
        d["invoice"]: bytes(d["pdf"])
        for d in await t.InvoiceDocument.select(t.InvoiceDocument.invoice, t.InvoiceDocument.pdf)
        .where(t.InvoiceDocument.tenant == tid)
        .run()
    }

    def balance_given(invoice: dict[str, Any]) -> int | None:
        """The invoice's balance when it is not what its total and payments make it (the
        business said less is owed), else None (the import works it out)."""
        if invoice["status"] == "void":
            return None
        worked_out = fmt.expected_balance(invoice["total_cents"], paid.get(invoice["id"], 0), None)
        return None if invoice["balance_cents"] == worked_out else invoice["balance_cents"]

    memberships = await _rows(t.Membership, tid, t.Membership.external_id)
    visits: dict[int, list[dict[str, Any]]] = {}
    for v in await _rows(t.Visit, tid, t.Visit.visit_date, t.Visit.id):
        visits.setdefault(v["membership"], []).append(v)
    staff = await _rows(t.StaffUser, tid, t.StaffUser.email)
    appointments = await _rows(t.Appointment, tid, t.Appointment.external_id)

    data = fmt.ImportFile(
        format="portal-import/1",
        business=fmt.Business(
            host=tenant["host"],
            name=tenant["name"],
            email=tenant["email"],
            phone=tenant["phone"],
            time_zone=tenant["time_zone"],
            currency=tenant["currency"],
            logo_png_base64=base64.b64encode(bytes(tenant["logo"])).decode()
            if tenant["logo"]
            else None,
            portal=fmt.PortalSettings(
                enabled=tenant["portal_enabled"],
                legal_accepted_by=tenant["legal_accepted_by"],
                legal_accepted_at=_utc(tenant["legal_accepted_at"]),
                scheduler_enabled=tenant["scheduler_enabled"],
                service_types=json.loads(tenant["service_types"]),
                memberships_enabled=tenant["memberships_enabled"],
                membership_statuses=sorted(json.loads(tenant["membership_statuses"])),
                recurring_service_message=tenant["recurring_service_message"],
                payment_account=tenant["payment_account_id"],
                payments_enabled=tenant["payments_enabled"],
            ),
        ),
        business_units=[
            fmt.BusinessUnitIn(
                id=unit_id[u["id"]],
                name=u["name"],
                invoices_downloadable=u["invoices_downloadable"],
            )
            for u in units
        ],
        staff=[
            fmt.StaffIn(
                email=s["email"],
                name=s["name"],
                role=s["role"],
                # No hash: invited, no password chosen yet (they use "Forgot your password?").
                password_hash=s["password_hash"] if is_password_hash(s["password_hash"]) else None,
                disabled_at=_utc(s["disabled_at"]),
            )
            for s in staff
        ],
        customers=[
            fmt.CustomerIn(
                id=c["external_id"],
                name=c["name"],
                kind=c["kind"],
                phone=c["phone"],
                emails=emails.get(c["id"], []),
                locations=[
                    fmt.LocationIn(
                        id=loc["external_id"],
                        name=loc["name"],
                        street=loc["street"],
                        city=loc["city"],
                        state=loc["state"],
                        zip=loc["zip"],
                    )
                    for loc in locations.get(c["id"], [])
                ],
                portal_account=account_of(c),
            )
            for c in customers
        ],
        jobs=[
            fmt.JobIn(
                number=j["number"],
                customer=customer_id[j["customer"]],
                location=location_id[j["location"]],
                business_unit=unit_id[j["business_unit"]],
                summary=j["summary"],
                status=j["status"],
                scheduled_start=_utc(j["scheduled_start"]),
                scheduled_end=_utc(j["scheduled_end"]),
                completed_at=_utc(j["completed_at"]),
            )
            for j in jobs
        ],
        invoices=[
            fmt.InvoiceIn(
                number=i["number"],
                job=job_number[i["job"]],
                date=i["invoice_date"],
                due_date=i["due_date"],
                summary=i["summary"],
                lines=[
                    fmt.LineIn(
                        description=line["description"],
                        quantity=line["quantity"],
                        unit_price_cents=line["unit_price_cents"],
                    )
                    for line in lines.get(i["id"], [])
                ],
                status=i["status"],
                balance_cents=balance_given(i),
                pdf_base64=base64.b64encode(documents[i["id"]]).decode()
                if i["id"] in documents
                else None,
            )
            for i in invoices
        ],
        payments=[
            fmt.PaymentIn(
                reference=p["gateway_ref"] or f"P{p['id']}",
                customer=customer_id[p["customer"]],
                paid_at=_utc(p["completed_at"] or p["created_at"]),  # type: ignore[arg-type]
                card_brand=p["card_brand"],
                card_last4=p["card_last4"],
                allocations=[
                    fmt.AllocationIn(
                        invoice=invoice_number[a["invoice"]],
                        amount_cents=a["amount_cents"],
                        refunded_cents=a["refunded_cents"],
                    )
                    for a in allocations.get(p["id"], [])
                ],
                status=p["status"],
                failure_reason=p["failure_reason"],
                refunded_at=_utc(p["refunded_at"]),
                refunds=[
                    fmt.RefundIn(
                        amount_cents=r["amount_cents"],
                        status=r["status"],
                        reason=r["reason"],
                        source=r["source"],
                        actor=r["actor"],
                        reference=r["gateway_refund_id"],
                        failure_reason=r["failure_reason"],
                        created_at=_utc(r["created_at"]),  # type: ignore[arg-type]
                        completed_at=_utc(r["completed_at"]),
                    )
                    for r in refunds.get(p["id"], [])
                ],
                payment_account=p["payment_account_id"],
            )
            for p in payments
            if allocations.get(p["id"])
        ],
        memberships=[
            fmt.MembershipIn(
                id=m["external_id"],
                customer=customer_id[m["customer"]],
                location=location_id[m["location"]],
                type=m["type_name"],
                status=m["status"],
                start_date=m["start_date"],
                end_date=m["end_date"],
                card=fmt.CardIn(brand=m["card_brand"], last4=m["card_last4"])
                if m["card_brand"] and len(m["card_last4"]) == 4
                else None,
                visits=[
                    fmt.VisitIn(
                        date=v["visit_date"],
                        window_start=v["window_start"],
                        window_end=v["window_end"],
                        description=v["description"],
                        status=v["status"],
                    )
                    for v in visits.get(m["id"], [])
                ],
            )
            for m in memberships
        ],
        appointments=[
            fmt.AppointmentIn(
                id=a["external_id"],
                customer=customer_id[a["customer"]],
                location=location_id[a["location"]],
                starts_at=_utc(a["starts_at"]),  # type: ignore[arg-type]
                ends_at=_utc(a["ends_at"]),  # type: ignore[arg-type]
                service_type=a["service_type"],
                status=a["status"],
                job=job_number[a["job"]] if a["job"] is not None else None,
            )
            for a in appointments
        ],
    )
    return msgspec.json.format(msgspec.json.encode(data), indent=2) + b"\n"
