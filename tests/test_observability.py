"""Sentry and OpenTelemetry, switched on by environment variables (issue 13.5): a real
server process sends its error event to a fake Sentry ingest and its spans to a fake OTLP
receiver (tiny HTTP servers here), with the request id as a tag and nothing private;
without the variables neither package is imported; with a variable set and its package
missing, start-up stops in one line (status 2)."""

# These tests drive real processes and wait for them on purpose.
# ruff: noqa: ASYNC220, ASYNC251

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli
import pytest

from portal.demo import DEMO_HOST
from portal.testing import CHEAP_HASHING_ENV, free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET_COOKIE = "portal_session=cookie-value-that-must-not-leave"
SECRET_TOKEN = "token-in-the-query-that-must-not-leave"
SECRET_AUTH = "Bearer authorization-that-must-not-leave"
SECRETS = ("cookie-value-that-must-not-leave", SECRET_TOKEN, "authorization-that-must-not")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Ingest:
    """A tiny HTTP server that keeps what is POSTed to it (decompressed) and answers 200."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)

    def __enter__(self) -> Ingest:
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    body = brotli.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                ingest.received.append(Received(self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, what, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [x for r in list(self.received) for x in what(r)]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"nothing arrived: {[(r.path, r.body[:200]) for r in self.received]}")


def sentry_items(received: Received, kind: str) -> list[dict[str, Any]]:
    """The items of type `kind` of a Sentry envelope (a header line, then item header and
    payload lines)."""
    if not received.path.endswith("/envelope/"):
        return []
    lines = received.body.split(b"\n")
    items, i = [], 1
    while i + 1 < len(lines):
        header = json.loads(lines[i])
        if header.get("type") == kind:
            items.append(json.loads(lines[i + 1]))
        i += 2
    return items


def sentry_events(received: Received) -> list[dict[str, Any]]:
    return sentry_items(received, "event")


def sentry_transactions(received: Received) -> list[dict[str, Any]]:
    return sentry_items(received, "transaction")


def spans(received: Received) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    if received.path != "/v1/traces":
        return []
    request = ExportTraceServiceRequest()
    request.ParseFromString(received.body)
    found = []
    for resource_spans in request.resource_spans:
        service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            found += [(service, span) for span in scope_spans.spans]
    return found


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PORTAL_SENTRY", "PORTAL_OTEL", "SENTRY_"))
    }
    return {
        **env,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": f"sqlite:///{tmp_path}/portal.sqlite3",
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_SECRET_KEY": "observability-test-secret",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def get(port: int, path: str, headers: dict[str, str] | None = None):
    """(status, headers) of a GET to the demo business, redirects not followed."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Host": f"{DEMO_HOST}.localhost", **(headers or {})},
    )
    try:
        with _OPENER.open(request, timeout=10) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers


@pytest.fixture(scope="module")
def sentry() -> Iterator[Ingest]:
    with Ingest() as ingest:
        yield ingest


@pytest.fixture(scope="module")
def otlp() -> Iterator[Ingest]:
    with Ingest() as ingest:
        yield ingest


@pytest.fixture(scope="module")
def server(tmp_path_factory, sentry: Ingest, otlp: Ingest) -> Iterator[int]:
    """uvicorn serving the portal (plus a route with a bug) with Sentry and OTel on."""
    tmp_path = tmp_path_factory.mktemp("observed")
    env = {
        **base_env(tmp_path),
        "PORTAL_SENTRY_DSN": f"http://publickey@127.0.0.1:{sentry.port}/1",
        "PORTAL_SENTRY_ENVIRONMENT": "observability-test",
        "PORTAL_SENTRY_TRACES_SAMPLE_RATE": "1",  # every request a Sentry transaction too
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}",
        "OTEL_SERVICE_NAME": "portal-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s, not 5 s
    }
    for step in (["migrate", "--quiet"], ["demo"]):
        assert run(env, "-m", "portal.cli", *step).returncode == 0
    port = free_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.support.failing_app:app", "--port", str(port),
         "--no-proxy-headers"],
        env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_error_reaches_sentry_with_the_request_id_and_nothing_private(
    server: int, sentry: Ingest
):
    # Answers, not errors: redirects to sign in, a 404.
    assert get(server, "/invoices")[0] == 303
    assert get(server, "/invoices/999999")[0] in (303, 404)
    assert get(server, "/no-such-page")[0] == 404
    private = {"Cookie": SECRET_COOKIE, "Authorization": SECRET_AUTH}
    status, headers = get(server, f"/boom?token={SECRET_TOKEN}", private)
    assert status == 500
    found = sentry.wait_for(sentry_events)
    assert len(found) == 1, [
        (
            e.get("logger"),
            e.get("message"),
            e.get("exception", {}).get("values", [{}])[-1].get("type"),
        )
        for e in found
    ]
    [event] = found
    assert event["exception"]["values"][-1]["type"] == "Bug"
    assert event["tags"]["request_id"] == headers["X-Request-ID"]
    assert event["tags"]["business"] == DEMO_HOST and event["environment"] == "observability-test"
    request = event.get("request", {})
    assert "cookies" not in request and "query_string" not in request and "data" not in request
    assert "user" not in event
    # At PORTAL_SENTRY_TRACES_SAMPLE_RATE=1 the request is a transaction too, as scrubbed.
    [traced] = sentry.wait_for(
        lambda r: [
            t
            for t in sentry_transactions(r)
            if t["tags"].get("request_id") == event["tags"]["request_id"]
        ]
    )
    assert "query_string" not in traced.get("request", {})
    raw = b"\n".join(r.body for r in sentry.received)
    for secret in SECRETS:
        assert secret.encode() not in raw, secret
    # Only the bug was sent: one event in all.
    time.sleep(1)
    assert len([e for r in sentry.received for e in sentry_events(r)]) == 1


