"""Card checks of the sandbox gateway's hosted page: number (Luhn), expiry, security code,
and the test cards that succeed or are declined.

Nothing here stores or logs a card number; callers keep only brand and last four.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from portal.forms import Checked

# Test cards: number -> decline reason (None: the payment succeeds).
TEST_CARDS: dict[str, str | None] = {
    "4242424242424242": None,
    "5555555555554444": None,
    "378282246310005": None,
    "4000000000000002": "Your card was declined.",
    "4000000000009995": "Your card has insufficient funds.",
}
SEPARATORS = re.compile(r"[\s-]+")
EXPIRY = re.compile(r"^(\d{1,2})\s*/\s*(\d{2}|\d{4})$|^(\d{2})(\d{2})$")  # "04 / 29" or "0429"
MAX_YEARS_AHEAD = 20


def digits_only(number: str) -> str:
    """The card number without the spaces and dashes people type."""
    return SEPARATORS.sub("", number or "")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every card number carries."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def brand_of(digits: str) -> str:
    """The card brand from the number's first digits."""
    if digits.startswith(("34", "37")):
        return "American Express"
    if digits.startswith("4"):
        return "Visa"
    if digits[:2] in {"51", "52", "53", "54", "55"} or (
        len(digits) >= 4 and 2221 <= int(digits[:4]) <= 2720
    ):
        return "Mastercard"
    if digits.startswith(("6011", "65")):
        return "Discover"
    return "Card"


@dataclass
class Card:
    """A card as checked: its brand, last four digits and outcome (never the number)."""

    brand: str = ""
    last4: str = ""
    decline_reason: str | None = None  # None: the card is accepted


def clean_expiry(value: str, today: date) -> tuple[str, str | None]:
    """An "MM / YY" expiry date as typed (trimmed), and its problem: the card is good until
    the end of its expiry month."""
    value = (value or "").strip()
    match = EXPIRY.match(value)
    if not match:
        return value, "Enter the expiry date as MM / YY, for example 04 / 29."
    if match.group(1):
        month, year = int(match.group(1)), int(match.group(2))
    else:
        month, year = int(match.group(3)), int(match.group(4))
    if not 1 <= month <= 12:
        return value, "Enter a month from 01 to 12."
    if year < 100:
        year += 2000
    if (year, month) < (today.year, today.month):
        return value, "This card has expired. Check the date or use another card."
    if year > today.year + MAX_YEARS_AHEAD:
        return value, "Check the expiry year."
    return value, None


def clean_number(value: str) -> tuple[str, str | None]:
    """The card number's digits (spaces and dashes dropped): a valid number (Luhn) that is
    one of the test cards."""
    digits = digits_only(value)
    if not digits:
        return digits, "Enter the card number."
    if not digits.isdigit():
        return digits, "Enter the card number using digits only."
    if not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        return digits, "That card number isn't valid. Check it and try again."
    if digits not in TEST_CARDS:
        return digits, (
            "This is a test payment page: use a test card such as 4242 4242 4242 4242. "
            "Real cards are never charged here."
        )
    return digits, None


def clean_cvc(value: str, digits: str) -> tuple[str, str | None]:
    """The security code: 4 digits on American Express cards (by the number's `digits`),
    3 on others."""
    code = (value or "").strip()
    amex = brand_of(digits) == "American Express" if digits.isdigit() else False
    if not code:
        return code, "Enter the security code (CVC) from the back of the card."
    if not code.isdigit() or len(code) != (4 if amex else 3):
        return code, (
            "The security code is 4 digits on American Express cards."
            if amex
            else "The security code is the 3 digits on the back of the card."
        )
    return code, None


def check_card(number: str, expiry: str, cvc: str, today: date) -> Checked[Card | None]:
    """Check what was typed on the card page, as a card provider would (`forms.Checked`):
    the card (None while there are problems), the expiry to show again (never the number
    or the code), the problems by field."""
    digits, number_problem = clean_number(number)
    _, expiry_problem = clean_expiry(expiry, today)
    _, cvc_problem = clean_cvc(cvc, digits)
    problems = {
        field: problem
        for field, problem in (
            ("number", number_problem),
            ("expiry", expiry_problem),
            ("cvc", cvc_problem),
        )
        if problem
    }
    card = None
    if not problems:
        card = Card(brand_of(digits), digits[-4:], TEST_CARDS[digits])
    return Checked(card, problems=problems, values={"expiry": expiry})
