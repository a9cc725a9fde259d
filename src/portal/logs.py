"""Logs: one JSON object per line (or plain text), and one line per request.

Every line has `time`, `level`, `logger` and `message`; a request's line adds
`request_id`, `host`, `method`, `route`, `status` and `duration_ms`. Security and money
events (sign-ins, lockouts, password and staff changes, passkeys, payment state changes,
failed emails) are log lines with an `event` field, so an operator can filter on it:

    logs.event("password.changed", "password changed", actor="customer:12", area="customer")

Made during a request, an event carries that request's `request_id`, `host` (the Host
header) and `business` (the business's host name) without its caller passing them
(`request_started`, `bind`). An event never carries a password, a token or card data: a
field whose name says it would (`password`, `token`, `secret`, `card_number`…) is left out.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has: whatever else a call passed in `extra` goes in the line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

access_log = logging.getLogger("portal.access")
events_log = logging.getLogger("portal.events")


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`level logger: message key=value …` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        text = f"{text} {extras}" if extras else text
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(settings: Any) -> None:
    """Send every log line to standard error in the settings' format (once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    # uvicorn's own lines go the same way (its access log is off: ours has more in it).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


# The request being answered: its id, Host header and (once known) business. One dict per
# request, set by the app before anything runs and filled in by `bind`: a dependency that
# Litestar resolves in a task of its own shares the same dict, so what it binds is seen.
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "portal_log_request", default=None
)
# Never in an event line, whatever a caller passes.
_SECRET_WORDS = ("password", "token", "secret", "card_number", "cvc")


def request_started(request_id: str, host: str) -> contextvars.Token[dict[str, Any] | None]:
    """Events from here on (in this task and the tasks it starts) carry the request's id
    and host; `request_finished(token)` ends that."""
    return _REQUEST.set({"request_id": request_id, "host": host})


def request_finished(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _REQUEST.reset(token)


def bind(**fields: Any) -> None:
    """Add fields (e.g. `business`) to every event of the request being answered."""
    current = _REQUEST.get()
    if current is not None:
        current.update(fields)


def request_fields() -> dict[str, Any]:
    """The request's id, host and business (empty outside a request)."""
    return dict(_REQUEST.get() or {})


def event(name: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """A security or money event: one log line with `event` = `name`, the request's id,
    host and business, and `fields` (by convention `actor`: `customer:<account id>`,
    `staff:<staff id>`, `gateway`, `worker` or `operator`; ids, never emails or secrets)."""
    kept = {k: v for k, v in fields.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
    events_log.log(level, message, extra={"event": name, **request_fields(), **kept})


def host_of(scope: Any) -> str:
    """The Host header of an ASGI scope ("" without one)."""
    return _host(scope)


def request_line(scope: Any, status: int, started: float) -> None:
    """The one line for a finished request."""
    route = scope.get("route_handler")
    path_template = getattr(route, "paths", None)
    access_log.info(
        "request",
        extra={
            "request_id": scope.get("portal_request_id", ""),
            "host": _host(scope),
            "method": scope.get("method", ""),
            "route": next(iter(path_template)) if path_template else scope.get("path", ""),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


def _host(scope: Any) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            result: str = value.decode("latin-1")
            return result
    return ""
