"""The office activity log: who changed what in the office, when, and from what to what.

Every change office staff make to how the portal works for customers is recorded here
(settings, host and domains, the legal agreement, the payment account, email templates,
staff), as the office Activity page shows them. Call `record` inside the transaction that
makes the change, so the change and its record are saved together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.custom_types import Combinable

from portal.db.tables import ActivityEvent

ACTOR_KINDS = ("staff", "customer", "system", "api")
MAX_VALUE = 2000  # characters of an old or new value kept (a template body can be long)


@dataclass(frozen=True)
class Actor:
    """Who made a change: a staff member's email, a customer, the system, or an API key."""

    name: str
    kind: str = "staff"


SYSTEM = Actor("system", "system")


def _value(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


async def record(
    tenant_id: int,
    actor: Actor,
    action: str,
    subject: str = "",
    old: object = "",
    new: object = "",
) -> None:
    """Add one entry: `action` names the kind of change ("setting.changed",
    "host.changed", "staff.added", ...), `subject` says what changed in words ("Host",
    "Enable Customer Portal", "Dana Desk"), `old` and `new` are the values shown."""
    if actor.kind not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {actor.kind!r}")
    await ActivityEvent.insert(
        ActivityEvent(
            tenant=tenant_id,
            actor=actor.name[:254],
            actor_kind=actor.kind,
            action=action[:60],
            subject=subject[:200],
            old_value=_value(old),
            new_value=_value(new),
        )
    ).run()


async def entries(
    tenant_id: int,
    *,
    before: int | None = None,
    action_prefix: str = "",
    actor: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The business's entries, newest first, `limit` at a time (keyset: `before` is the
    id of the last entry of the previous page); optionally only one kind of change
    (`action_prefix`, e.g. "staff."), one actor, or a time span (`since` included,
    `until` not)."""
    where: Combinable = ActivityEvent.tenant == tenant_id
    if before is not None:
        where &= ActivityEvent.id < before
    if since is not None:
        where &= ActivityEvent.created_at >= since
    if until is not None:
        where &= ActivityEvent.created_at < until
    if action_prefix:
        where &= ActivityEvent.action.like(action_prefix.replace("%", "") + "%")
    if actor:
        where &= ActivityEvent.actor == actor
    return (
        await ActivityEvent.select()
        .where(where)
        .order_by(ActivityEvent.id, ascending=False)
        .limit(limit)
        .run()
    )


async def actors(tenant_id: int) -> list[str]:
    """Everyone who has an entry in the business's log, alphabetically (the "who" filter)."""
    rows = (
        await ActivityEvent.select(ActivityEvent.actor)
        .where(ActivityEvent.tenant == tenant_id)
        .distinct()
        .order_by(ActivityEvent.actor)
        .run()
    )
    return [str(r["actor"]) for r in rows]
