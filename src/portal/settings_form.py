"""Settings › Customer Portal: the rules each setting's value must follow.

Each field's check is a `clean_*` function that takes what a form sent and returns
`(value, problem)` (the convention of `portal/forms.py`); a problem is a sentence for
the office, shown next to the field, and means nothing is saved. `clean_form` checks a
whole form into the `Changes` that `db/office_settings.save` stores.
"""

from __future__ import annotations

import re
from typing import Any

from email_validator import EmailNotValidError, validate_email

from portal.db.office_settings import Changes
from portal.db.rows import TenantRow
from portal.forms import RESERVED_HOSTS as RESERVED_HOSTS  # re-exported: the form's rules
from portal.forms import RESERVED_MESSAGE as RESERVED_MESSAGE
from portal.forms import Checked, clean_host, count_text, multi_line, one_line

# --- which settings there are -------------------------------------------------------------

TOGGLES = ("portal_enabled", "scheduler_enabled", "memberships_enabled", "payments_enabled")
# Only an administrator changes these (besides the legal agreement and the payment account).
ADMIN_ONLY = ("host", "payments_enabled")
# Every setting the settings form carries, in the order of the page.
SETTINGS = (
    "portal_enabled",
    "scheduler_enabled",
    "service_types",
    "memberships_enabled",
    "membership_statuses",
    "recurring_service_message",
    "host",
    "name",
    "email",
    "phone",
    "downloadable_units",
    "payments_enabled",
)
HIDDEN_STATUSES = ("canceled", "expired", "suspended")

# --- host: the rule is in portal/forms.py, shared with `portal import` and the API ---------

# --- business information -----------------------------------------------------------------


# Characters of a typed setting read from a form: a longer field is cut here (plus one) and
# said to have "more than" this many.
FIELD_READ = 5000


def _has(cleaned: str, typed: str) -> str:
    """How long a typed setting is, for "(this has …)": the cleaned text's length, or
    "more than 5,000" when what was typed was cut on reading."""
    return count_text(len(typed) if len(typed) > FIELD_READ else len(cleaned), FIELD_READ)


def clean_name(value: str) -> tuple[str, str | None]:
    """The company's official name, 1–120 characters on one line."""
    name = one_line(value)
    if not name:
        return name, "Enter your company's name."
    if len(name) > 120:
        return name, f"Use at most 120 characters (this has {_has(name, value)})."
    return name, None


