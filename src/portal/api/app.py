"""The sync API (/api/v1/) as its own Litestar app, mounted by `portal.app.create_app`: its
own OpenAPI 3.1 schema (the API alone, at /api/v1/openapi.json), its own errors (RFC 9457
problem details, never an HTML page), no cookies and no CSRF (a key, not a browser).

Handlers parse, call db/sync.py or db/events.py, and answer. docs/api.md shows each with
curl.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
    Server,
)
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from portal.api import sync
from portal.api.records import (
    AppointmentRecord,
    BulkLine,
    BusinessUnitRecord,
    CustomerRecord,
    DeleteRecord,
    InvoiceRecord,
    JobRecord,
    Kind,
    MembershipRecord,
    Record,
    source_id,
)
from portal.auth import throttle
from portal.config import Settings
from portal.db import api_keys, events, queries
from portal.db.outage import unavailable_in
from portal.importer import friendly_path
from portal.tenancy import host_label
from portal.web import App

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://portal.example/problems/"  # stable names for each kind of problem
MAX_RECORD_BYTES = 1_000_000  # one record's body (an invoice's PDF included)
MAX_BULK_BYTES = 20_000_000  # one NDJSON batch of at most 10,000 records


class Problem(Exception):
    """An RFC 9457 problem: `kind` names it (`type` is PROBLEM_BASE + kind)."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response[Any]:
        body = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            **({"detail": self.detail} if self.detail else {}),
            **self.extra,
        }
        return Response(
            msgspec.json.encode(body),
            status_code=self.status,
            media_type=PROBLEM,
            headers=self.headers,
        )


class Caller(msgspec.Struct):
    """Who is calling: the business (from the host) and the key (from the Authorization
    header)."""

    tenant_id: int
    key_id: int
    key_name: str
    scope: str


# --- authentication, scope and rate limit ---------------------------------------------------


async def _caller(request: Request[Any, Any, Any]) -> Caller:
    """Dependency: the business of the host and the live key of that business, counted
    against the key's rate limit (kept in the database, so every process shares it)."""
    settings: Settings = request.app.state.settings
    label = host_label(request.headers.get("host", ""), settings.base_domain)
    tenant = await queries.tenant_by_host(label) if label else None
    if tenant is None:
        raise Problem(404, "unknown-business", "No business here")
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    found = (
        await api_keys.authenticate(tenant["id"], key.strip())
        if scheme.lower() == "bearer"
        else None
    )
    if found is None:
        raise Problem(
            401,
            "unauthorized",
            "A valid API key is needed",
            "Send `Authorization: Bearer <key>` with a live key of this business "
            "(Office › API keys).",
            headers={"WWW-Authenticate": 'Bearer realm="portal"'},
        )
    limit = throttle.Limit(
        f"api-key:{found['id']}",
        settings.api_requests_per_minute,
        timedelta(minutes=1),
    )
    counted = await throttle.count(tenant["id"], [limit])
    if counted.wait is not None:
        raise Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"This key may make {settings.api_requests_per_minute} requests a minute; "
            f"try again in {counted.wait} seconds.",
            headers={"Retry-After": str(counted.wait)},
        )
    return Caller(tenant["id"], found["id"], found["name"], found["scope"])


CallerDep = NamedDependency[Caller]


def _writer(caller: CallerDep) -> Caller:
    if caller.scope != "write":
        raise Problem(
            403,
            "read-only-key",
            "This key may only read",
            "Pushing records needs a key made with “Read and write”.",
        )
    return caller


# --- answers --------------------------------------------------------------------------------


class RecordResult(msgspec.Struct):
    """What became of a pushed record."""

    record: str
    id: str
    result: str  # created | updated | unchanged | stale | deleted


class BulkError(msgspec.Struct):
    """A refused record of a batch: its line, what it is, which field and why."""

    line: int
    record: str
    id: str
    field: str
    detail: str


class BulkResult(msgspec.Struct):
    """A batch's counts by result, and every refused record (the others were written)."""

    counts: dict[str, int]
    errors: list[BulkError]


class Event(msgspec.Struct):
    id: int
    type: str
    created_at: datetime
    data: dict[str, Any]


class EventPage(msgspec.Struct):
    """Events after the cursor, oldest first; `next_cursor` is the `after` for the next page
    (the same cursor again when there was nothing new)."""

    data: list[Event]
    next_cursor: int


def _refused(outcome: sync.Outcome) -> Problem:
    """A refused single record: 409 when other records (payments, jobs) hold it, else 422."""
    conflict = outcome.conflict
    where = f"{outcome.kind} {outcome.id}" + (f".{outcome.field}" if outcome.field else "")
    return Problem(
        409 if conflict else 422,
        "record-in-use" if conflict else "invalid-record",
        "The record was refused; nothing was stored",
        f"{where}: {outcome.problem}",
        errors=[
            {
                "record": outcome.kind,
                "id": outcome.id,
                "field": outcome.field,
                "detail": outcome.problem,
            }
        ],
    )


