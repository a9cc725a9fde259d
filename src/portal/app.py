"""`create_app(settings)`: the one place that wires the portal together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar, Request, Response, Router, asgi
from litestar.config.compression import CompressionConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from portal import logs, metrics, payments
from portal.api.app import create_api
from portal.auth import passwords
from portal.auth.context import resolve_context, resolve_tenant
from portal.auth.guards import (
    PortalClosed,
    SignInRequired,
    portal_must_be_open,
    require_customer,
    require_staff,
)
from portal.config import Settings
from portal.db import engine as db_engine
from portal.db.health import SchemaGate
from portal.db.outage import OUTAGE, RETRY_AFTER_SECONDS, unavailable_in
from portal.forms import MAX_ID
from portal.handlers import (
    access,
    account,
    customer,
    health,
    invoices,
    memberships,
    office,
    office_activity,
    office_api_keys,
    office_bookings,
    office_csv,
    office_customers,
    office_emails,
    office_money,
    office_notifications,
    office_settings,
    office_staff,
    office_webhooks,
    passkeys,
    public,
    scheduler,
)
from portal.payments.gateway import is_test_mode
from portal.security import head_as_get, nonce_of, with_security_headers
from portal.tenancy import BareDomain, MovedPermanently
from portal.web import HTML, VARY, App, Renderer, csrf_token, see_other
from portal.worker import run_forever

log = logging.getLogger("portal")


def create_app(settings: Settings, *, middleware: Sequence[Any] = ()) -> PortalApp:
    """Build the Litestar app for `settings` (binds the tables to its database);
    `middleware`: more ASGI middleware (OpenTelemetry's, from `portal.observability`)."""
    engine = db_engine.use_settings(settings)
    passwords.use_cost(cheap_for_tests=settings.cheap_password_hashing_for_tests)
    renderer = Renderer()
    passwords.LANE.configure(threads=settings.hash_threads, max_wait=settings.hash_max_wait_seconds)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await db_engine.start(engine)
        with contextlib.suppress(Exception):  # unreachable now: the gate asks again later
            await app.state.schema_gate.is_current()
        stop = asyncio.Event()
        worker = (
            asyncio.create_task(run_forever(settings, stop)) if settings.run_mail_worker else None
        )
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await asyncio.wait([worker], timeout=10)
            await db_engine.stop(engine)

    # Every customer page, sign-in included, is closed while the portal is not open.
    customer_area = Router(
        path="/",
        route_handlers=[
            *account.ROUTES,
            *access.ROUTES,
            *passkeys.ROUTES,
            *customer.ROUTES,
            *invoices.ROUTES,
            *memberships.ROUTES,
            *scheduler.ROUTES,
        ],
        guards=[portal_must_be_open],
    )
    # Office pages stay reachable while the customer portal is closed (staff open it there).
    office_area = Router(
        path="/office",
        route_handlers=[
            *office.ROUTES,
            *office_settings.ROUTES,
            *office_money.ROUTES,
            *office_bookings.ROUTES,
            *office_customers.ROUTES,
            *office_notifications.ROUTES,
            *office_staff.ROUTES,
            *office_emails.ROUTES,
            *office_api_keys.ROUTES,
            *office_csv.ROUTES,
            *office_webhooks.ROUTES,
            *office_activity.ROUTES,
        ],
    )
    # The sync API is its own app: its own schema, problem-details errors, no CSRF or cookies.
    api = create_api(settings)

    @asgi("/api/v1", is_mount=True, copy_scope=True)
    async def sync_api(scope: Scope, receive: Receive, send: Send) -> None:
        await api(scope, receive, send)

    app = PortalApp(
        route_handlers=[
            sync_api,
            *health.ROUTES,
            *public.ROUTES,
            *payments.ROUTES,
            customer_area,
            office_area,
        ],
        dependencies={
            "context": Provide(resolve_context),
            "tenant": Provide(resolve_tenant),
            "viewer": Provide(require_customer),
            "staff": Provide(require_staff),
        },
        lifespan=[lifespan],
        middleware=list(middleware),
        before_request=_ids_in_range,
        guards=[_schema_must_be_current],
        # Logging is the portal's own (portal/logs.py), not Litestar's default set-up.
        logging_config=None,
        state=State(
            {
                "settings": settings,
                "renderer": renderer,
                "schema_gate": SchemaGate(),
                "inline_logos": {},  # pages.inline_logo: (business, version) -> data: URL
                "template_globals": {
                    "base_domain": settings.base_domain,
                    "test_mode": is_test_mode,
                },
            }
        ),
        exception_handlers={
            BeingUpgraded: _being_upgraded,
            BareDomain: _bare_domain,
            MovedPermanently: _moved_permanently,
            PortalClosed: _portal_closed,
            SignInRequired: _sign_in_required,
            NotFoundException: _not_found,
            PermissionDeniedException: _forbidden,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="portal_csrf",
            cookie_secure=settings.cookies_secure,
            cookie_httponly=True,
            cookie_samesite="lax",
            header_name="x-csrftoken",
            exclude=["/api/v1"],  # key-authenticated, never a browser's cookie
        ),
        # Brotli quality 3: a 25-row page 10 % larger than at quality 5 for a third of
        # the time (docs/performance.md); gzip at its usual level for clients without.
        # Fragments are compressed too (minimum size 256 bytes).
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=256,
            brotli_quality=3,
            gzip_compress_level=6,
            # Static files come compressed at start-up; images gain nothing.
            exclude_opt_key=public.ALREADY_COMPRESSED_KEY,
        ),
        # No /schema pages: they would publish every route and load scripts from CDNs
        # that the CSP (rightly) refuses.
        openapi_config=None,
        debug=False,
    )
    app.https = settings.cookies_secure
    return app


