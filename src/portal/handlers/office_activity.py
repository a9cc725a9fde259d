"""Office › Activity: who changed what in the office, when, from what to what (settings,
host, the legal agreement, the payment account, email templates, staff), newest first,
filtered by who, by kind of change and by dates, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Request, Response, get

from portal.auth.context import TenantDep
from portal.auth.guards import StaffDep
from portal.db import activity
from portal.forms import parse_day, record_id
from portal.pages import office_page

PAGE = 50
# The "what" filter: a kind of change, by the start of its action names.
KINDS = {
    "setting.": "Settings",
    "host.": "Host",
    "domain.": "Own domain",
    "agreement.": "Legal agreement",
    "payment_account.": "Payment account",
    "template.": "Email templates",
    "staff.": "Staff",
    "grant.": "Shared access",
}
ACTIONS = {
    "setting.changed": "Setting changed",
    "host.changed": "Host changed",
    "domain.changed": "Own domain changed",
    "agreement.accepted": "Agreement accepted",
    "payment_account.linked": "Payment account linked",
    "payment_account.unlinked": "Payment account unlinked",
    "template.changed": "Email wording changed",
    "template.reset": "Email wording reset to the default",
    "staff.added": "Staff member added",
    "staff.role_changed": "Role changed",
    "staff.disabled": "Staff member disabled",
    "staff.enabled": "Staff member enabled",
    "staff.reset_link_sent": "Password reset link sent",
    "grant.created": "Access shared",
    "grant.revoked": "Shared access removed",
    "grant.left": "Shared access given up",
}


@dataclass
class Filters:
    """What the filter form asked for, checked (anything else is ignored, with a note)."""

    kind: str = ""
    who: str = ""
    since: date | None = None
    until: date | None = None
    problems: tuple[str, ...] = ()

    def query(self) -> str:
        """The filters as a query string (for the pager's links), "" when there are none."""
        pairs = {
            "kind": self.kind,
            "who": self.who,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
        }
        return urlencode({k: v for k, v in pairs.items() if v})


def _filters(params: Any, actors: list[str]) -> Filters:
    problems = []
    kind = params.get("kind", "")
    who = params.get("who", "")
    since, until = parse_day(params.get("from", "")), parse_day(params.get("to", ""))
    if params.get("from") and since is None:
        problems.append("The From date isn't a date like 2026-12-01: it was left out.")
    if params.get("to") and until is None:
        problems.append("The To date isn't a date like 2026-12-01: it was left out.")
    if since and until and since > until:
        problems.append("The From date is after the To date: nothing can match.")
    return Filters(
        kind=kind if kind in KINDS else "",
        who=who if who in actors else "",
        since=since,
        until=until,
        problems=tuple(problems),
    )


def _moment(day: date | None, zone: ZoneInfo) -> datetime | None:
    """The start of a business-local day, as an aware datetime (stored times are UTC)."""
    return datetime.combine(day, time(0), tzinfo=zone) if day else None


@get("/activity")
async def activity_page(
    request: Request[Any, Any, Any], tenant: TenantDep, staff: StaffDep
) -> Response[Any]:
    """The office activity log, newest first; `?kind=`, `?who=`, `?from=`, `?to=` filter
    it and `?before=<id>` pages back."""
    actors = await activity.actors(tenant["id"])
    filters = _filters(request.query_params, actors)
    before = record_id(request.query_params.get("before"))
    zone = ZoneInfo(tenant["time_zone"])
    until = filters.until + timedelta(days=1) if filters.until else None
    rows = await activity.entries(
        tenant["id"],
        before=before,
        action_prefix=filters.kind,
        actor=filters.who,
        since=_moment(filters.since, zone),
        until=_moment(until, zone),
        limit=PAGE + 1,
    )
    older = rows[PAGE - 1]["id"] if len(rows) > PAGE else None
    # The filters and the pager swap the list alone; the office menu swaps the page region.
    list_only = request.headers.get("hx-target", "").endswith("#activity-entries")
    return await office_page(
        request,
        tenant,
        staff,
        "activity",
        "office/activity.html",
        {
            "entries": rows[:PAGE],
            "older": older,
            "before": before,
            "filters": filters,
            "kinds": KINDS,
            "actions": ACTIONS,
            "actors": actors,
        },
        block="entries" if list_only else "region",
    )


ROUTES = [activity_page]
