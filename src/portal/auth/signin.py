"""Checking a password someone typed: counted against the throttles first, then verified
in the fair hashing lane. Used by the customer and the office sign-in and by "change
password" (the current one).

Order matters, cheapest refusal first, so that a storm's surplus costs next to nothing:

1. the hashing lane's refusal ("busy", from the lane's own state: no database work at
   all, not even the account);
2. the throttles: an email or client already over its limit is refused by one read,
   nothing written; otherwise the attempt is counted (and refused when that puts it over)
   *before* any hashing, so a throttled client or email costs no argon2 time and
   simultaneous attempts cannot all slip under the limit (auth/throttle.py);
3. only then the account (or staff member) is looked up and its hash verified.

And the whole answer is bounded: `bounded(seconds)` puts one deadline over a sign-in's
database waits, its wait for a hashing thread and the hash itself; past it the answer is
"busy, try again in a moment" (503, Retry-After), never a hang.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from litestar.connection import ASGIConnection

from portal import logs, metrics
from portal.auth import throttle
from portal.auth.passwords import LANE, LaneBusy, verify_password
from portal.auth.policy import READ_LIMIT, normalize
from portal.auth.throttle import Limit
from portal.db.engine import give_back_request_connection
from portal.forms import Checked, clean_email
from portal.forwarded import client_ip, client_key

WINDOW = timedelta(minutes=15)
# The longest password a form reads (cut there: one more than the policy counts, so a
# longer one is said to have "more than" that many characters, auth/policy.py).
MAX_FIELD = READ_LIMIT + 1
BUSY = "Lots of people are signing in right now. Please try again in a moment."
NO_MATCH = "That email and password don't match our records. Check both and try again."
PER_EMAIL = 10  # wrong passwords per email and business in the window
PER_CLIENT = 50  # wrong passwords per client address and business in the window
TOO_SLOW_RETRY_AFTER = 2  # seconds, for a sign-in that ran past its deadline
PACE_SECONDS = 1.0  # the longest a storming client's refusal (busy, too many) is held back

T = TypeVar("T")
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sign_in_deadline", default=None
)
_BACKGROUND: set[asyncio.Task[Any]] = set()  # detached tasks, kept until done


class TooSlow(Exception):
    """The sign-in could not be answered within its deadline (answered "busy")."""


@asynccontextmanager
async def bounded(seconds: float) -> AsyncIterator[None]:
    """Run a sign-in within `seconds` (lane wait, hash and database waits together);
    raises `TooSlow` when they run past it. Whatever was under way is cancelled: a
    transaction rolls back, a hash still queued is never run."""
    loop = asyncio.get_running_loop()
    token = _DEADLINE.set(loop.time() + seconds)
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError as exc:
        if scope.expired():
            raise TooSlow() from exc
        raise
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    """Seconds left before the current sign-in's deadline (None: not bounded)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


