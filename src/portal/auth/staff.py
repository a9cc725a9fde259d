"""Office staff accounts: who may be added, adding one from the office (with the emailed
link to choose a first password), and which passwords staff may choose (the same policy as
customers': auth/policy.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from portal.auth import links
from portal.auth.passwords import hash_password
from portal.auth.policy import normalize, password_problem
from portal.config import Settings
from portal.db import activity
from portal.db import staff as staff_db
from portal.db.engine import transaction
from portal.db.rows import TenantRow
from portal.db.tables import StaffUser, Tenant
from portal.forms import Checked, clean_email, count_text, one_line

NAME_MAX = 120
NAME_READ = 1000  # characters of a name read from the form (plus one)


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


# --- the office's Add staff form ----------------------------------------------------------------


@dataclass(frozen=True)
class NewStaff:
    """A checked Add staff form, ready to add."""

    name: str
    email: str
    role: str


def clean_name(value: str) -> tuple[str, str | None]:
    """A staff member's name: one line, up to `NAME_MAX` characters."""
    name = one_line(value[: NAME_READ + 1])
    if not name:
        return name, "Enter their name."
    if len(name) > NAME_MAX:
        return (
            name,
            f"Use at most {NAME_MAX} characters (this has {count_text(len(name), NAME_READ)}).",
        )
    return name, None


def clean_staff_email(value: str) -> tuple[str, str | None]:
    """Their email (`forms.clean_email`, its messages about "their" email)."""
    email, problem = clean_email(value)
    return email, problem.replace("your email", "their email") if problem else None


def clean_role(value: str) -> tuple[str, str | None]:
    """One of `db.staff.ROLES`."""
    return value, None if value in staff_db.ROLES else "Choose Administrator or Office."


def check_new_staff(form: Mapping[str, str]) -> Checked[NewStaff | None]:
    """Check the Add staff form (`forms.Checked`): the staff member to add (None while
    there are problems), the form to show again, the problems by field. Whether the email
    is on the staff already is found when adding (`add_staff`)."""
    name, name_problem = clean_name(form.get("name", ""))
    email, email_problem = clean_staff_email(form.get("email", ""))
    role, role_problem = clean_role(form.get("role", ""))
    problems = {
        field: problem
        for field, problem in (
            ("name", name_problem),
            ("email", email_problem),
            ("role", role_problem),
        )
        if problem
    }
    values = {"name": name, "email": email, "role": role if not role_problem else "office"}
    return Checked(None if problems else NewStaff(name, email, role), problems, values)


async def add_staff(
    settings: Settings,
    tenant: TenantRow,
    *,
    name: str,
    email: str,
    role: str,
    added_by: dict[str, str],
) -> dict[str, Any]:
    """Add a staff member from the office (no password yet) and email them a link to
    choose one, in one transaction; raises `db.staff.StaffProblem` when the email is
    already on the staff. Call `portal.mail.worker.wake()` after."""
    async with transaction():
        member = await staff_db.insert_staff(
            tenant["id"], name=name, email=email, role=role, actor=activity.Actor(added_by["email"])
        )
        await links.send_reset_link(settings, tenant, member, added_by, welcome=True)
    return member
