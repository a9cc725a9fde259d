"""`portal.asgi:app`: the portal built from the environment, for any ASGI server.

    uvicorn portal.asgi:app --workers 4 --no-proxy-headers --timeout-keep-alive 75
    gunicorn portal.asgi:app -k uvicorn_worker.UvicornWorker -w 4 --forwarded-allow-ips ''
    granian --interface asgi --workers 4 portal.asgi:app

(`portal serve` runs uvicorn this way; docs/deploy.md, step 8, has the full commands: the
server must believe no forwarded header, the portal's PORTAL_TRUSTED_PROXIES decides.) A
setting that cannot be used stops the import with one line naming it, status 2.
"""

from __future__ import annotations

import gc
import sys

from portal import logs, observability
from portal.app import create_app
from portal.config import Settings, SettingsProblem


def build() -> object:
    """The app for this process's environment, templates compiled up front (Sentry and
    OpenTelemetry first, when settings switch them on)."""
    try:
        settings = Settings.from_env()
        logs.configure(settings)
        middleware = observability.start(settings)
    except SettingsProblem as problem:  # one line and status 2, as `portal` commands do
        print(f"portal: {problem}", file=sys.stderr)
        sys.exit(2)
    application = create_app(settings, middleware=middleware)
    application.state.renderer.compile_all()
    # Long-lived objects made at start-up (templates, routes) need no more garbage
    # collection; fewer, later collections keep rare long pauses out of request latency.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return application


app = build()
