"""When the database cannot be reached: one exception for every form of it, and one
warning per incident in the log.

Every form — connection refused or reset, host unreachable, too many clients, the
server starting up or shutting down, no free pooled connection within the wait,
SQLite's file unopenable, unreadable or locked past the wait — is raised from the
database layer (engine.py, fast.py) as `DatabaseUnavailable`, with the driver's error
as its cause. The app answers it with the 503 page and `Retry-After`; nothing was done.

The log gets one warning when an incident starts (the first failure) and one when it
ends: a probe retries the database every second meanwhile and closes the incident when
the database answers again. No traceback per request: an outage is not a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg

log = logging.getLogger("portal.db")

PROBE_EVERY_SECONDS = 1.0
# An incident ends when the database answers and nothing failed for this long (so a
# database that fails every other request is one incident, not one per second).
QUIET_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5  # told to browsers and clients in `Retry-After`

# SQLite result codes that mean "not now" rather than "this is wrong": busy or locked
# past the wait, the file cannot be opened, read or written (permissions, a missing
# volume, I/O errors), the disk is full.
SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_PERM,
}
# asyncpg's own errors that mean the connection is gone (the server dropped it).
CLOSED_CONNECTION_WORDS = ("closed", "closing", "another operation is in progress")


class DatabaseUnavailable(Exception):
    """The database cannot be reached right now; nothing was done (the cause says why)."""


def is_unavailable(exc: BaseException) -> bool:
    """True when a database driver's error `exc` means "cannot reach the database now"
    (not a wrong query or a bug). Only for errors raised by the driver: any OSError
    there is the connection's (refused, reset, unreachable, no such socket file)."""
    if isinstance(exc, asyncio.CancelledError):
        return False
    if isinstance(
        exc,
        OSError  # includes ConnectionError and TimeoutError (a pool wait that ran out)
        | asyncpg.PostgresConnectionError  # class 08: connection failures, dropped mid-query
        | asyncpg.exceptions.OperatorInterventionError  # 57: shutting down, starting up
        | asyncpg.exceptions.InsufficientResourcesError  # 53: too many clients, disk full
        # A pooled connection the server dropped, caught half-way by asyncpg.
        | asyncpg.exceptions.InternalClientError,
    ):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return any(word in str(exc) for word in CLOSED_CONNECTION_WORDS)
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in SQLITE_UNAVAILABLE  # extended codes keep the primary low
        text = str(exc)
        return "locked" in text or "unable to open" in text
    return False


def unavailable_in(exc: BaseException | None) -> bool:
    """True when `exc`, or what caused it, says the database is unavailable."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DatabaseUnavailable):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Around a call into the database driver: its "cannot reach the database" errors
    become `DatabaseUnavailable` (others pass unchanged)."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(describe(exc)) from exc
        raise


def describe(exc: BaseException) -> str:
    """A one-line reason for the log, e.g. `ConnectionRefusedError: [Errno 111] …`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, TimeoutError) and not text:
        text = "no database connection became free in time"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Outage:
    """This process's current database incident, if any (one warning when it starts,
    one when it ends)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.last_failure = 0.0
        self.refused = 0
        self._probe: asyncio.Task[None] | None = None
        # The question the probe asks: set by `engine.py` (which knows the tables), so
        # this module stays below the engines that raise its exception.
        self.probe: Callable[[], Awaitable[bool]] | None = None

    @staticmethod
    def probe_failed(exc: Exception) -> bool:
        """The probe's answer when its round trip raised `exc`: False, logged when it is
        not an outage at all (a bug would otherwise hide behind the incident)."""
        if not (unavailable_in(exc) or is_unavailable(exc)):
            log.warning("database probe failed: %s", describe(exc))
        return False

    @property
    def open(self) -> bool:
        return self.since is not None

    def note(self, exc: BaseException, *, refused: bool = True) -> None:
        """Record a failure caused by `exc`; the first one of an incident is logged.
        `refused`: a request (or a mail round) was turned away because of it."""
        if self.since is None:
            self.since = time.monotonic()
            self.refused = 0
            log.warning(
                "database unavailable (%s): answering 503 with Retry-After %d s until it "
                "answers again",
                describe(_root(exc)),
                RETRY_AFTER_SECONDS,
            )
        self.last_failure = time.monotonic()
        if refused:
            self.refused += 1
        self._ensure_probe()

    def _ensure_probe(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a command-line tool): the next failure or success tells
        if self._probe is None or self._probe.done() or self._probe.get_loop() is not loop:
            self._probe = loop.create_task(self._watch(), name="database outage probe")

    async def _watch(self) -> None:
        while self.since is not None:
            await asyncio.sleep(PROBE_EVERY_SECONDS)
            quiet = time.monotonic() - self.last_failure >= QUIET_SECONDS
            if quiet and self.probe is not None and await self.probe():
                self.ended()

    def ended(self) -> None:
        """The database answers again: close the incident (logged once)."""
        if self.since is None:
            return
        log.warning(
            "database reachable again: %.1f s from the first failure to the last, %d "
            "requests answered 503",
            self.last_failure - self.since,
            self.refused,
        )
        self.since = None


def _root(exc: BaseException) -> BaseException:
    """The driver's error behind a `DatabaseUnavailable`."""
    while isinstance(exc, DatabaseUnavailable) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


OUTAGE = Outage()


class PoolFloorFilter(logging.Filter):
    """asyncpg logs a traceback each time it fails to reconnect its pool's floor
    connection: that is the outage already being reported; count it, drop the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_unavailable(exc):
            OUTAGE.note(exc, refused=False)
            return False
        return True


def quiet_pool_floor_tracebacks() -> None:
    """Install `PoolFloorFilter` on asyncpg's pool logger (once)."""
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, PoolFloorFilter) for f in pool_log.filters):
        pool_log.addFilter(PoolFloorFilter())
