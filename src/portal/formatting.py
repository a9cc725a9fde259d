"""How the portal writes money, dates and times for people: one home for each, used by
pages (as the Jinja filters in `FILTERS`, registered once by `web.Renderer`), emails,
PDFs and office alerts alike. Money is integer cents; moments are UTC datetimes shown
in the business's time zone; dates without a time are the business's calendar dates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "€", "GBP": "£"}


def money(cents: int | None, currency: str = "USD") -> str:
    """Format integer cents as money: 123456 -> "$1,234.56"."""
    if cents is None:
        return ""
    symbol = CURRENCY_SYMBOLS.get(currency) or currency + " "
    if cents < 0:
        return "-" + money(-cents, currency)
    whole, part = divmod(int(cents), 100)
    return f"{symbol}{whole:,}.{part:02d}"


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(value: date | datetime | str | None, tz: str | None = None) -> str:
    """A date as people write it: "Nov 3, 2026" (datetimes shown in the business's zone)."""
    if type(value) is not date:  # a plain date is the common case (a row per invoice)
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = date.fromisoformat(value[:10])
        if isinstance(value, datetime):
            if tz:
                value = value.astimezone(ZoneInfo(tz))
            value = value.date()
    return f"{MONTHS[value.month - 1]} {value.day}, {value.year}"


def format_day(value: date | datetime | str | None, tz: str | None = None) -> str:
    """A day to plan around (a visit, an appointment, a preferred date), in the one date
    style with its weekday: "Tue, Nov 3, 2026"."""
    text = format_date(value, tz)
    if value is None or not text:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime) and tz:
        value = value.astimezone(ZoneInfo(tz))
    return f"{value:%a}, {text}"


def format_datetime(value: datetime | None, tz: str | None = None) -> str:
    """A moment in the business's time zone: "Nov 3, 2026, 2:05 PM"."""
    if value is None:
        return ""
    if tz:
        value = value.astimezone(ZoneInfo(tz))
    hour = value.hour % 12 or 12
    ampm = "AM" if value.hour < 12 else "PM"
    return f"{format_date(value)}, {hour}:{value.minute:02d} {ampm}"


# --- days and arrival windows as customers read them -------------------------------------------


def business_now(tenant: Mapping[str, Any]) -> datetime:
    """Now, in the business's time zone (its calendar decides what "today" is)."""
    return datetime.now(UTC).astimezone(ZoneInfo(tenant["time_zone"]))


def day_text(day: date, today: date | None = None) -> str:
    """ "Tue, Dec 3, 2026": the portal's one date style, with the weekday (`today` is
    accepted for callers that pass it; the year is always written)."""
    return format_day(day)


def _hour_minute(hhmm: str) -> tuple[int, int] | None:
    hours, _, minutes = hhmm.partition(":")
    if not (hours.isdigit() and (minutes or "0").isdigit()):
        return None
    return int(hours), int(minutes or 0)


def clock(hhmm: str, with_period: bool = True) -> str:
    """ "08:00" -> "8 AM", "13:30" -> "1:30 PM" (US customers read a 12-hour clock)."""
    parsed = _hour_minute(hhmm)
    if parsed is None:  # not a clock time: show what the office entered
        return hhmm
    hour, minute = parsed
    text = str(hour % 12 or 12) + (f":{minute:02d}" if minute else "")
    return f"{text} {'AM' if hour < 12 else 'PM'}" if with_period else text


def window_text(start: str, end: str) -> str:
    """An arrival window: "8 AM–12 PM", or "12–4 PM" when both ends share AM/PM."""
    a, b = _hour_minute(start), _hour_minute(end)
    if a is not None and b is not None and (a[0] < 12) == (b[0] < 12):
        return f"{clock(start, with_period=False)}–{clock(end)}"
    return f"{clock(start)}–{clock(end)}"


def appointment_text(
    start: datetime, end: datetime | None, tz: str, today: date | None = None
) -> str:
    """A booked time in the business's zone: "Tue, Dec 3, 2026 · 8 AM–12 PM"."""
    zone = ZoneInfo(tz)
    local_start = start.astimezone(zone)
    text = f"{day_text(local_start.date(), today)} · "
    if end is not None and end.astimezone(zone).date() == local_start.date():
        return text + window_text(f"{local_start:%H:%M}", f"{end.astimezone(zone):%H:%M}")
    return text + f"from {clock(f'{local_start:%H:%M}')}"


# The template filters: `{{ cents|money(tenant.currency) }}`, `{{ day|date }}`,
# `{{ day|day }}` (with its weekday), `{{ moment|datetime(tenant.time_zone) }}`, `{{ "08:00"|clock }}`.
FILTERS: dict[str, Callable[..., str]] = {
    "money": money,
    "date": format_date,
    "day": format_day,
    "datetime": format_datetime,
    "clock": clock,
}
