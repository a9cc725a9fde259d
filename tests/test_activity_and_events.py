"""The activity log and the domain events: written in the caller's transaction (saved with
the change or not at all), read per business in order."""

from __future__ import annotations

import pytest

from portal.db import activity, events
from portal.db.engine import transaction
from tests.support.businesses import import_business


async def test_activity_is_kept_per_business_newest_first(app, demo):
    other = await import_business("activityother")
    admin = activity.Actor("admin@xyzservices.example")
    for n in range(3):
        await activity.record(demo, admin, "setting.changed", "Name", f"Old {n}", f"New {n}")
    await activity.record(other, activity.SYSTEM, "host.changed", "Host", "a", "b")
    mine = await activity.entries(demo)
    assert [e["new_value"] for e in mine] == ["New 2", "New 1", "New 0"]
    assert all(e["actor"] == "admin@xyzservices.example" for e in mine)
    page_two = await activity.entries(demo, before=mine[1]["id"])
    assert [e["new_value"] for e in page_two] == ["New 0"]
    assert [e["action"] for e in await activity.entries(other)] == ["host.changed"]
    assert await activity.entries(demo, action_prefix="host.") == []


async def test_an_event_exists_only_if_its_change_was_saved(app, demo):
    before = await events.after(demo)
    with pytest.raises(RuntimeError):
        async with transaction():
            await events.emit(demo, "booking.requested", {"booking_id": 1})
            await activity.record(demo, activity.SYSTEM, "setting.changed", "x", "", "y")
            raise RuntimeError("the change failed")
    assert await events.after(demo) == before
    assert not [e for e in await activity.entries(demo) if e["subject"] == "x"]
    async with transaction():
        first = await events.emit(demo, "payment.succeeded", {"payment_id": 7, "amount": 500})
    second = await events.emit(demo, "invoice.viewed", {"invoice_id": 3})
    fed = await events.after(demo, cursor=first - 1)
    assert [(e["id"], e["type"], e["data"]) for e in fed] == [
        (first, "payment.succeeded", {"amount": 500, "payment_id": 7}),
        (second, "invoice.viewed", {"invoice_id": 3}),
    ]
    assert await events.after(demo, cursor=second) == []


async def test_unknown_event_types_and_actor_kinds_are_refused(app, demo):
    with pytest.raises(ValueError, match="unknown event type"):
        await events.emit(demo, "payment.maybe", {})
    with pytest.raises(ValueError, match="unknown actor kind"):
        await activity.record(demo, activity.Actor("x", "robot"), "setting.changed")
