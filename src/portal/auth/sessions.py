"""Server-side sessions: a database row per signed-in browser, shared by all app
processes. The cookie holds only a random token; the row holds its hash.

A new token is made at every sign-in, so a cookie planted before sign-in never
becomes a signed-in session (session fixation). Idle and absolute limits are
checked on the server at every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from piccolo.custom_types import Combinable

from portal.auth.tokens import new_token, token_hash
from portal.config import Settings
from portal.db import fast, queries
from portal.db.rows import CustomerRow, TenantRow
from portal.db.tables import Session

# Refresh `last_seen_at` at most this often (one write per minute, not per request).
TOUCH_EVERY = timedelta(seconds=60)


def cookie_name(settings: Settings) -> str:
    """`__Host-` prefixed over https: bound to this exact host, Secure, Path=/."""
    return "__Host-portal_session" if settings.cookies_secure else "portal_session"


def session_cookie(settings: Settings, token: str) -> Cookie:
    return Cookie(
        key=cookie_name(settings),
        value=token,
        path="/",
        httponly=True,
        secure=settings.cookies_secure,
        samesite="lax",
        max_age=settings.session_absolute_days * 86400,
    )


def clear_cookie(settings: Settings) -> Cookie:
    return Cookie(
        key=cookie_name(settings),
        value="",
        path="/",
        httponly=True,
        secure=settings.cookies_secure,
        samesite="lax",
        max_age=0,
    )


@dataclass
class SessionInfo:
    """The signed-in session of a request."""

    id: int
    kind: str
    tenant_id: int
    account_id: int | None
    staff_id: int | None
    email: str
    name: str
    role: str
    active_customer_id: int | None
    created_at: datetime
    # The customer records listing the account's email (customer sessions), read with
    # the session in the same query.
    customers: list[CustomerRow] = field(default_factory=list)

    @property
    def actor(self) -> str:
        """Who this is in the event log: `customer:<account id>` or `staff:<staff id>`."""
        if self.kind == "staff":
            return f"staff:{self.staff_id}"
        return f"customer:{self.account_id}"


async def start_session(
    request: Request[Any, Any, Any],
    response: Response[Any] | None,
    *,
    tenant_id: int,
    kind: str,
    account_id: int | None = None,
    staff_id: int | None = None,
    browser: str = "",
    network: str = "",
) -> str:
    """Sign a browser in: drop any session its cookie named, make a new one, set the cookie
    on `response` (or later, with `attach_cookie`). Returns the new session's token."""
    settings: Settings = request.app.state.settings
    old = request.cookies.get(cookie_name(settings))
    if old:
        await Session.delete().where(Session.token_hash == token_hash(old)).run()
    token, digest = new_token()
    moment = datetime.now(UTC)
    await Session.insert(
        Session(
            tenant=tenant_id,
            token_hash=digest,
            kind=kind,
            account=account_id,
            staff=staff_id,
            created_at=moment,
            last_seen_at=moment,
            expires_at=moment + timedelta(days=settings.session_absolute_days),
            browser=browser[:120],
            network=network[:64],
        )
    ).run()
    if response is not None:
        response.set_cookie(session_cookie(settings, token))
    return token


def attach_cookie(request: Request[Any, Any, Any], response: Response[Any], token: str) -> None:
    """Set the session cookie for `token` on a response built after `start_session`."""
    response.set_cookie(session_cookie(request.app.state.settings, token))


async def session_for_token(
    request: Request[Any, Any, Any], tenant_id: int, token: str
) -> SessionInfo | None:
    """The session a token names (for a response rendered right after sign-in)."""
    return await _load_token(request.app.state.settings, token, tenant_id)