def clean_business_email(value: str) -> tuple[str, str | None]:
    """The email customers write to about the portal (may be left empty)."""
    email = value.strip()
    if not email:
        return "", None
    if len(email) > 254:
        return email, "Enter an email address like help@example.com."
    try:
        return validate_email(email, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError:
        return email, "Enter an email address like help@example.com."


PHONE_PATTERN = re.compile(
    r"^\+?[(0-9][0-9 ().\-]*[0-9](?:\s*(?:x|ext\.?|extension)\s*[0-9]{1,6})?$", re.I
)


def clean_phone(value: str) -> tuple[str, str | None]:
    """The phone customers call about the portal (may be left empty): 7 to 15 digits."""
    phone = one_line(value)
    if not phone:
        return "", None
    main = re.split(r"(?i)\s*(?:x|ext\.?|extension)\s*[0-9]", phone)[0]
    digits = sum(ch.isdigit() for ch in main)
    if len(phone) > 40 or not PHONE_PATTERN.match(phone) or not 7 <= digits <= 15:
        return phone, "Enter a phone number like (555) 010-4477 or +1 555 010 4477."
    return phone, None


def clean_service_types(value: str) -> tuple[list[str], str | None]:
    """Service types customers may request: one per line, each up to 80 characters."""
    names = [one_line(line) for line in value.splitlines()]
    names = [n for n in names if n]
    seen: set[str] = set()
    for name in names:
        if len(name) > 80:
            return names, f"“{name[:40]}…” is too long: use at most 80 characters per type."
        if name.casefold() in seen:
            return names, f"“{name}” is listed twice."
        seen.add(name.casefold())
    if len(names) > 30:
        return names, f"List at most 30 service types (there are {len(names)})."
    return names, None


def clean_statuses(values: list[str]) -> tuple[list[str], str | None]:
    """Membership statuses shown besides Active: any of canceled, expired, suspended."""
    unknown = [v for v in values if v not in HIDDEN_STATUSES]
    if unknown:
        return [], "Choose from Canceled, Expired and Suspended."
    return sorted(set(values)), None


def clean_message(value: str) -> tuple[str, str | None]:
    """The recurring service message shown on a membership's visits (up to 1,000 characters)."""
    message = multi_line(value)
    if len(message) > 1000:
        return message, f"Use at most 1,000 characters (this has {_has(message, value)})."
    return message, None


def clean_units(values: list[str], units: list[dict[str, Any]]) -> tuple[set[int], str | None]:
    """The business units whose invoices customers may view and download."""
    known = {str(u["id"]): u["id"] for u in units}
    if any(v not in known for v in values):
        return set(), "Choose business units from the list."
    return {known[v] for v in values}, None


# --- a settings form --------------------------------------------------------------------------


# Settings typed into one field, and the function that checks each.
TEXT_CLEANERS: dict[str, Any] = {
    "service_types": clean_service_types,
    "recurring_service_message": clean_message,
    "host": clean_host,
    "name": clean_name,
    "email": clean_business_email,
    "phone": clean_phone,
}


def _first(form: dict[str, list[str]], key: str) -> str:
    return (form.get(key) or [""])[0][: FIELD_READ + 1]


def clean_form(
    keys: tuple[str, ...] | list[str],
    form: dict[str, list[str]],
    tenant: TenantRow,
    units: list[dict[str, Any]],
) -> Checked[Changes]:
    """Check the settings `keys` from a form (`forms.Checked`): the changes to store, the
    values to show again, the problems by field."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    columns: dict[str, Any] = {}
    downloadable: set[int] | None = None
    for key in keys:
        problem: str | None = None
        value: Any
        if key in TOGGLES:
            value = bool(form.get(key))
        elif key in TEXT_CLEANERS:
            value, problem = TEXT_CLEANERS[key](_first(form, key))
        elif key == "membership_statuses":
            value, problem = clean_statuses(form.get(key, []))
            if problem:
                value = [v for v in form.get(key, []) if v in HIDDEN_STATUSES]
        elif key == "downloadable_units":
            value, problem = clean_units(form.get(key, []), units)
            if not problem:
                downloadable = value
        else:  # not a setting: a programming error, not the sender's
            raise ValueError(key)
        if key == "payments_enabled" and value and not tenant["payment_account_id"]:
            problem = "Link a payment account before turning on card payments."
        values[key] = value
        if problem:
            errors[key] = problem
        elif key != "downloadable_units" and not (key == "host" and value == tenant["host"]):
            columns[key] = value
    # The scheduler needs something customers can ask for.
    scheduler_on = values.get("scheduler_enabled", tenant["scheduler_enabled"])
    types = values.get("service_types", tenant["service_types"])
    if scheduler_on and not types and not errors.get("service_types"):
        if "service_types" in keys:
            errors["service_types"] = (
                "The scheduler needs at least one service type (or turn the scheduler off)."
            )
        else:
            errors["scheduler_enabled"] = (
                "Add at least one service type before turning on the scheduler."
            )
    if "service_types" in values and isinstance(values["service_types"], list):
        values["service_types"] = "\n".join(values["service_types"])
    changes = Changes(columns=columns, downloadable_units=downloadable)
    return Checked(changes, problems=errors, values=values)


# --- a business's own domain (`portal domain`) ---------------------------------------------


DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def clean_domain(value: str, base_domain: str) -> tuple[str, str | None]:
    """A business's own domain: a full host name such as portal.xyzplumbing.com, not
    under the portal's base domain (those are host names)."""
    domain = value.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(DOMAIN_LABEL.match(x) for x in labels):
        return domain, "Enter a full domain name, for example portal.xyzplumbing.com."
    if domain == base_domain or domain.endswith("." + base_domain):
        return domain, f"Names under {base_domain} are host names, not a business's own domain."
    return domain, None