async def _put(caller: Caller, record: Record, path_id: str) -> RecordResult:
    if source_id(record) != path_id:
        raise Problem(
            422,
            "invalid-record",
            "The record was refused; nothing was stored",
            f"the id in the body ({source_id(record)!r}) is not the one in the URL ({path_id!r})",
        )
    outcome = await sync.push_one(caller.tenant_id, record)
    if outcome.result == "error":
        raise _refused(outcome)
    return RecordResult(outcome.kind, outcome.id, outcome.result)


WriterDep = NamedDependency[Caller]
DEPS = {"caller": Provide(_caller), "writer": Provide(_writer, sync_to_thread=False)}


@put("/business-units/{unit_id:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_business_unit(
    writer: WriterDep, unit_id: FromPath[str], data: JSONBody[BusinessUnitRecord]
) -> RecordResult:
    """Create or update a business unit (trade division) by the source's id."""
    return await _put(writer, data, unit_id)


@put("/customers/{customer_id:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_customer(
    writer: WriterDep, customer_id: FromPath[str], data: JSONBody[CustomerRecord]
) -> RecordResult:
    """Create or update a customer with its emails and locations by the source's id."""
    return await _put(writer, data, customer_id)


@put("/jobs/{number:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_job(
    writer: WriterDep, number: FromPath[str], data: JSONBody[JobRecord]
) -> RecordResult:
    """Create or update a job by its number."""
    return await _put(writer, data, number)


@put("/invoices/{number:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_invoice(
    writer: WriterDep, number: FromPath[str], data: JSONBody[InvoiceRecord]
) -> RecordResult:
    """Create or update an invoice with its lines by its number; `"status": "void"` voids
    it (409 while a payment is on it: refund first)."""
    return await _put(writer, data, number)


@put("/memberships/{membership_id:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_membership(
    writer: WriterDep, membership_id: FromPath[str], data: JSONBody[MembershipRecord]
) -> RecordResult:
    """Create or update a membership or contract with its visits by the source's id."""
    return await _put(writer, data, membership_id)


@put("/appointments/{appointment_id:str}", request_max_body_size=MAX_RECORD_BYTES, tags=["records"])
async def put_appointment(
    writer: WriterDep, appointment_id: FromPath[str], data: JSONBody[AppointmentRecord]
) -> RecordResult:
    """Create or update an appointment (a booked time window at a customer's location,
    optionally for a job and answering an appointment request) by the source's id. The
    customer sees upcoming ones on the Scheduler tab."""
    return await _put(writer, data, appointment_id)


async def _delete(
    writer: Caller, kind: Kind, record_id: str, updated_at: datetime | None, version: int | None
) -> RecordResult:
    record = DeleteRecord(kind, record_id, updated_at=updated_at, version=version)
    outcome = await sync.push_one(writer.tenant_id, record)
    if outcome.result == "error":
        raise _refused(outcome)
    return RecordResult(outcome.kind, outcome.id, outcome.result)


def _delete_handler(path: str, kind: Kind, what: str) -> Any:
    @delete(f"/{path}/{{record_id:str}}", status_code=200, tags=["records"], name=f"delete-{path}")
    async def remove(
        writer: WriterDep,
        record_id: FromPath[str],
        updated_at: FromQuery[datetime | None] = None,
        version: FromQuery[int | None] = None,
    ) -> RecordResult:
        return await _delete(writer, kind, record_id, updated_at, version)

    remove.fn.__doc__ = (
        f"Delete {what} by the source's id (`updated_at`/`version`: an older delete than the "
        "last push changes nothing). Refused (409) while payments depend on it: money "
        "records stay for the books."
    )
    remove.operation_id = f"delete_{kind}"
    return remove


DELETES = [
    _delete_handler("business-units", "business_unit", "a business unit"),
    _delete_handler("customers", "customer", "a customer"),
    _delete_handler("jobs", "job", "a job"),
    _delete_handler("invoices", "invoice", "an invoice"),
    _delete_handler("memberships", "membership", "a membership or contract"),
    _delete_handler("appointments", "appointment", "an appointment"),
]


