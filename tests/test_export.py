"""`portal export --host H` writes the import format, and the round trip holds: export →
import into an empty database → export gives the same bytes (the demo business: staff,
customers with accounts, jobs, invoices, payments, memberships with visits, a logo)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from portal.db import tables as t
from portal.demo import DEMO_HOST, SANDBOX_ACCOUNT
from portal.importer import parse
from portal.testing import fresh_database


def portal(database_url: str, var_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "PORTAL_VAR_DIR": str(var_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", *args], capture_output=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    return result


PDF = b"%PDF-1.4\n% the business's own invoice\n%%EOF\n"


async def add_what_the_demo_lacks(tenant_id: int) -> None:
    """Records the demo has none of, each of which the export must carry: a void invoice, a
    pushed PDF, a balance the business set, payments pending, failed, refunded in part
    (with its refund) and in full, an appointment, an invited and a disabled staff member."""
    invoices = (
        await t.Invoice.select()
        .where((t.Invoice.tenant == tenant_id) & (t.Invoice.total_cents > 0))
        .order_by(t.Invoice.id)
        .run()
    )
    unpaid = [
        i
        for i in invoices
        if i["balance_cents"] == i["total_cents"]
        and not await t.PaymentAllocation.exists()
        .where(t.PaymentAllocation.invoice == i["id"])
        .run()
    ]
    void, with_pdf, set_balance, refunded, pending, failed = unpaid[:6]
    await (
        t.Invoice.update({t.Invoice.status: "void", t.Invoice.balance_cents: 0})
        .where(t.Invoice.id == void["id"])
        .run()
    )
    await t.InvoiceDocument.insert(
        t.InvoiceDocument(tenant=tenant_id, invoice=with_pdf["id"], pdf=PDF)
    ).run()
    await (
        t.Invoice.update({t.Invoice.balance_cents: 100})
        .where(t.Invoice.id == set_balance["id"])
        .run()
    )
    moment = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    for n, (invoice, status, refunded_cents) in enumerate(
        (
            (refunded, "succeeded", 500),
            (refunded, "succeeded", 1000),
            (pending, "pending", 0),
            (failed, "failed", 0),
        ),
        1,
    ):
        amount = 1000
        full = refunded_cents == amount
        row = await t.Payment.insert(
            t.Payment(
                tenant=tenant_id,
                customer=invoice["customer"],
                amount_cents=amount,
                status=status,
                idempotency_key=f"export-test-{n}",
                gateway_ref=f"EXP-{n}",
                card_brand="Visa",
                card_last4="4242",
                failure_reason="Card declined" if status == "failed" else "",
                payment_account_id=SANDBOX_ACCOUNT,
                created_at=moment,
                completed_at=moment if status != "pending" else None,
                refunded_at=moment + timedelta(days=1) if full else None,
                refunded_cents=refunded_cents,
            )
        ).run()
        await t.PaymentAllocation.insert(
            t.PaymentAllocation(
                tenant=tenant_id,
                payment=row[0]["id"],
                invoice=invoice["id"],
                amount_cents=amount,
                refunded_cents=refunded_cents,
            )
        ).run()
        if refunded_cents:
            await t.PaymentRefund.insert(
                t.PaymentRefund(
                    tenant=tenant_id,
                    payment=row[0]["id"],
                    amount_cents=refunded_cents,
                    reason="Overcharged",
                    status="succeeded",
                    actor="boss@example.org",
                    gateway_refund_id=f"re_{n}",
                    created_at=moment + timedelta(days=1),
                    completed_at=moment + timedelta(days=1),
                )
            ).run()
        if status == "succeeded":
            await (
                t.Invoice.update(
                    {t.Invoice.balance_cents: t.Invoice.balance_cents - amount + refunded_cents}
                )
                .where(t.Invoice.id == invoice["id"])
                .run()
            )
    job = await t.Job.select().where(t.Job.id == invoices[0]["job"]).first().run()
    await t.Appointment.insert(
        t.Appointment(
            tenant=tenant_id,
            customer=job["customer"],
            location=job["location"],
            external_id="APT-1",
            service_type="Furnace tune-up",
            starts_at=moment,
            ends_at=moment + timedelta(hours=2),
            job=job["id"],
        )
    ).run()
    await t.StaffUser.insert(
        t.StaffUser(tenant=tenant_id, email="invited@example.org", name="Ivy", password_hash=""),
        t.StaffUser(
            tenant=tenant_id,
            email="gone@example.org",
            name="Gus",
            password_hash=(
                await t.StaffUser.select(t.StaffUser.password_hash)
                .where(t.StaffUser.tenant == tenant_id)
                .first()
                .run()
            )["password_hash"],
            disabled_at=moment,
        ),
    ).run()


async def test_export_import_export_gives_the_same_file(app, demo, settings, tmp_path):
    await add_what_the_demo_lacks(demo)
    first = tmp_path / "first.json"
    portal(settings.database_url, tmp_path, "export", "--host", DEMO_HOST, "-o", str(first))
    data = parse(first.read_bytes())  # a valid import file, by the importer's own checks
    assert data.business.host == DEMO_HOST
    assert data.customers and data.jobs and data.invoices and data.payments
    assert data.memberships and any(m.visits for m in data.memberships)
    assert any(c.portal_account for c in data.customers)
    hashes = [s.password_hash for s in data.staff if s.email != "invited@example.org"]
    assert all(h and h.startswith("$argon2id$") for h in hashes)
    assert data.business.logo_png_base64
    # What the demo lacked comes out too.
    assert [i.status for i in data.invoices].count("void") == 1
    assert [base64.b64decode(i.pdf_base64) for i in data.invoices if i.pdf_base64] == [PDF]
    assert [i.balance_cents for i in data.invoices if i.balance_cents is not None] == [100]
    states = {p.reference: p for p in data.payments}
    assert states["EXP-1"].allocations[0].refunded_cents == 500
    assert [r.amount_cents for r in states["EXP-1"].refunds] == [500]
    assert states["EXP-2"].refunded_at is not None and states["EXP-2"].refunds
    assert (states["EXP-3"].status, states["EXP-4"].status) == ("pending", "failed")
    assert states["EXP-4"].failure_reason == "Card declined"
    assert states["EXP-3"].payment_account == SANDBOX_ACCOUNT  # settled through it later
    [appointment] = data.appointments
    assert appointment.id == "APT-1" and appointment.job
    staff = {s.email: s for s in data.staff}
    assert staff["invited@example.org"].password_hash is None
    assert staff["gone@example.org"].disabled_at is not None

    async with fresh_database(tmp_path) as empty:
        portal(empty, tmp_path, "migrate", "--quiet")
        portal(empty, tmp_path, "import", str(first))
        second = portal(empty, tmp_path, "export", "--host", DEMO_HOST).stdout
    assert second == first.read_bytes()


def test_export_of_an_unknown_host_says_so(app, settings, tmp_path):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "export", "--host", "nobody-here"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "no business has the host 'nobody-here'" in result.stderr
    assert result.stdout == ""  # nothing half-written
