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
# records its account may see (each with a flag: does it have a payment waiting for the
# gateway?): one plain SQL read (see portal.db.fast), a row per record. Pages of a
# business read it together with the business (`tenant_and_session`).
#
# The records are those listing the account's email (the owner's, `access` "owner") and,
# in a second branch of the same statement (UNION ALL), those shared with that email by a
# live access grant (issue 16.4; `access` the grant's role), a row per granted location.
# Each branch is an indexed lookup on its own (customer_email by email, the live grants'
# partial index by email); a revoked grant is simply not found by the next request.
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
OWNER_COLUMNS = """'owner' AS customer_access, NULL AS grant_id, NULL AS grant_location,
    NULL AS grant_owner"""
GRANT_COLUMNS = """g.role AS customer_access, g.id AS grant_id, gl.location AS grant_location,
    g.granted_by AS grant_owner"""
SESSION_JOINS = """
    LEFT JOIN portal_account a ON a.id = s.account
    LEFT JOIN staff_user u ON u.id = s.staff
    LEFT JOIN customer_email ce ON ce.tenant = s.tenant AND ce.email = a.email
    LEFT JOIN customer c ON c.id = ce.customer AND c.tenant = s.tenant
"""
GRANT_JOINS = """
    JOIN portal_account a ON a.id = s.account
    LEFT JOIN staff_user u ON u.id = s.staff
    JOIN access_grant g ON g.tenant = s.tenant AND g.invitee_email = a.email
        AND g.revoked_at IS NULL
    JOIN customer c ON c.id = g.customer AND c.tenant = s.tenant
    JOIN access_grant_location gl ON gl."grant" = g.id AND gl.tenant = s.tenant
"""
_SESSION_SQL = f"""
    SELECT {SESSION_COLUMNS}, {OWNER_COLUMNS} FROM session s {SESSION_JOINS}
    WHERE s.token_hash = {{}}
    UNION ALL
    SELECT {SESSION_COLUMNS}, {GRANT_COLUMNS} FROM session s {GRANT_JOINS}
    WHERE s.token_hash = {{}}
    ORDER BY customer_name, customer_id, grant_id, grant_location
"""


_TENANT_COLUMNS = ", ".join("t." + name for name in queries.TENANT_COLUMN_NAMES)
TENANT_AND_SESSION_SQL = f"""
    SELECT {_TENANT_COLUMNS}, {SESSION_COLUMNS}, {OWNER_COLUMNS}
    FROM tenant t
    LEFT JOIN session s ON s.tenant = t.id AND s.token_hash = {{}}
    {SESSION_JOINS}
    WHERE t.host = {{}}
    UNION ALL
    SELECT {_TENANT_COLUMNS}, {SESSION_COLUMNS}, {GRANT_COLUMNS}
    FROM tenant t
    JOIN session s ON s.tenant = t.id AND s.token_hash = {{}}
    {GRANT_JOINS}
    WHERE t.host = {{}}
    ORDER BY customer_name, customer_id, grant_id, grant_location
"""


async def tenant_and_session(
    settings: Settings, host: str, token: str
) -> tuple[TenantRow | None, SessionInfo | None]:
    """The business with this host and the live session `token` names there, in one read
    (every signed-in page needs both)."""
    digest = token_hash(token)
    rows = await fast.fetch(TENANT_AND_SESSION_SQL, digest, host, digest, host)
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
    digest = token_hash(token)
    rows = await fast.fetch(_SESSION_SQL, digest, digest)
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
        customers=customers_in(rows),
    )


def customers_in(rows: list[dict[str, Any]]) -> list[CustomerRow]:
    """The customer records in a session read's rows, in name order: the owner's (access
    "owner", every location) and the granted ones (the grant's role and locations). A
    record the account owns is never also a granted one (owner beats grant); two live grants
    of one record to one email (a race past check_invite) count as the older one."""
    found: dict[int, CustomerRow] = {}
    grant_of: dict[int, int] = {}
    for r in rows:
        customer_id = r["customer_id"]
        if customer_id is None:
            continue
        access = r["customer_access"]
        known = found.get(customer_id)
        if access == "owner":
            found[customer_id] = CustomerRow(
                id=customer_id,
                name=r["customer_name"],
                kind=r["customer_kind"],
                external_id=r["customer_external_id"],
                pending_payments=bool(r["customer_pending_payments"]),
                access="owner",
                location_ids=None,
                granted_by="",
            )
            continue
        if known is None:
            grant_of[customer_id] = r["grant_id"]
            found[customer_id] = known = CustomerRow(
                id=customer_id,
                name=r["customer_name"],
                kind=r["customer_kind"],
                external_id=r["customer_external_id"],
                pending_payments=bool(r["customer_pending_payments"]),
                access=access,
                location_ids=[],
                granted_by=r["grant_owner"] or "",
            )
        if known["access"] != "owner" and grant_of.get(customer_id) == r["grant_id"]:
            ids = known["location_ids"]
            if ids is not None and r["grant_location"] not in ids:
                ids.append(r["grant_location"])
    return list(found.values())  # in the read's order: by name


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
