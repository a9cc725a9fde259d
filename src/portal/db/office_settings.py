"""Settings › Customer Portal: the writes (settings, the legal agreement, the logo, the
payment account). What each value must be is `portal/settings_form.py`; the logo's
image work is `portal/logos.py`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from portal.db import activity, payment_accounts
from portal.db.engine import transaction
from portal.db.tables import BusinessUnit, HostRedirect, Tenant

LOGO_EPOCH = 1_577_836_800  # 2020-01-01: logo versions count seconds from here (fit 32 bits)


class HostTaken(Exception):
    """Another business already uses the host name."""


HOST_TAKEN_MESSAGE = "Another business already uses that name, please choose another."


@dataclass
class Changes:
    """Settings to store: Tenant columns and, optionally, the downloadable business units."""

    columns: dict[str, Any]
    downloadable_units: set[int] | None = None


# Each setting in the activity log, as the settings page names it.
SETTING_NAMES = {
    "portal_enabled": "Enable Customer Portal",
    "scheduler_enabled": "Appointment Scheduler",
    "service_types": "Service types customers can request",
    "memberships_enabled": "Enable users to view memberships in Customer Portal",
    "membership_statuses": "Membership statuses to display",
    "recurring_service_message": "Recurring service message",
    "host": "Host",
    "name": "Name",
    "email": "Email",
    "phone": "Phone",
    "downloadable_units": "Business units whose invoices download",
    "payments_enabled": "Enable card payments",
}


def _shown(value: Any) -> str:
    """A setting's value as the activity log shows it."""
    if isinstance(value, bool):
        return "On" if value else "Off"
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    if isinstance(value, list | set | tuple):
        return ", ".join(str(v) for v in value) or "None"
    return "" if value is None else str(value)


async def host_taken(tenant_id: int, host: str) -> bool:
    """Another business already uses `host` (checked before asking to move the portal;
    `save` checks again, as the name may be claimed in between)."""
    return bool(await Tenant.exists().where((Tenant.host == host) & (Tenant.id != tenant_id)).run())


def _column_value(key: str, value: Any) -> Any:
    if key in ("service_types", "membership_statuses"):
        return json.dumps(value)
    return value


async def save(
    tenant_id: int,
    changes: Changes,
    *,
    actor: activity.Actor = activity.SYSTEM,
    redirect_days: int = 90,
) -> None:
    """Store settings in one transaction, each change in the activity log (old and new
    value); raises `HostTaken` (and stores nothing) when the new host name belongs to
    another business. A new host name keeps the old one redirecting for
    `redirect_days`."""
    try:
        async with transaction():
            before = await Tenant.select().where(Tenant.id == tenant_id).first().run() or {}
            host = changes.columns.get("host")
            if host is not None:
                taken = (
                    await Tenant.exists()
                    .where((Tenant.host == host) & (Tenant.id != tenant_id))
                    .run()
                )
                if taken:
                    raise HostTaken(host)
                await _host_moves(tenant_id, host, actor, redirect_days)
            if changes.columns:
                values = {
                    getattr(Tenant, key): _column_value(key, value)
                    for key, value in changes.columns.items()
                }
                await Tenant.update(values).where(Tenant.id == tenant_id).run()
            for key, value in changes.columns.items():
                old, new = _shown(before.get(key)), _shown(_column_value(key, value))
                if key != "host" and old != new:  # a host change is logged as it moves
                    name = SETTING_NAMES.get(key, key)
                    await activity.record(tenant_id, actor, "setting.changed", name, old, new)
            if changes.downloadable_units is not None:
                await _set_downloadable(tenant_id, changes.downloadable_units, actor)
    except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as exc:
        # Two businesses claimed the same new name at the same moment: the unique index
        # let one through.
        if "host" in str(exc):
            raise HostTaken(changes.columns.get("host", "")) from exc
        raise


async def _host_moves(
    tenant_id: int, new_host: str, actor: activity.Actor, redirect_days: int
) -> None:
    """The old host name redirects to the new one for a while; the change is logged."""
    row = await Tenant.select(Tenant.host).where(Tenant.id == tenant_id).first().run()
    old_host = row["host"] if row else ""
    if not old_host or old_host == new_host:
        return
    # The new name may be one this business (or another) gave up: it is a real host now.
    await HostRedirect.delete().where(HostRedirect.old_host == new_host).run()
    if redirect_days > 0:
        until = datetime.now(UTC) + timedelta(days=redirect_days)
        await HostRedirect.insert(
            HostRedirect(tenant=tenant_id, old_host=old_host, until=until)
        ).run()
    await activity.record(tenant_id, actor, "host.changed", "Host", old_host, new_host)


async def set_custom_domain(tenant_id: int, domain: str | None, actor: activity.Actor) -> None:
    """Give the business its own domain (None: take it away), logged in the same
    transaction; raises `DomainTaken` when another business has it."""
    async with transaction():
        if domain:
            taken = (
                await Tenant.exists()
                .where((Tenant.custom_domain == domain) & (Tenant.id != tenant_id))
                .run()
            )
            if taken:
                raise DomainTaken(domain)
        row = await Tenant.select(Tenant.custom_domain).where(Tenant.id == tenant_id).first().run()
        old = (row or {}).get("custom_domain") or ""
        await (
            Tenant.update({Tenant.custom_domain: domain or None})
            .where(Tenant.id == tenant_id)
            .run()
        )
        await activity.record(tenant_id, actor, "domain.changed", "Own domain", old, domain or "")


