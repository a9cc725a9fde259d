"""Form rules shared by every way text enters the portal (office forms, `portal import`,
any future API): plain functions, no imports from handlers or the database — text
folding, ids, emails, days, and the one convention every form check follows (below).

One-line text (a business, customer or staff name, an email subject) must stay on one
line: it ends up in email headers, where a line break either ends the header or makes
Python's email package refuse to build the message, and in page headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar

from email_validator import EmailNotValidError, validate_email

T = TypeVar("T")

# Every character that breaks a line or is a control character: C0 controls (tab, line
# feed, vertical tab, form feed, carriage return and the file/group/record separators
# among them), DEL, C1 controls (NEL U+0085 among them), the line and paragraph
# separators U+2028/U+2029, and lone surrogates (not encodable in UTF-8 at all).
# Format characters such as the zero-width joiner stay: they are part of names and emoji.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Line breaks in multi-line text, longest first so CRLF counts once.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` on one line: every line break and control character folded to a space,
    runs of spaces collapsed, trimmed ("XYZ\\u2028Services" → "XYZ Services")."""
    return " ".join(_BREAKING.sub(" ", value).split())


def is_one_line(value: str) -> bool:
    """True if `value` has no line break or control character (what `one_line` folds)."""
    return _BREAKING.search(value) is None


def count_text(count: int, read_limit: int) -> str:
    """A length for a "(this has …)" message: the real count, or "more than <read_limit>"
    when the field was longer than the portal reads of it (callers cut text at
    `read_limit + 1` characters, so a longer field is told apart without keeping it all)."""
    return f"more than {read_limit:,}" if count > read_limit else f"{count:,}"


def multi_line(value: str) -> str:
    """Text of several lines (a message, a reason, an email's body): every kind of line
    break becomes "\\n", other control characters (tabs aside) a space; trimmed."""
    text = _LINE_BREAK.sub("\n", value)
    return _BREAKING.sub(lambda m: m.group(0) if m.group(0) in "\n\t" else " ", text).strip()


# --- the one validation convention ---------------------------------------------------------------
#
# Every field check is a `clean_*` function: what was typed in, `(clean value, problem)` out,
# the problem a sentence to show beside the field (None when the value is fine). A whole
# form is checked by one function that runs its fields' checks and returns `Checked`: what
# to act on, what to show again in the form, and the problems by field name. Handlers
# re-render with the problems (422) or act on the clean result; nothing else decides.

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL: the one limit for every id


@dataclass
class Checked(Generic[T]):
    """A form as checked: the clean result to act on, the values to show again when the
    form comes back, and its problems by field name; `ok` when there are none."""

    clean: T
    problems: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def record_id(value: str | None) -> int | None:
    """A row id from a URL, query string or form: digits within the database's integer
    range (beyond it names no record, and PostgreSQL would refuse it), else None."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


def clean_email(value: str) -> tuple[str, str | None]:
    """(normalized email, problem) for what someone typed in an email field."""
    value = value.strip()[:320]
    if not value:
        return "", "Enter your email address."
    try:
        return validate_email(value, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError:
        return value, "Enter an email address like name@example.com."


ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
US_DAY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def parse_day(value: str) -> date | None:
    """A date typed as 2026-12-03 (what date pickers send) or 12/3/2026; else None."""
    value = value.strip()
    try:
        if ISO_DAY.match(value):
            return date.fromisoformat(value)
        match = US_DAY.match(value)
        if match:
            month, day, year = (int(g) for g in match.groups())
            return date(year, month, day)
    except ValueError:
        return None
    return None


# --- host (Settings › Customer Portal, `portal import`, the sync API) -------------------------------------------------------------------------------------

HOST_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
# fmt: off
RESERVED_HOSTS = frozenset({
    "www", "www1", "www2", "web", "admin", "administrator", "api", "apis", "mail", "email",
    "webmail", "mx", "mx1", "mx2", "smtp", "imap", "pop", "pop3", "ns", "ns1", "ns2", "ns3",
    "ns4", "dns", "ftp", "sftp", "ssh", "vpn", "portal", "portals", "help", "support", "status",
    "static", "assets", "cdn", "media", "images", "img", "files", "upload", "uploads", "download",
    "downloads", "app", "apps", "localhost", "local", "test", "tests", "testing", "dev",
    "develop", "development", "staging", "stage", "prod", "production", "demo", "sandbox",
    "billing", "payments", "pay", "checkout", "invoice", "invoices", "login", "logout", "signin",
    "signup", "sign-in", "sign-up", "register", "auth", "oauth", "sso", "account", "accounts",
    "my", "office", "secure", "security", "dashboard", "console", "root", "system", "sys",
    "server", "host", "hostmaster", "postmaster", "webmaster", "abuse", "noreply", "no-reply",
    "info", "contact", "about", "blog", "docs", "documentation", "wiki", "news", "shop", "store",
    "internal", "intranet", "example",
})
# fmt: on
RESERVED_MESSAGE = "That name is reserved, please choose another."


def clean_host(value: str) -> tuple[str, str | None]:
    """A portal host name: 3–40 lowercase letters, digits and inner hyphens, not reserved.
    (Whether another business has it is checked when saving.)"""
    host = value.strip().lower()
    if not host:
        return host, "Enter a host name, for example xyzplumbing."
    if len(host) < 3 or len(host) > 40:
        return host, "Use 3 to 40 characters."
    if not HOST_PATTERN.match(host):
        return host, (
            "Use only lowercase letters, digits and hyphens (not at the start or end), "
            "for example xyz-plumbing."
        )
    # Reserved words, and punycode (xn--) names, which browsers show as other characters.
    if host in RESERVED_HOSTS or host.startswith("xn--"):
        return host, RESERVED_MESSAGE
    return host, None
