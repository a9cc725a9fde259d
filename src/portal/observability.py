"""Sentry and OpenTelemetry, each switched on by settings and each optional.

- **Sentry** (`PORTAL_SENTRY_DSN`, extra `sentry`): `sentry_sdk.init` with the Litestar
  and logging integrations, before the app is built (the Litestar integration hooks into
  `Litestar.__init__`). An error a request ends in (the 500 page) or an error logged is
  sent with the request's id and business as tags. No personal data: `send_default_pii`
  off, and every event leaves without cookies, the Authorization and CSRF headers, the
  query string (reset and sign-in links carry their token there) and the request body
  (forms carry passwords). What the portal answers on purpose (a redirect to sign in, a
  closed portal, "being upgraded", a 4xx, an unreachable database's 503) is no error.
- **OpenTelemetry** (`OTEL_EXPORTER_OTLP_ENDPOINT` or `PORTAL_OTEL=1`, extra `otel`): a
  tracer provider with the service name, spans exported over OTLP/HTTP in batches (the
  exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables), and Litestar's
  OpenTelemetry middleware: a span per request named by its route, never with the query.

Without their settings nothing here imports either package (`start` returns at once), so a
portal without them starts as fast as before. A missing package is refused in one line by
`Settings.from_env` before any of this runs.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from portal import logs
from portal.app import is_reportable
from portal.config import Settings, SettingsProblem

log = logging.getLogger("portal")

# Headers never sent to Sentry (Sentry's own list drops cookies and Authorization too).
_PRIVATE_HEADERS = {"cookie", "authorization", "x-csrftoken", "x-api-key", "proxy-authorization"}
# Requests no one needs traced: health checks and scrapes, many a minute.
_UNTRACED = ["^/healthz", "^/readyz", "^/metrics"]


def start(settings: Settings, *, process: str = "web") -> list[Any]:
    """Switch on what the settings ask for in this process; returns the middleware to
    build the app with (empty when OpenTelemetry is off). `process`: "web" or "worker"."""
    if settings.sentry_dsn:
        _start_sentry(settings, process)
    if settings.otel:
        return _start_otel(settings)
    return []


# --- Sentry ---------------------------------------------------------------------------------


def _start_sentry(settings: Settings, process: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.litestar import LitestarIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.utils import BadDsn

    try:
        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            environment=settings.sentry_environment,
            release=f"portal@{_version()}",
            traces_sample_rate=settings.sentry_traces_sample_rate,
            send_default_pii=False,
            max_request_body_size="never",
            include_local_variables=False,  # a frame's locals may hold a password
            integrations=[
                LitestarIntegration(),
                LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            ],
            before_send=_before_send,
            before_send_transaction=_before_send_transaction,
        )
    except BadDsn as exc:
        raise SettingsProblem(f"PORTAL_SENTRY_DSN: not a Sentry DSN ({exc})") from None
    sentry_sdk.set_tag("process", process)


def _before_send(event: Any, hint: dict[str, Any]) -> Any:
    """Errors only, each once: a request's bug reaches Sentry from Litestar's hook and
    again as the 500 page's log line (Sentry's own deduplication misses it: the hook runs
    in another thread), so the exception is marked when first sent."""
    exc_info = hint.get("exc_info")
    if exc_info:
        exc = exc_info[1]
        if not is_reportable(exc) or getattr(exc, "_portal_sent_to_sentry", False):
            return None
        with contextlib.suppress(AttributeError, TypeError):
            exc._portal_sent_to_sentry = True
    return _scrubbed(event)


def _before_send_transaction(event: Any, hint: dict[str, Any]) -> Any:
    return _scrubbed(event)


def _scrubbed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with the request's id and business as tags and nothing private left."""
    tags = event.setdefault("tags", {})
    for key, value in logs.request_fields().items():
        if key in ("request_id", "business"):
            tags[key] = value
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("cookies", "data", "query_string", "env"):
            request.pop(key, None)
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0]
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                k: v for k, v in headers.items() if k.lower() not in _PRIVATE_HEADERS
            }
    event.pop("user", None)
    # Log lines before the error are breadcrumbs: keep what happened, not the client's address.
    breadcrumbs = event.get("breadcrumbs")
    crumbs = breadcrumbs.get("values", []) if isinstance(breadcrumbs, dict) else []
    for crumb in crumbs:
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict):
            for key in ("client", "peer", "to_addr"):
                data.pop(key, None)
    return event


# --- OpenTelemetry --------------------------------------------------------------------------


def _start_otel(settings: Settings) -> list[Any]:
    from litestar.plugins.opentelemetry import OpenTelemetryConfig
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    config = OpenTelemetryConfig(
        tracer_provider=provider,
        exclude=_UNTRACED,
        exclude_spans=["receive", "send"],
        server_request_hook_handler=_without_query,
        scope_span_details_extractor=_unrouted,
    )
    # Litestar runs its OpenTelemetry middleware around the whole app, before routing: the
    # span starts as `GET (unrouted)` and is named by its route once it is routed.
    return [config.middleware, _name_by_route]


def _unrouted(scope: Any) -> tuple[str, dict[str, str]]:
    """A span's first name: its method, not its path (a few names, never the ids or
    whatever else a path holds); `_name_by_route` names it by its route."""
    return f"{scope.get('method', '')} (unrouted)".strip(), {}


def _name_by_route(app: Any) -> Any:
    """Middleware (inside routing): the request's span is named by its route, as in the
    request log and the metrics: `GET /invoices/{invoice_id:int}`."""
    from opentelemetry import trace
    from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        span = trace.get_current_span()
        paths = getattr(scope.get("route_handler"), "paths", None)
        if paths and span.is_recording():
            route = next(iter(paths))
            span.update_name(f"{scope.get('method', '')} {route}")
            span.set_attribute(HTTP_ROUTE, route)
        await app(scope, receive, send)

    return middleware


def _without_query(span: Any, scope: Any) -> None:
    """No query string on a span: a reset or sign-in link carries its token there."""
    if not span.is_recording():
        return
    path = scope.get("path", "")
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.target", "url.path"):
        if key in attributes:
            span.set_attribute(key, path)
    for key in ("http.url", "url.full"):
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("portal")
    except PackageNotFoundError:
        return "unknown"
