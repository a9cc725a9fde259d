"""Office › Emails: the emails the portal sent for the business, the ones that could not
be delivered with the reason, and Retry for each of those (either staff role)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.auth.sessions import SessionInfo
from portal.db import office_emails as emails
from portal.db.rows import TenantRow
from portal.forms import record_id
from portal.mail.worker import wake
from portal.pages import office_page
from portal.web import after_write

NOT_FAILED = {
    "sent": "That email was already sent: there is nothing to retry.",
    "pending": "That email is already waiting to be sent: it goes out in a moment.",
}


async def _emails_page(
    request: Request[Any, Any, Any],
    tenant: TenantRow,
    staff: SessionInfo,
    *,
    notice: str = "",
    error: str = "",
    block: str = "region",
    status: int = 200,
) -> Response[Any]:
    before = record_id(request.query_params.get("before"))
    failed, next_before = await emails.failed(tenant["id"], before)
    return await office_page(
        request,
        tenant,
        staff,
        "emails",
        "office/emails.html",
        {
            "failed": failed,
            "before": before,
            "next_before": next_before,
            "recent": await emails.recent(tenant["id"]),
            "notice": notice,
            "error": error,
        },
        block=block,
        status_code=status,
    )


@get("/emails")
async def emails_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """Failed emails (with the reason and Retry) and the latest emails."""
    done = request.query_params.get("done") == "retried"
    notice = "The email is on its way again." if done else ""
    return await _emails_page(request, tenant, staff, notice=notice)


@post("/emails/{email_id:int}/retry")
async def retry(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep, email_id: FromPath[int]
) -> Response[Any]:
    """Queue a failed email again; another business's email is a 404."""
    outcome, recipient = await emails.retry(tenant["id"], email_id)
    if outcome == "missing":
        raise NotFoundException()
    if outcome != "retried":
        return await _emails_page(
            request, tenant, staff, error=NOT_FAILED[outcome], block="lists", status=409
        )
    wake()
    notice = f"The email to {recipient} is on its way again."
    return await after_write(
        request,
        "/office/emails?done=retried",
        lambda: _emails_page(request, tenant, staff, notice=notice, block="lists"),
    )


ROUTES = [emails_page, retry]