async def end_session(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    """Sign out: delete the session row and clear the cookie."""
    settings: Settings = request.app.state.settings
    token = request.cookies.get(cookie_name(settings))
    if token:
        await Session.delete().where(Session.token_hash == token_hash(token)).run()
    response.set_cookie(clear_cookie(settings))


# Every signed-in request reads its session, and a customer's session the customer
# records its email is on (each with a flag: does it have a payment waiting for the
# gateway?): one plain SQL read (see portal.db.fast), a row per record. Pages of a
# business read it together with the business (`tenant_and_session`).
SESSION_COLUMNS = """
    s.id AS session_id, s.tenant AS session_tenant, s.kind AS session_kind,
    s.account AS session_account, s.staff AS session_staff,
    s.active_customer_id AS session_active_customer_id, s.created_at AS session_created_at,
    s.last_seen_at AS session_last_seen_at, s.expires_at AS session_expires_at,
    a.email AS account_email, u.email AS staff_email, u.name AS staff_name,
    u.role AS staff_role, c.id AS customer_id, c.name AS customer_name,
    c.kind AS customer_kind, c.external_id AS customer_external_id,
    EXISTS (SELECT 1 FROM payment p WHERE p.customer = c.id AND p.tenant = s.tenant
            AND p.status = 'pending') AS customer_pending_payments
"""
SESSION_JOINS = """
    LEFT JOIN portal_account a ON a.id = s.account
    LEFT JOIN staff_user u ON u.id = s.staff
    LEFT JOIN customer_email ce ON ce.tenant = s.tenant AND ce.email = a.email
    LEFT JOIN customer c ON c.id = ce.customer AND c.tenant = s.tenant
"""
_SESSION_SQL = f"""
    SELECT {SESSION_COLUMNS} FROM session s {SESSION_JOINS}
    WHERE s.token_hash = {{}}
    ORDER BY c.name, c.id
"""


TENANT_AND_SESSION_SQL = f"""
    SELECT {", ".join("t." + name for name in queries.TENANT_COLUMN_NAMES)}, {SESSION_COLUMNS}
    FROM tenant t
    LEFT JOIN session s ON s.tenant = t.id AND s.token_hash = {{}}
    {SESSION_JOINS}
    WHERE t.host = {{}}
    ORDER BY c.name, c.id
"""


async def tenant_and_session(
    settings: Settings, host: str, token: str
) -> tuple[TenantRow | None, SessionInfo | None]:
    """The business with this host and the live session `token` names there, in one read
    (every signed-in page needs both)."""
    rows = await fast.fetch(TENANT_AND_SESSION_SQL, token_hash(token), host)
    if not rows:
        return None, None
    tenant = queries.tenant_row({name: rows[0][name] for name in queries.TENANT_COLUMN_NAMES})
    return tenant, await session_from_rows(settings, rows, tenant["id"])


def session_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The session token the request's cookie carries (None when absent or absurd)."""
    token = connection.cookies.get(cookie_name(connection.app.state.settings))
    return token if token and len(token) <= 100 else None


async def _load_token(settings: Settings, token: str | None, tenant_id: int) -> SessionInfo | None:
    if not token or len(token) > 100:
        return None
    rows = await fast.fetch(_SESSION_SQL, token_hash(token))
    return await session_from_rows(settings, rows, tenant_id)


async def session_from_rows(
    settings: Settings, rows: list[dict[str, Any]], tenant_id: int
) -> SessionInfo | None:
    """The live session in rows read with SESSION_COLUMNS (None when there is none).

    A session from one business's host is nobody on another's; an expired one (idle or
    absolute) is deleted; `last_seen_at` is refreshed at most once a minute.
    """
    row = rows[0] if rows else None
    if row is None or row["session_id"] is None or row["session_tenant"] != tenant_id:
        return None
    moment = datetime.now(UTC)
    idle_limit = timedelta(minutes=settings.session_idle_minutes)
    last_seen_at = fast.timestamp(row["session_last_seen_at"])
    expires_at = fast.timestamp(row["session_expires_at"])
    if expires_at <= moment or last_seen_at + idle_limit <= moment:
        await Session.delete().where(Session.id == row["session_id"]).run()
        return None
    if moment - last_seen_at >= TOUCH_EVERY:
        await (
            Session.update({Session.last_seen_at: moment})
            .where(Session.id == row["session_id"])
            .run()
        )
    is_staff = row["session_kind"] == "staff"
    return SessionInfo(
        id=row["session_id"],
        kind=row["session_kind"],
        tenant_id=row["session_tenant"],
        account_id=row["session_account"],
        staff_id=row["session_staff"],
        email=(row["staff_email"] if is_staff else row["account_email"]) or "",
        name=(row["staff_name"] or "") if is_staff else "",
        role=(row["staff_role"] or "") if is_staff else "",
        active_customer_id=row["session_active_customer_id"],
        created_at=fast.timestamp(row["session_created_at"]),
        customers=[
            CustomerRow(
                id=r["customer_id"],
                name=r["customer_name"],
                kind=r["customer_kind"],
                external_id=r["customer_external_id"],
                pending_payments=bool(r["customer_pending_payments"]),
            )
            for r in rows
            if r["customer_id"] is not None
        ],
    )


async def end_other_sessions(
    *,
    account_id: int | None = None,
    staff_id: int | None = None,
    keep_session_id: int | None = None,
) -> None:
    """Sign out everywhere else (after a password change)."""
    if account_id is not None:
        where: Combinable = Session.account == account_id
    elif staff_id is not None:
        where = Session.staff == staff_id
    else:
        return
    if keep_session_id is not None:
        where = where & (Session.id != keep_session_id)
    await Session.delete().where(where).run()


async def set_active_customer(session_id: int, customer_id: int) -> None:
    await (
        Session.update({Session.active_customer_id: customer_id})
        .where(Session.id == session_id)
        .run()
    )
