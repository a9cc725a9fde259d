"""Health and metrics, answered on any host name (the bare base domain, a business's,
an address): `/healthz` (the process is up), `/readyz` (it can serve: database reachable,
schema current, and a `portal worker` heard from lately when this process sends no
email), `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from portal import metrics
from portal.db import health
from portal.db.outage import unavailable_in

# Routes the "being upgraded" gate and the tenant lookup leave alone (see app.py).
OPERATIONS = {"operations": True}
NO_STORE = {"Cache-Control": "no-store"}


@get("/healthz", include_in_schema=False, opt=OPERATIONS, media_type="application/json")
async def healthz() -> Response[dict[str, str]]:
    """The process is up and answering (no database work)."""
    return Response({"status": "ok"}, headers=NO_STORE)


@get("/readyz", include_in_schema=False, opt=OPERATIONS, media_type="application/json")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 when this process can serve pages, else 503 with what is missing."""
    settings = request.app.state.settings
    checks: dict[str, Any] = {}
    try:
        await health.ping()
        checks["database"] = "ok"
        gate: health.SchemaGate = request.app.state.schema_gate
        current = await gate.is_current()
        checks["schema"] = "ok" if current else f"{len(gate.pending)} migration(s) pending"
        if not settings.run_mail_worker:
            age = await health.last_heartbeat_age() if current else None
            if age is not None and age <= settings.worker_heartbeat_seconds:
                checks["worker"] = "ok"
            else:
                heard = "never" if age is None else f"{age:.0f} s ago"
                checks["worker"] = f"no portal worker heard from lately (last: {heard})"
    except Exception as exc:
        if not unavailable_in(exc):
            raise
        checks["database"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return Response(body, status_code=200 if ready else 503, headers=NO_STORE)


@get("/metrics", include_in_schema=False, opt=OPERATIONS)
async def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text exposition, for a scraper on the app's own port: 404 through the
    proxy (which always sets X-Forwarded-For) and with PORTAL_METRICS=0, as the counts are
    nobody else's business."""
    if not request.app.state.settings.metrics or "x-forwarded-for" in request.headers:
        from litestar.exceptions import NotFoundException

        raise NotFoundException()
    outbox = await health.outbox_summary()
    body, content_type = metrics.exposition(outbox, await health.payments_by_state())
    return Response(body, media_type=content_type, headers=NO_STORE)


ROUTES = [healthz, readyz, prometheus_metrics]
