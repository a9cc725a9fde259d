"""Office staff accounts."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from portal.auth.passwords import hash_password
from portal.auth.policy import normalize, password_problem
from portal.db.tables import StaffUser, Tenant
from portal.forms import one_line


async def create_staff(host: str, email: str, name: str, role: str, password: str) -> str | None:
    """Add a staff member to the business at `host`; returns a problem, or None when created."""
    if role not in ("admin", "office"):
        return "role must be admin or office"
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"{email!r} is not a valid email address ({exc})"
    tenant = await Tenant.select(Tenant.id, Tenant.name).where(Tenant.host == host).first().run()
    if tenant is None:
        return f"no business has the host name {host!r}"
    password = normalize(password)
    problem = password_problem(password, business_name=tenant["name"], email=email)
    if problem:
        return problem
    exists = (
        await StaffUser.exists()
        .where((StaffUser.tenant == tenant["id"]) & (StaffUser.email == email))
        .run()
    )
    if exists:
        return f"{email} is already a staff member of {host}"
    await StaffUser.insert(
        StaffUser(
            tenant=tenant["id"],
            email=email,
            name=one_line(name)[:120],  # shown in the office's header, one line
            role=role,
            password_hash=await hash_password(password),
        )
    ).run()
    return None
