"""Settings › Customer Portal: the rules each setting's value must follow, and the writes.

Cleaning functions take what a form sent and return `(value, problem)`; a problem is
a sentence for the office, shown next to the field, and means nothing is saved.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
import sqlite3
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from email_validator import EmailNotValidError, validate_email
from PIL import Image, UnidentifiedImageError

from portal.db import payment_accounts
from portal.db.engine import transaction
from portal.db.tables import BusinessUnit, Tenant
from portal.forms import count_text, multi_line, one_line

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

# --- host -------------------------------------------------------------------------------------

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
        return message, (f"Use at most 1,000 characters (this has {_has(message, value)}).")
    return message, None


def clean_units(values: list[str], units: list[dict[str, Any]]) -> tuple[set[int], str | None]:
    """The business units whose invoices customers may view and download."""
    known = {str(u["id"]): u["id"] for u in units}
    if any(v not in known for v in values):
        return set(), "Choose business units from the list."
    return {known[v] for v in values}, None


# --- logo ----------------------------------------------------------------------------------

LOGO_HEIGHT = 50
LOGO_EPOCH = 1_577_836_800  # 2020-01-01: logo versions count seconds from here (fit 32 bits)
MAX_LOGO_BYTES = 2 * 1024 * 1024
# 4,000 × 4,000: takes a 12-megapixel phone photo of a van's decal, refuses the 36- and
# 81-megapixel files that decode to hundreds of MB. Checked from the file's header before
# anything is decoded; decoded, such an image is at most 64 MB (4 bytes a pixel).
MAX_LOGO_PIXELS = 16_000_000
MAX_LOGO_RATIO = 10  # width at most ten times the height
# Logos are decoded in one thread per process: uploads at once wait their turn instead
# of each holding a large decoded image (four at once took a server to 1.2 GiB), and the
# memory one decode used is reused by the next (in one thread, one malloc arena).
LOGO_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logo")
# Shrink to about this many times the final height before the smooth resize (a JPEG is
# decoded at that reduced size right away).
DECODE_HEIGHT = LOGO_HEIGHT * 4
TRANSPOSE = {  # EXIF orientation -> the turn that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
DECLARED_FORMATS = {
    "image/png": "PNG",
    "image/x-png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/svg+xml": "SVG",
    "image/tiff": "TIFF",
    "image/heic": "HEIC",
}
EXTENSION_FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "svg": "SVG",
    "tif": "TIFF",
    "tiff": "TIFF",
    "heic": "HEIC",
}
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
UPLOAD_KINDS = "a PNG, JPEG or WebP image"


def _format_name(fmt: str) -> str:
    return FORMAT_NAMES.get(fmt, fmt)


async def read_logo(
    data: bytes, filename: str, content_type: str, size: int | None = None
) -> tuple[bytes, str | None]:
    """`process_logo` in the logo thread (the event loop keeps serving meanwhile); `size`
    is the whole upload's size in bytes when known (`data` may be only its start)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(LOGO_THREAD, process_logo, data, filename, content_type, size)


def process_logo(
    data: bytes, filename: str = "", content_type: str = "", size: int | None = None
) -> tuple[bytes, str | None]:
    """Check an uploaded logo and return it as a PNG 50 px high (metadata dropped).

    Refused: empty, over 2 MB, not an image, not PNG/JPEG/WebP, a file whose name or
    declared type says one image format while its content is another, a damaged file,
    or more than MAX_LOGO_PIXELS pixels (read from the header: nothing is decoded).
    Decoding is bounded: a JPEG is decoded at a reduced scale, and every image shrunk
    before it is converted or turned. Run it in the logo thread (`read_logo`).
    """
    if not data:
        return b"", f"Choose a logo file to upload ({UPLOAD_KINDS})."
    if len(data) > MAX_LOGO_BYTES:
        # Only the first 2 MB and a byte are read: say the real size when the upload knows
        # it, never the size of the part that was read.
        if size is None:
            return b"", "That file is more than 2 MB; a logo can be at most 2 MB."
        return b"", f"That file is {size / (1024 * 1024):.1f} MB; a logo can be at most 2 MB."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return b"", "That image has far too many pixels for a logo. Use a smaller image."
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return b"", f"That file isn't an image we can read. Upload {UPLOAD_KINDS}."
    actual = image.format or ""
    if actual not in ALLOWED_FORMATS:
        return b"", f"That file is a {_format_name(actual)} image. Upload {UPLOAD_KINDS}."
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    declared = [
        DECLARED_FORMATS.get(content_type.split(";")[0].strip().lower()),
        EXTENSION_FORMATS.get(extension),
    ]
    for claim in declared:
        if claim is not None and claim != actual:
            return b"", (
                f"That file says it is a {_format_name(claim)} image but it is really a "
                f"{_format_name(actual)} image. Save it again as {UPLOAD_KINDS} and upload that."
            )
    width, height = image.size
    if width < 1 or height < 1:
        return b"", f"That image file is damaged or incomplete. Upload {UPLOAD_KINDS}."
    if width * height > MAX_LOGO_PIXELS:
        return b"", (
            f"That image is {width} × {height} pixels ({width * height / 1e6:.0f} megapixels): "
            f"far too many pixels for a logo. A logo can have at most "
            f"{MAX_LOGO_PIXELS // 1_000_000} megapixels (4,000 × 4,000); save a smaller copy "
            "and upload that."
        )
    if width > height * MAX_LOGO_RATIO:
        return b"", (
            f"That image is {width} × {height} pixels: too wide for a logo 50 pixels high. "
            f"Use an image at most {MAX_LOGO_RATIO} times as wide as it is high."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            resized = _decode_small(image)
            out = io.BytesIO()
            resized.save(out, format="PNG", optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, EOFError):
        return b"", f"That image file is damaged or incomplete. Upload {UPLOAD_KINDS}."
    return out.getvalue(), None


def _decode_small(image: Image.Image) -> Image.Image:
    """Decode `image` (opened, checked) into the logo: upright, RGB or RGBA, 50 px high.
    It is shrunk as early as it can be: a JPEG decodes straight at 1/2, 1/4 or 1/8 of
    its size, anything else is box-reduced right after decoding; converting and turning
    happen on the small copy."""
    orientation = image.getexif().get(0x0112)
    if image.format == "JPEG":
        image.draft(None, (DECODE_HEIGHT, DECODE_HEIGHT))  # keeps both sides >= that
    image.load()
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = image.mode in ("LA", "PA", "P") and (
            image.mode != "P" or "transparency" in image.info
        )
        image = image.convert("RGBA" if has_alpha or "A" in image.mode else "RGB")
    factor = min(image.size) // DECODE_HEIGHT
    if factor > 1:
        image = image.reduce(factor)
    if orientation in TRANSPOSE:
        image = image.transpose(TRANSPOSE[orientation])
    new_width = max(1, round(image.width * LOGO_HEIGHT / image.height))
    return image.resize((new_width, LOGO_HEIGHT), Image.Resampling.LANCZOS)


# --- writes -----------------------------------------------------------------------------------


class HostTaken(Exception):
    """Another business already uses the host name."""


HOST_TAKEN_MESSAGE = "Another business already uses that name, please choose another."


@dataclass
class Changes:
    """Settings to store: Tenant columns and, optionally, the downloadable business units."""

    columns: dict[str, Any]
    downloadable_units: set[int] | None = None


def _column_value(key: str, value: Any) -> Any:
    if key in ("service_types", "membership_statuses"):
        return json.dumps(value)
    return value


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
    tenant: dict[str, Any],
    units: list[dict[str, Any]],
) -> tuple[Changes, dict[str, Any], dict[str, str]]:
    """Check the settings `keys` from a form: (changes to store, values to show, errors)."""
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
    return Changes(columns=columns, downloadable_units=downloadable), values, errors


