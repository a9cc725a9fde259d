"""Office staff accounts: who may be added, and which passwords staff may choose (the same
policy as customers': auth/policy.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from email_validator import EmailNotValidError, validate_email

from portal.auth.passwords import hash_password
from portal.auth.policy import normalize, password_problem
from portal.db.tables import StaffUser, Tenant
from portal.forms import one_line


def staff_password_problem(password: str, tenant: Mapping[str, Any], email: str) -> str | None:
    """Why a staff member of `tenant` with `email` cannot use `password` (None: fine)."""
    return password_problem(normalize(password), business_name=tenant["name"], email=email)


async def new_staff_problem(
    host: str, email: str, role: str
) -> tuple[dict[str, Any] | None, str, str | None]:
    """(business, normalized email, problem) for adding `email` as staff at `host`: checked
    before asking for a password, and again when creating."""
    if role not in ("admin", "office"):
        return None, email, "role must be admin or office"
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return None, email, f"{email!r} is not a valid email address ({exc})"
    tenant = await Tenant.select(Tenant.id, Tenant.name).where(Tenant.host == host).first().run()
    if tenant is None:
        return None, email, f"no business has the host name {host!r}"
    exists = (
        await StaffUser.exists()
        .where((StaffUser.tenant == tenant["id"]) & (StaffUser.email == email))
        .run()
    )
    if exists:
        return tenant, email, f"{email} is already a staff member of {host}"
    return tenant, email, None


async def create_staff(host: str, email: str, name: str, role: str, password: str) -> str | None:
    """Add a staff member to the business at `host`; returns a problem, or None when created."""
    tenant, email, problem = await new_staff_problem(host, email, role)
    if problem or tenant is None:
        return problem
    problem = staff_password_problem(password, tenant, email)
    if problem:
        return problem
    await StaffUser.insert(
        StaffUser(
            tenant=tenant["id"],
            email=email,
            name=one_line(name)[:120],  # shown in the office's header, one line
            role=role,
            password_hash=await hash_password(normalize(password)),
        )
    ).run()
    return None
