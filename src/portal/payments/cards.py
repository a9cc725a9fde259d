"""Card checks of the sandbox gateway's hosted page: number (Luhn), expiry, security code,
and the test cards that succeed or are declined.

Nothing here stores or logs a card number; callers keep only brand and last four.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

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
class CardCheck:
    """The result of checking a card form: errors by field, or the card and its outcome."""

    errors: dict[str, str] = field(default_factory=dict)
    brand: str = ""
    last4: str = ""
    decline_reason: str | None = None  # None: the card is accepted

    @property
    def ok(self) -> bool:
        return not self.errors


def check_expiry(value: str, today: date) -> str | None:
    """A problem with an "MM / YY" expiry date, or None."""
    match = EXPIRY.match((value or "").strip())
    if not match:
        return "Enter the expiry date as MM / YY, for example 04 / 29."
    if match.group(1):
        month, year = int(match.group(1)), int(match.group(2))
    else:
        month, year = int(match.group(3)), int(match.group(4))
    if not 1 <= month <= 12:
        return "Enter a month from 01 to 12."
    if year < 100:
        year += 2000
    # A card is good until the end of its expiry month.
    if (year, month) < (today.year, today.month):
        return "This card has expired. Check the date or use another card."
    if year > today.year + MAX_YEARS_AHEAD:
        return "Check the expiry year."
    return None


def check_card(number: str, expiry: str, cvc: str, today: date) -> CardCheck:
    """Check what was typed on the card page, as a card provider would."""
    result = CardCheck()
    digits = digits_only(number)
    if not digits:
        result.errors["number"] = "Enter the card number."
    elif not digits.isdigit():
        result.errors["number"] = "Enter the card number using digits only."
    elif not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        result.errors["number"] = "That card number isn't valid. Check it and try again."
    elif digits not in TEST_CARDS:
        result.errors["number"] = (
            "This is a test payment page: use a test card such as 4242 4242 4242 4242. "
            "Real cards are never charged here."
        )
    problem = check_expiry(expiry, today)
    if problem:
        result.errors["expiry"] = problem
    code = (cvc or "").strip()
    amex = brand_of(digits) == "American Express" if digits.isdigit() else False
    if not code:
        result.errors["cvc"] = "Enter the security code (CVC) from the back of the card."
    elif not code.isdigit() or len(code) != (4 if amex else 3):
        result.errors["cvc"] = (
            "The security code is 4 digits on American Express cards."
            if amex
            else "The security code is the 3 digits on the back of the card."
        )
    if result.errors:
        return result
    result.brand = brand_of(digits)
    result.last4 = digits[-4:]
    result.decline_reason = TEST_CARDS[digits]
    return result
