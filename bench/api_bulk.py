"""Sync API bulk push: records a second through POST /api/v1/bulk, first push and unchanged
re-push, on SQLite and PostgreSQL (each in its own, new database, dropped afterwards).

    nice .venv/bin/python -m bench.api_bulk                # both engines
    nice .venv/bin/python -m bench.api_bulk --engines sqlite --customers 1000 --invoices 10000

The push is 1 business unit, C customers (with an email and a location each) and I
completed jobs with one invoice each (two lines), in NDJSON batches of 10,000 records sent
through the whole app in-process (routing, key check, rate limit, decoding, checks,
writes). Batches are built one at a time, so the bench's own memory is one batch's; the
peak resident size after each phase shows the server side is bounded by the batch too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 10_000


def records(customers: int, invoices: int) -> Iterator[dict[str, Any]]:
    yield {"record": "business_unit", "id": "PL", "name": "Plumbing"}
    for c in range(customers):
        yield {
            "record": "customer",
            "id": f"C{c}",
            "name": f"Customer {c}",
            "emails": [f"c{c}@bench.example"],
            "locations": [{"id": f"L{c}", "street": f"{c} Main St", "city": "Springfield"}],
            "updated_at": "2026-11-01T10:00:00Z",
        }
    for n in range(invoices):
        c = n % customers
        yield {
            "record": "job",
            "number": f"J{n}",
            "customer": f"C{c}",
            "location": f"L{c}",
            "business_unit": "PL",
            "status": "completed",
            "completed_at": "2026-10-01T15:00:00Z",
        }
        yield {
            "record": "invoice",
            "number": f"INV-{n}",
            "job": f"J{n}",
            "date": "2026-10-01",
            "lines": [
                {"description": "Service call", "unit_price_cents": 8900},
                {"description": "Labor (hours)", "quantity": 1.5, "unit_price_cents": 9800},
            ],
            "updated_at": "2026-11-01T10:00:00Z",
        }


def batches(customers: int, invoices: int) -> Iterator[bytes]:
    lines: list[bytes] = []
    for record in records(customers, invoices):
        lines.append(json.dumps(record).encode())
        if len(lines) == BATCH:
            yield b"\n".join(lines)
            lines = []
    if lines:
        yield b"\n".join(lines)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def push(client: httpx.AsyncClient, customers: int, invoices: int) -> tuple[int, float, dict]:
    total, counts = 0, {}
    started = time.perf_counter()
    for body in batches(customers, invoices):
        answer = await client.post("/bulk", content=body)
        answer.raise_for_status()
        result = answer.json()
        if result["errors"]:
            raise SystemExit(f"refused records: {result['errors'][:3]}")
        for key, value in result["counts"].items():
            counts[key] = counts.get(key, 0) + value
        total += sum(result["counts"].values())
    return total, time.perf_counter() - started, counts


async def run(url: str, label: str, customers: int, invoices: int) -> None:
    from portal.app import create_app
    from portal.config import Settings
    from portal.db import api_keys
    from portal.db import engine as db_engine
    from portal.db.migrate import migrate
    from portal.importer import import_file

    settings = Settings(
        database_url=url,
        secret_key="bench-secret",
        var_dir=Path(tempfile.mkdtemp(prefix="bench-api-")),
        run_mail_worker=False,
        cheap_password_hashing_for_tests=True,
        api_requests_per_minute=1_000_000,
    )
    app = create_app(settings)
    engine = db_engine.current_engine()
    await db_engine.start(engine)
    try:
        await migrate(quiet=True)
        tenant_id = await import_file(
            json.dumps(
                {"format": "portal-import/1", "business": {"host": "bulkbench", "name": "Bench"}}
            )
        )
        _, key = await api_keys.create(tenant_id, "bench", "write", "bench")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bulkbench.localhost/api/v1",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            timeout=600,
        ) as client:
            for phase in ("first push", "unchanged re-push"):
                total, seconds, counts = await push(client, customers, invoices)
                print(
                    f"{label:10} {phase:18} {total:7} records {seconds:7.2f} s "
                    f"{total / seconds:8.0f} records/s  peak RSS {peak_rss_mb():5.0f} MB  {counts}",
                    flush=True,
                )
    finally:
        await db_engine.stop(engine)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--invoices", type=int, default=10000)
    args = parser.parse_args()
    for kind in args.engines.split(","):
        if kind == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="bench-api-sqlite-"))
            await run(
                f"sqlite:///{folder / 'bench.sqlite3'}", "SQLite", args.customers, args.invoices
            )
            continue
        name = f"portal_bench_api_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(ADMIN_URL)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        try:
            await run(
                f"postgresql://postgres@127.0.0.1:5432/{name}",
                "PostgreSQL",
                args.customers,
                args.invoices,
            )
        finally:
            conn = await asyncpg.connect(ADMIN_URL)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