class BeingUpgraded(Exception):
    """Migrations are pending: no page is served on a schema the code does not match."""


# Exceptions that are answers, not errors: each has its page or redirect above.
_ANSWERS: tuple[type[BaseException], ...] = (
    BeingUpgraded,
    BareDomain,
    MovedPermanently,
    PortalClosed,
    SignInRequired,
)


def is_reportable(exc: BaseException) -> bool:
    """Whether an exception a request ended in is an error worth reporting (to Sentry):
    the 500 page, never a redirect to sign in, a closed portal, "being upgraded", a moved
    host, a 4xx, or the database out of reach (its 503 is logged once per incident)."""
    if isinstance(exc, _ANSWERS):
        return False
    if isinstance(exc, HTTPException):
        return exc.status_code >= 500
    return not unavailable_in(exc)


async def _schema_must_be_current(connection: Any, handler: Any) -> None:
    """The first guard of every route but the health ones: while migrations are pending,
    every page is a 503 "being upgraded" (never a 500 from a missing table)."""
    gate = connection.app.state.schema_gate
    if not handler.opt.get("operations") and not await gate.is_current():
        raise BeingUpgraded()


async def _ids_in_range(request: Request[Any, Any, Any]) -> None:
    """An id in a URL beyond the database's integer range names no record: a 404 like any
    missing id, never a database error (PostgreSQL refuses such a parameter)."""
    for value in request.path_params.values():
        if isinstance(value, int) and not 0 <= value <= MAX_ID:
            raise NotFoundException()


def request_id_of(scope: Scope, trusted: bool) -> str:
    """The request's id: a proxy's X-Request-ID when the proxy is trusted (so nginx's log
    and ours share it), else a new one."""
    if trusted:
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id" and 0 < len(value) <= 64 and value.isascii():
                return value.decode()
    return secrets.token_hex(8)