async def host_taken(tenant_id: int, host: str) -> bool:
    """Another business already uses `host` (checked before asking to move the portal;
    `save` checks again, as the name may be claimed in between)."""
    return await Tenant.exists().where((Tenant.host == host) & (Tenant.id != tenant_id)).run()


async def save(tenant_id: int, changes: Changes) -> None:
    """Store settings in one transaction; raises `HostTaken` (and stores nothing) when the
    new host name belongs to another business."""
    try:
        async with transaction():
            host = changes.columns.get("host")
            if host is not None:
                taken = (
                    await Tenant.exists()
                    .where((Tenant.host == host) & (Tenant.id != tenant_id))
                    .run()
                )
                if taken:
                    raise HostTaken(host)
            if changes.columns:
                values = {
                    getattr(Tenant, key): _column_value(key, value)
                    for key, value in changes.columns.items()
                }
                await Tenant.update(values).where(Tenant.id == tenant_id).run()
            if changes.downloadable_units is not None:
                await _set_downloadable(tenant_id, changes.downloadable_units)
    except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as exc:
        # Two businesses claimed the same new name at the same moment: the unique index
        # let one through.
        if "host" in str(exc):
            raise HostTaken(changes.columns.get("host", "")) from exc
        raise


async def _set_downloadable(tenant_id: int, unit_ids: set[int]) -> None:
    ids = sorted(unit_ids)
    on = BusinessUnit.tenant == tenant_id
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
    rows = await (
        Tenant.update(
            {Tenant.legal_accepted_at: datetime.now(UTC), Tenant.legal_accepted_by: staff_email}
        )
        .where((Tenant.id == tenant_id) & Tenant.legal_accepted_at.is_null())
        .returning(Tenant.id)
        .run()
    )
    return bool(rows)


async def save_logo(tenant_id: int, png: bytes) -> None:
    """Store a processed logo under a new version, so the logo's URL (cached as immutable)
    changes. Versions grow with the clock, so a logo removed and uploaded again never
    reuses an old URL."""
    async with transaction():
        row = await Tenant.select(Tenant.logo_version).where(Tenant.id == tenant_id).first().run()
        current = row["logo_version"] if row else 0
        version = max(current + 1, int(time.time()) - LOGO_EPOCH)
        await (
            Tenant.update(
                {
                    Tenant.logo: png,
                    Tenant.logo_content_type: "image/png",
                    Tenant.logo_version: version,
                }
            )
            .where(Tenant.id == tenant_id)
            .run()
        )


async def remove_logo(tenant_id: int) -> None:
    """Drop the logo: the business's name shows alone in the header (version 0: no logo)."""
    await (
        Tenant.update({Tenant.logo: None, Tenant.logo_content_type: "", Tenant.logo_version: 0})
        .where(Tenant.id == tenant_id)
        .run()
    )


def new_sandbox_account_id() -> str:
    """A new account at the sandbox gateway (stands in for signing up with a provider)."""
    return f"sandbox_acct_{secrets.token_hex(8)}"


async def link_payment_account(tenant_id: int, account_id: str) -> bool:
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
    return bool(rows)


async def unlink_payment_account(tenant_id: int, account_id: str) -> bool:
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
    return bool(rows)