def test_spans_reach_an_otlp_receiver_with_the_service_name_and_no_query(server: int, otlp: Ingest):
    assert get(server, f"/sign-in?token={SECRET_TOKEN}")[0] == 200
    assert get(server, "/healthz")[0] == 200  # not traced
    try:
        found = otlp.wait_for(lambda r: [s for s in spans(r) if s[1].name == "GET /sign-in"])
    except AssertionError:
        raise AssertionError({s.name for r in otlp.received for _, s in spans(r)}) from None
    time.sleep(0.5)  # whatever else the batch holds
    names = {span.name for r in otlp.received for _, span in spans(r)}
    assert not any("healthz" in name for name in names), names
    # Named by route, never by what a path holds (the earlier test's requests).
    assert "GET /invoices/{invoice_id:int}" in names and "GET (unrouted)" in names, names
    assert not any("999999" in name or "no-such-page" in name for name in names), names
    assert {service["service.name"] for service, _ in found} == {"portal-under-test"}
    raw = b"".join(r.body for r in otlp.received)
    assert SECRET_TOKEN.encode() not in raw


def test_without_the_variables_neither_package_is_imported(tmp_path: Path):
    env = base_env(tmp_path)
    assert run(env, "-m", "portal.cli", "migrate", "--quiet").returncode == 0
    probe = (
        "import sys, portal.asgi; "
        "print(sorted({m.split('.')[0] for m in sys.modules "
        "if m.startswith(('sentry_sdk', 'opentelemetry'))}))"
    )
    off = run(env, "-c", probe)
    assert off.returncode == 0 and off.stdout.strip().splitlines()[-1] == "[]", off.stderr
    on = run(
        {**env, "PORTAL_SENTRY_DSN": "http://k@127.0.0.1:9/1", "PORTAL_OTEL": "1"}, "-c", probe
    )
    assert on.stdout.strip().splitlines()[-1] == "['opentelemetry', 'sentry_sdk']", on.stderr


@pytest.mark.parametrize(
    ("variable", "module", "extra"),
    [
        ({"PORTAL_SENTRY_DSN": "http://k@127.0.0.1:9/1"}, "sentry_sdk", "sentry"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "opentelemetry.sdk", "otel"),
        ({"PORTAL_OTEL": "1"}, "opentelemetry.instrumentation.asgi", "otel"),
    ],
)
def test_a_missing_package_stops_start_up_in_one_line(
    tmp_path: Path, variable: dict, module: str, extra: str
):
    env = {**base_env(tmp_path), **variable}
    hide = f"import sys; sys.modules[{module!r}] = None; "
    for code in (
        hide + "from portal.cli import main; sys.exit(main(['serve']))",
        hide + "import portal.asgi",  # what uvicorn, gunicorn and granian import
    ):
        started = run(env, "-c", code)
        assert started.returncode == 2, started.stderr
        [line] = started.stderr.strip().splitlines()
        assert module in line and f"pip install 'portal[{extra}]'" in line, line


def test_a_bad_dsn_or_sample_rate_is_one_line(tmp_path: Path):
    env = base_env(tmp_path)
    bad_rate = run(
        {**env, "PORTAL_SENTRY_TRACES_SAMPLE_RATE": "2"}, "-m", "portal.cli", "migrate", "--check"
    )
    assert bad_rate.returncode == 2
    assert bad_rate.stderr.strip() == (
        "portal: PORTAL_SENTRY_TRACES_SAMPLE_RATE: '2' must be from 0 to 1"
    )
    bad_dsn = run({**env, "PORTAL_SENTRY_DSN": "not a dsn"}, "-c", "import portal.asgi")
    assert bad_dsn.returncode == 2
    [line] = bad_dsn.stderr.strip().splitlines()
    assert line.startswith("portal: PORTAL_SENTRY_DSN: not a Sentry DSN"), line


def test_what_leaves_for_sentry_is_scrubbed():
    """The scrubbing itself, on an event as Sentry's integrations build it (a request with
    cookies, a body, a query and private headers; a log breadcrumb with a client address)."""
    pytest.importorskip("sentry_sdk")
    from portal.observability import _scrubbed

    event = {
        "request": {
            "url": f"http://{DEMO_HOST}.localhost/reset?token={SECRET_TOKEN}",
            "query_string": f"token={SECRET_TOKEN}",
            "cookies": {"portal_session": "cookie-value-that-must-not-leave"},
            "data": {"new_password": "a password that must not leave"},
            "headers": {"Cookie": SECRET_COOKIE, "X-CSRFToken": "csrf", "User-Agent": "phone"},
        },
        "user": {"ip_address": "203.0.113.5"},
        "breadcrumbs": {
            "values": [{"category": "portal.events", "data": {"client": "203.0.113.5", "x": 1}}]
        },
    }
    text = json.dumps(_scrubbed(event))
    for secret in (*SECRETS, "a password that must not leave", "csrf", "203.0.113.5"):
        assert secret not in text, secret
    assert '"User-Agent": "phone"' in text and '"x": 1' in text