class PortalApp(App):
    """Litestar, plus what must wrap every response, routing errors included:
    security headers with a per-request CSP nonce, and HEAD answered like GET."""

    https: bool = False

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        # An HTTP request: its scope and send are the HTTP kinds.
        http_scope, http_send = cast(Scope, scope), cast(Send, send)
        started = time.perf_counter()
        settings = self.state.settings
        peer = (http_scope.get("client") or ("", 0))[0]
        trusted = bool(settings.trusted_proxies) and _is_trusted(peer, settings)
        request_id = request_id_of(http_scope, trusted)
        http_scope["portal_request_id"] = request_id  # type: ignore[typeddict-unknown-key]
        status = 500
        http_scope, http_send = head_as_get(http_scope, http_send)
        inner_send = with_security_headers(http_scope, http_send, self.https)

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(message.get("headers") or ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await inner_send(message)

        log_context = logs.request_started(request_id, logs.host_of(http_scope))
        try:
            async with db_engine.one_connection_per_request():
                await super().__call__(http_scope, receive, send_with_id)
        finally:
            logs.request_finished(log_context)
            logs.request_line(http_scope, status, started)
            handler = http_scope.get("route_handler")
            route = next(iter(handler.paths)) if handler is not None else "(unrouted)"
            method = http_scope["method"] if http_scope["type"] == ScopeType.HTTP else ""
            metrics.observe_request(method, route, status, time.perf_counter() - started)


def _page(
    request: Request[Any, Any, Any],
    template: str,
    status: int,
    context: dict[str, Any] | None = None,
) -> Response[Any]:
    """An error page: always a whole document (htmx swaps it too, so it must make sense alone)."""
    renderer: Renderer = request.app.state.renderer
    body = renderer.render_string(
        template,
        {
            "request": request,
            "csrf_token": csrf_token(request),
            "csp_nonce": nonce_of(request.scope),
            "request_id": request.scope.get("portal_request_id", ""),
            **(context or {}),
        },
    )
    return Response(body, status_code=status, media_type=HTML, headers={"Vary": VARY})


def _being_upgraded(request: Request[Any, Any, Any], exc: BeingUpgraded) -> Response[Any]:
    response = _page(request, "errors/upgrading.html", HTTP_503_SERVICE_UNAVAILABLE)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _is_trusted(peer: str, settings: Settings) -> bool:
    from portal.forwarded import client_address

    # The peer is trusted when reading the header would move past it.
    return client_address(peer, ["0.0.0.0"], settings.trusted_proxies) != peer


def _moved_permanently(request: Request[Any, Any, Any], exc: MovedPermanently) -> Response[Any]:
    """A business's former host name: 301 to its address now (docs/deploy.md)."""
    return Response("", status_code=301, headers={"Location": exc.location})


def _bare_domain(request: Request[Any, Any, Any], exc: BareDomain) -> Response[Any]:
    if request.url.path == "/":
        return _page(request, "public/bare_domain.html", 200)
    return _page(request, "errors/404.html", 404)


def _portal_closed(request: Request[Any, Any, Any], exc: PortalClosed) -> Response[Any]:
    return _page(request, "public/portal_closed.html", 503, {"tenant": exc.tenant})


def _sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    """htmx gets `HX-Redirect` (a whole page load); a plain request a 303."""
    return see_other(request, exc.location)


def _not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    return _page(request, "errors/404.html", 404)


def _forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    csrf = "CSRF" in str(exc.detail)
    return _page(request, "errors/403.html", 403, {"csrf": csrf})


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        return _server_error(request, exc)
    return _page(
        request,
        "errors/4xx.html",
        exc.status_code,
        {"status": exc.status_code, "detail": exc.detail},
    )


def _server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if unavailable_in(exc):
        # Nothing was done: the database is out of reach for now (db/outage.py). The
        # incident is logged once, when it starts and when it ends, not per request.
        OUTAGE.note(exc)
        response = _page(request, "errors/503.html", HTTP_503_SERVICE_UNAVAILABLE)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    log.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request.scope.get("portal_request_id", "")},
    )
    return _page(request, "errors/500.html", HTTP_500_INTERNAL_SERVER_ERROR)