async def detached(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `work` as a task of its own, outside the request (a fresh context: not the
    request's pooled connection, not its deadline), so that it finishes even when the
    request is answered first or cut short by its deadline. The request's pooled
    connection goes back first, so a request never holds two (PostgreSQL's pool is
    shared: 30 sign-ins at once each holding two emptied it)."""
    try:
        await give_back_request_connection()
    except BaseException:
        work.close()  # never started
        raise
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


async def _count(tenant_id: int, limits: list[Limit]) -> throttle.Counted:
    """Count the attempt so that a deadline cannot leave it half done: the count always
    completes, and one cut short is taken back once it has (it was never evaluated)."""
    counting = await detached(throttle.count(tenant_id, limits))
    try:
        return await asyncio.shield(counting)
    except asyncio.CancelledError:
        await detached(_take_back_once_counted(counting))
        raise


async def _take_back_once_counted(counting: asyncio.Task[throttle.Counted]) -> None:
    counted = await counting
    if not counted.wait:
        await counted.release()


@dataclass(frozen=True)
class Credentials:
    """A sign-in form as checked: the email (normalized) and the password to verify."""

    email: str
    password: str


def clean_sign_in_password(value: str) -> tuple[str, str | None]:
    """The password as typed (read up to `MAX_FIELD` characters, normalized): any but
    none (the policy is for choosing one, not for signing in)."""
    password = normalize(value[:MAX_FIELD])
    return password, None if password else "Enter your password."


def check_sign_in_form(form: dict[str, str]) -> Checked[Credentials | None]:
    """Check a sign-in form, the customers' or the office's (`forms.Checked`): the
    credentials to verify (None while there is a problem), the email to show again, and one
    problem at a time — the email's first."""
    email, email_problem = clean_email(form.get("email", ""))
    password, password_problem = clean_sign_in_password(form.get("password", ""))
    values = {"email": email}
    if email_problem:
        return Checked(None, {"email": email_problem}, values)
    if password_problem:
        return Checked(None, {"password": password_problem}, values)
    return Checked(Credentials(email, password), values=values)


@dataclass(frozen=True)
class PasswordCheck:
    """The outcome: right, wrong, refused as too many attempts, or refused as busy."""

    right: bool = False
    too_many: int | None = None  # seconds to wait (429)
    busy: int | None = None  # seconds to wait (503)


def email_limit(area: str, email: str) -> Limit:
    """Wrong passwords for one email of a business; a right password forgets them."""
    return Limit(f"{area}:email:{email}", PER_EMAIL, WINDOW, cleared_by_success=True)


def sign_in_limits(area: str, email: str, client: str) -> list[Limit]:
    """The limits of a sign-in form: per email and per client address, both within one
    business (the tenant is part of every count, so attackers of one business cannot lock
    out another's customers)."""
    return [email_limit(area, email), Limit(f"{area}:client:{client}", PER_CLIENT, WINDOW)]


async def _paced(retry_after: int) -> None:
    """Hold a storming client's refusal back (at most PACE_SECONDS, never longer than it
    is told to wait), holding no database connection meanwhile."""
    await give_back_request_connection()
    await asyncio.sleep(min(retry_after, PACE_SECONDS))


async def check_password(
    tenant_id: int,
    limits: list[Limit],
    client: str,
    password: str,
    lookup: Callable[[], Awaitable[tuple[T | None, str | None]]],
) -> tuple[PasswordCheck, T | None]:
    """Refuse a busy lane or a throttled email or client at once (see the module
    docstring); else count the attempt, `lookup()` the holder (an account, a staff member)
    and its stored hash, and verify `password` against it (no holder or no usable hash:
    it still costs one verify, so the answer's timing tells nothing). Returns the check
    and the holder (None unless looked up). A right password and an attempt never
    evaluated (busy, or cut short by the deadline) are taken back; a wrong one stays
    counted."""
    area = limits[0].key.split(":", 1)[0] if limits else "customer"
    busy = LANE.refusal(client)
    if busy:  # answered before any database work: a storm's surplus costs next to nothing
        metrics.sign_in(area, "busy")
        if LANE.has_work_of(client):
            # The client's own hashes fill its share: answer it no sooner than a hash
            # would. A storm that resends at once otherwise floods the event loop (and the
            # machine's cores) with refusals; a client with nothing waiting (the real
            # customer behind the storm) is answered at once.
            await _paced(busy)
        return PasswordCheck(busy=busy), None
    counted = await _count(tenant_id, limits)
    if counted.wait:
        metrics.sign_in(area, "locked")
        logs.event(
            "signin.locked",
            "sign-in refused: too many attempts",
            level=logging.WARNING,
            tenant=tenant_id,
            client=client,
            area=area,
        )
        # Over its limit: paced like a storm's "busy" (a resend at once gains nothing).
        await _paced(counted.wait)
        return PasswordCheck(too_many=counted.wait), None
    try:
        holder, stored_hash = await lookup()
        right = await verify_password(stored_hash, password, client, time_left())
    except LaneBusy as full:  # never evaluated, so not counted (taken back after the answer)
        await detached(counted.release())
        metrics.sign_in(area, "busy")
        return PasswordCheck(busy=full.retry_after), None
    except asyncio.CancelledError:  # past the deadline: never evaluated either
        await detached(counted.release())
        metrics.sign_in(area, "busy")
        raise
    if right:
        # Completes even if the deadline passes meanwhile: a right password never counts.
        await asyncio.shield(await detached(counted.succeeded()))
        metrics.sign_in(area, "right")
    else:
        metrics.sign_in(area, "wrong")
        logs.event("signin.failed", "wrong password", tenant=tenant_id, client=client, area=area)
    return PasswordCheck(right=right), holder if right else None


def client_of(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client as throttles and the hashing lane count it (see portal.forwarded)."""
    return client_key(client_ip(request))


def refusal(check: PasswordCheck) -> tuple[int, str, dict[str, str] | None]:
    """(status, message, headers) for a password that did not open the account."""
    if check.too_many:
        message = f"Too many attempts. Please try again in {throttle.minutes_text(check.too_many)}."
        return 429, message, {"Retry-After": str(check.too_many)}
    if check.busy:
        return 503, BUSY, {"Retry-After": str(check.busy)}
    return 422, NO_MATCH, None


TOO_SLOW = PasswordCheck(busy=TOO_SLOW_RETRY_AFTER)  # what `TooSlow` is answered with
