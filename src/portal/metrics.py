"""Prometheus metrics (prometheus-client), served at `/metrics`.

Per process: request latency by route (a histogram), sign-in outcomes. Read from the
database when scraped, so the same in every process: outbox depth and its oldest email's
age, payments by state. With `portal serve --workers N` each scrape reaches one worker;
set `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multi-process mode) to sum them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "portal_request_duration_seconds",
    "Time to answer a request, by route and status class.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SIGN_INS = Counter(
    "portal_sign_ins",
    "Sign-in attempts by area (customer, office) and outcome (right, wrong, locked, busy).",
    ["area", "outcome"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "portal_outbox_pending_emails", "Emails waiting to be sent.", registry=REGISTRY
)
OUTBOX_OLDEST = Gauge(
    "portal_outbox_oldest_pending_seconds",
    "Age of the oldest email waiting to be sent (0 when none).",
    registry=REGISTRY,
)
PAYMENTS = Gauge("portal_payments", "Payments by state.", ["state"], registry=REGISTRY)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request (status as 2xx, 3xx, 4xx, 5xx: few label values)."""
    REQUEST_SECONDS.labels(method, route, f"{status // 100}xx").observe(seconds)


def sign_in(area: str, outcome: str) -> None:
    """Count one sign-in attempt."""
    SIGN_INS.labels(area, outcome).inc()


def exposition(outbox: dict[str, Any], payments: dict[str, int]) -> tuple[bytes, str]:
    """The metrics page: this process's counters plus the database's gauges (`outbox`:
    pending and oldest_seconds; `payments`: count by state, read by the caller)."""
    OUTBOX_DEPTH.set(outbox["pending"])
    OUTBOX_OLDEST.set(outbox["oldest_seconds"])
    for state, count in payments.items():
        PAYMENTS.labels(state).set(count)
    registry: Any = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