class DomainTaken(Exception):
    """Another business already uses the domain."""


async def _set_downloadable(
    tenant_id: int, unit_ids: set[int], actor: activity.Actor = activity.SYSTEM
) -> None:
    ids = sorted(unit_ids)
    on = BusinessUnit.tenant == tenant_id
    units = await BusinessUnit.select().where(on).order_by(BusinessUnit.name).run()
    old = [u["name"] for u in units if u["invoices_downloadable"]]
    new = [u["name"] for u in units if u["id"] in unit_ids]
    if old != new:
        name = SETTING_NAMES["downloadable_units"]
        await activity.record(tenant_id, actor, "setting.changed", name, _shown(old), _shown(new))
    if ids:
        await (
            BusinessUnit.update({BusinessUnit.invoices_downloadable: True})
            .where(on & BusinessUnit.id.is_in(ids))
            .run()
        )
        await (
            BusinessUnit.update({BusinessUnit.invoices_downloadable: False})
            .where(on & BusinessUnit.id.not_in(ids))
            .run()
        )
    else:
        await BusinessUnit.update({BusinessUnit.invoices_downloadable: False}).where(on).run()


async def accept_legal(tenant_id: int, staff_email: str) -> bool:
    """Record that an administrator accepted the legal agreement (once: the first stays)."""
    async with transaction():
        rows = await (
            Tenant.update(
                {Tenant.legal_accepted_at: datetime.now(UTC), Tenant.legal_accepted_by: staff_email}
            )
            .where((Tenant.id == tenant_id) & Tenant.legal_accepted_at.is_null())
            .returning(Tenant.id)
            .run()
        )
        if rows:
            await activity.record(
                tenant_id,
                activity.Actor(staff_email),
                "agreement.accepted",
                "Legal agreement",
                "Not accepted",
                "Accepted",
            )
    return bool(rows)


async def save_logo(
    tenant_id: int,
    png: bytes,
    actor: activity.Actor = activity.SYSTEM,
    *,
    png_2x: bytes = b"",
    width: int = 0,
) -> None:
    """Store a processed logo (with its copy for 2× screens, if any, and its width in CSS
    pixels) under a new version, so the logo's URL (cached as immutable) changes. Versions grow with the clock, so a logo removed and uploaded again never
    reuses an old URL."""
    async with transaction():
        row = await Tenant.select(Tenant.logo_version).where(Tenant.id == tenant_id).first().run()
        current = row["logo_version"] if row else 0
        version = max(current + 1, int(time.time()) - LOGO_EPOCH)
        await activity.record(
            tenant_id,
            actor,
            "setting.changed",
            "Logo",
            "A logo" if current else "No logo",
            "A new logo",
        )
        await (
            Tenant.update(
                {
                    Tenant.logo: png,
                    Tenant.logo_2x: png_2x or None,
                    Tenant.logo_width: width,
                    Tenant.logo_sharp: bool(png_2x),
                    Tenant.logo_content_type: "image/png",
                    Tenant.logo_version: version,
                }
            )
            .where(Tenant.id == tenant_id)
            .run()
        )


async def remove_logo(tenant_id: int, actor: activity.Actor = activity.SYSTEM) -> None:
    """Drop the logo: the business's name shows alone in the header (version 0: no logo)."""
    async with transaction():
        await (
            Tenant.update(
                {
                    Tenant.logo: None,
                    Tenant.logo_2x: None,
                    Tenant.logo_width: 0,
                    Tenant.logo_sharp: False,
                    Tenant.logo_content_type: "",
                    Tenant.logo_version: 0,
                }
            )
            .where(Tenant.id == tenant_id)
            .run()
        )
        await activity.record(tenant_id, actor, "setting.changed", "Logo", "A logo", "No logo")


async def link_payment_account(
    tenant_id: int, account_id: str, actor: activity.Actor = activity.SYSTEM
) -> bool:
    """Link the one payment account of the portal; False if one is linked already."""
    async with transaction():
        rows = await (
            Tenant.update({Tenant.payment_account_id: account_id})
            .where((Tenant.id == tenant_id) & (Tenant.payment_account_id == ""))
            .returning(Tenant.id)
            .run()
        )
        if rows:
            await payment_accounts.record_linked(tenant_id, account_id)
            await activity.record(
                tenant_id, actor, "payment_account.linked", "Payment account", "None", account_id
            )
    return bool(rows)


async def unlink_payment_account(
    tenant_id: int, account_id: str, actor: activity.Actor = activity.SYSTEM
) -> bool:
    """Unlink the payment account `account_id`; card payments stop with it. The account
    is remembered (its payments still settle on it). False if it was not linked."""
    async with transaction():
        rows = await (
            Tenant.update({Tenant.payment_account_id: "", Tenant.payments_enabled: False})
            .where((Tenant.id == tenant_id) & (Tenant.payment_account_id == account_id))
            .returning(Tenant.id)
            .run()
        )
        if rows and account_id:
            await payment_accounts.record_unlinked(tenant_id, account_id)
            await activity.record(
                tenant_id, actor, "payment_account.unlinked", "Payment account", account_id, "None"
            )
    return bool(rows)
