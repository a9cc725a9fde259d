"""API keys of the sync API: made and revoked by administrators in the office, used by the
business's own system on /api/v1/.

A key reads `portal_<prefix>_<secret>`. It is shown once, when made; the database keeps
the prefix (to find the row) and the SHA-256 of the whole key (to check it). SHA-256, not
argon2: the secret is 32 random bytes, so there is nothing to guess slowly, and every API
request checks one. A key belongs to one business and works only on that business's host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.db import activity
from portal.db.engine import transaction
from portal.db.tables import ApiKey
from portal.forms import Checked, one_line

SCOPES = {"read": "Read only", "write": "Read and write"}
MAX_NAME = 80
# last_used_at is written at most this often per key: every request writing it would make
# each read a write.
TOUCH_EVERY = timedelta(seconds=60)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def clean_name(value: str) -> tuple[str, str | None]:
    """A key's name (which system uses it), 1–80 characters on one line."""
    name = one_line(value)
    if not name:
        return name, "Name the key after the system that will use it, for example ServiceTitan."
    if len(name) > MAX_NAME:
        return name, f"Use at most {MAX_NAME} characters (this has {len(name)})."
    return name, None


def clean_scope(value: str) -> tuple[str, str | None]:
    """What the key may do: one of `SCOPES`."""
    return value, None if value in SCOPES else "Choose what the key may do."


@dataclass(frozen=True)
class NewKey:
    """A checked New key form, ready to make."""

    name: str
    scope: str


def check_new_key(form: dict[str, str]) -> Checked[NewKey | None]:
    """Check the office's New key form (`forms.Checked`): the key to make (None while there
    are problems), the form to show again, the problems by field."""
    name, name_problem = clean_name(form.get("name", "")[:1000])
    scope, scope_problem = clean_scope(form.get("scope", ""))
    problems = {
        field: problem
        for field, problem in (("name", name_problem), ("scope", scope_problem))
        if problem
    }
    values = {"name": name, "scope": scope}
    return Checked(None if problems else NewKey(name, scope), problems, values)


async def create(tenant_id: int, name: str, scope: str, created_by: str) -> tuple[int, str]:
    """Make a key; returns its id and the key itself (never stored, never shown again)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    prefix = secrets.token_hex(6)
    key = f"portal_{prefix}_{secrets.token_urlsafe(32)}"
    async with transaction():
        rows = (
            await ApiKey.insert(
                ApiKey(
                    tenant=tenant_id,
                    name=name,
                    prefix=prefix,
                    key_hash=_hash(key),
                    scope=scope,
                    created_by=created_by,
                )
            )
            .returning(ApiKey.id)
            .run()
        )
        await activity.record(
            tenant_id, activity.Actor(created_by), "api_key.created", name, "", SCOPES[scope]
        )
    return int(rows[0]["id"]), key


async def keys(tenant_id: int) -> list[dict[str, Any]]:
    """The business's keys, newest first, revoked ones included (without their hashes)."""
    return (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.prefix,
            ApiKey.scope,
            ApiKey.created_by,
            ApiKey.created_at,
            ApiKey.last_used_at,
            ApiKey.revoked_at,
        )
        .where(ApiKey.tenant == tenant_id)
        .order_by(ApiKey.id, ascending=False)
        .run()
    )


async def revoke(tenant_id: int, key_id: int, revoked_by: str) -> dict[str, Any] | None:
    """Revoke one of the business's keys (at once: the next request with it is refused).
    None if the business has no such key; revoking twice changes nothing."""
    async with transaction():
        key = (
            await ApiKey.select(ApiKey.id, ApiKey.name, ApiKey.revoked_at)
            .where((ApiKey.tenant == tenant_id) & (ApiKey.id == key_id))
            .first()
            .run()
        )
        if key is None or key["revoked_at"] is not None:
            return key
        await (
            ApiKey.update({ApiKey.revoked_at: datetime.now(UTC)})
            .where((ApiKey.tenant == tenant_id) & (ApiKey.id == key_id))
            .run()
        )
        await activity.record(
            tenant_id, activity.Actor(revoked_by), "api_key.revoked", key["name"], "active", ""
        )
    return key


async def authenticate(tenant_id: int, key: str) -> dict[str, Any] | None:
    """The live key `key` of this business (id, name, scope), or None: unknown, revoked,
    malformed, or another business's key. Notes when it was last used."""
    parts = key.split("_", 2)  # the secret may hold "_" too
    if len(parts) != 3 or parts[0] != "portal" or len(key) > 200:
        return None
    row = (
        await ApiKey.select(
            ApiKey.id, ApiKey.tenant, ApiKey.name, ApiKey.scope, ApiKey.key_hash, ApiKey.revoked_at
        )
        .where(ApiKey.prefix == parts[1])
        .first()
        .run()
    )
    if (
        row is None
        or not hmac.compare_digest(row["key_hash"], _hash(key))
        or row["tenant"] != tenant_id
        or row["revoked_at"] is not None
    ):
        return None
    now = datetime.now(UTC)
    await (
        ApiKey.update({ApiKey.last_used_at: now})
        .where(
            (ApiKey.id == row["id"])
            & (ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < now - TOUCH_EVERY))
        )
        .run()
    )
    return {"id": row["id"], "name": row["name"], "scope": row["scope"]}
