"""Refunds and disputes."""

from __future__ import annotations

from typing import Any

from portal.config import Settings


async def on_event(
    settings: Settings, tenant: dict[str, Any], gateway: Any, kind: str, object_id: str
) -> None:
    """Stripe events about refunds and disputes (others are acknowledged and ignored)."""
    return None