@dataclass
class BulkOperation(Operation):
    """The bulk endpoint's body in the schema: NDJSON, which Litestar does not decode."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="One record a line (JSON), each naming itself in `record`: "
            "business_unit, customer, job, invoice, membership, appointment or delete; "
            "at most 10,000.",
            content={
                "application/x-ndjson": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
            },
        )


@post(
    "/bulk",
    status_code=200,
    request_max_body_size=MAX_BULK_BYTES,
    tags=["records"],
    summary="Push a batch of records (NDJSON)",
    operation_class=BulkOperation,
)
async def bulk(
    writer: WriterDep,
    request: Request[Any, Any, Any],
) -> BulkResult:
    """Upsert or delete up to 10,000 records, one JSON object a line, in one transaction.
    Each line's `record` says what it is (business_unit, customer, job, invoice,
    membership, appointment, delete). A refused record is listed with its line, field and reason; the
    others are written."""
    body = await request.body()
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        raise Problem(422, "empty-batch", "The batch has no records")
    if len(lines) > sync.MAX_BATCH:
        raise Problem(
            413,
            "batch-too-large",
            "The batch is too large",
            f"at most {sync.MAX_BATCH} records a batch; this has {len(lines)}",
        )
    records: list[Record] = []
    refused: list[BulkError] = []
    positions: list[int] = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(_DECODER.decode(line))
            positions.append(n)
        except msgspec.DecodeError as exc:  # ValidationError is one too
            where, _, why = friendly_path(str(exc)).partition(": ")
            if not isinstance(exc, msgspec.ValidationError):
                where, why = "", f"not valid JSON: {exc}"
            refused.append(
                BulkError(
                    n,
                    _peek(line, "record"),
                    _peek(line, "id", "number"),
                    where if why else "",
                    why or where,
                )
            )
    summary = await sync.push(writer.tenant_id, records)
    counts = dict(summary.counts)
    if refused:
        counts["error"] = counts.get("error", 0) + len(refused)
    for outcome in summary.errors:
        refused.append(
            BulkError(
                positions[outcome.index], outcome.kind, outcome.id, outcome.field, outcome.problem
            )
        )
    refused.sort(key=lambda e: e.line)
    return BulkResult(counts, refused)


_DECODER = msgspec.json.Decoder(BulkLine)


def _peek(line: bytes, *names: str) -> str:
    """A field of a line that failed to decode as a record, for its error entry."""
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return ""
    if not isinstance(value, dict):
        return ""
    for name in names:
        field = value.get(name)
        if isinstance(field, str):
            return field[:64]
    return ""


@get("/events", tags=["events"])
async def events_feed(
    caller: CallerDep,
    after: Annotated[int, Parameter(ge=0, le=2**62, description="the last event id you have")] = 0,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> EventPage:
    """The business's events (payments, bookings, cards, accounts, invoice views) after
    `after`, oldest first. Poll with the `next_cursor` you were given."""
    rows = await events.after(caller.tenant_id, after, limit)
    page = [Event(r["id"], r["type"], r["created_at"], r["data"]) for r in rows]
    return EventPage(page, page[-1].id if page else after)


# --- errors ---------------------------------------------------------------------------------


def _problem(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return exc.response()


def _invalid(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's own decoding of a record's body: the field it names, in a problem."""
    errors = []
    for entry in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(entry, dict):
            errors.append(
                {"field": str(entry.get("key", "")), "detail": str(entry.get("message", ""))}
            )
    detail = str(exc.detail)
    message = "; ".join(f"{e['field']}: {e['detail']}" for e in errors) or detail
    return Problem(
        400 if "malformed" in detail else 422,
        "invalid-record",
        "The record was refused; nothing was stored",
        message,
        errors=errors,
    ).response()


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 413:
        return Problem(
            413, "body-too-large", "The request body is too large", str(exc.detail)
        ).response()
    if exc.status_code == 400:  # the body did not decode as JSON at all
        return Problem(
            400, "malformed-body", "The body is not valid JSON; nothing was stored", str(exc.detail)
        ).response()
    if isinstance(exc, NotFoundException):
        return Problem(404, "not-found", "Not found").response()
    if exc.status_code >= 500:
        return _crash(request, exc)
    return Problem(exc.status_code, "bad-request", str(exc.detail)).response()


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if unavailable_in(exc):
        return Problem(
            503,
            "unavailable",
            "The database is out of reach; try again",
            headers={"Retry-After": "5"},
        ).response()
    import logging

    logging.getLogger("portal").exception("API error on %s", request.url.path, exc_info=exc)
    return Problem(500, "server-error", "Something went wrong on our side").response()


def create_api(settings: Settings) -> Litestar:
    """The API app (mounted at /api/v1 by create_app)."""
    return App(
        route_handlers=[
            put_business_unit,
            put_customer,
            put_job,
            put_invoice,
            put_membership,
            put_appointment,
            *DELETES,
            bulk,
            events_feed,
        ],
        dependencies=DEPS,
        state=State({"settings": settings}),
        exception_handlers={
            Problem: _problem,
            ValidationException: _invalid,
            HTTPException: _http,
            Exception: _crash,
        },
        openapi_config=OpenAPIConfig(
            title="Customer Portal sync API",
            version="1",
            description="Push the system of record's records in; read the events out. "
            "Errors are RFC 9457 problem details.",
            path="/",
            render_plugins=[JsonRenderPlugin(path="/openapi.json")],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key from Office › API keys",
                    )
                }
            ),
            security=[{"apiKey": []}],
            servers=[Server(url="/api/v1")],
        ),
        request_max_body_size=MAX_BULK_BYTES,
        # Logging is the portal's (portal/logs.py): Litestar's default would reconfigure it.
        logging_config=None,
        debug=False,
    )
