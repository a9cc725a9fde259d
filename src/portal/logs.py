"""Logs: one JSON object per line (or plain text), and one line per request.

Every line has `time`, `level`, `logger` and `message`; a request's line adds
`request_id`, `host`, `method`, `route`, `status` and `duration_ms`. Security and money
events (sign-in failures, lockouts, payment state changes, failed emails) are ordinary
log calls with an `event` field, so an operator can filter on it:

    log.info("sign-in failed", extra={"event": "signin.failed", "host": "xyzplumbing"})
"""

from __future__ import annotations

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


def event(name: str, message: str, **fields: Any) -> None:
    """A security or money event: one log line with `event` = `name`."""
    events_log.info(message, extra={"event": name, **fields})


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
