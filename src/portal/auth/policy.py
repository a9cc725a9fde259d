"""One password policy for customers and staff, in the spirit of NIST SP 800-63B:

- length first: 8 to 128 characters, any characters (spaces, emoji, any script);
- no composition rules (no "one digit, one symbol");
- not a common or breached password, compared after undoing the usual disguises: upper
  and lower case, spaces, leetspeak ("Pa$$w0rd" is "password") and up to six digits or
  symbols added at either end ("Summer2026!" is "summer", "letmein!" is "letmein");
  the list (data/common-passwords.txt) has about 35,000;
- not the person's own email (or the part before the @), not the business's name, and not
  either of those with only a few characters around them.

`password_problem` says why a password cannot be used, in words for the person, or None.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from portal.forms import count_text

MIN_LENGTH = 8
MAX_LENGTH = 128
# Characters of a password read from a form (handlers cut there, plus one: a longer one is
# said to have "more than" this, never a made-up count).
READ_LIMIT = 1000
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"
COMMON = (
    "That is one of the most common passwords (or one with a few characters changed or "
    "added), so it is easy to guess. Choose another."
)

# Leetspeak: what each disguise usually stands for. "1" and "!" stand for "i" or "l", so
# both readings are tried.
LEET = str.maketrans("034@5$7+89(|", "oeaasstt bgcl".replace(" ", ""))
AMBIGUOUS: tuple[dict[str, str | int | None], ...] = ({"1": "i", "!": "i"}, {"1": "l", "!": "l"})
MAX_ADDED = 6  # digits and symbols added to a common password that still make it common
# Digits and symbols added at the end, at the start, or both.
ENDS = (re.compile(r"[\W\d_]+$"), re.compile(r"^[\W\d_]+"), re.compile(r"^[\W\d_]+|[\W\d_]+$"))


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of about 35,000 common passwords (lower-cased; see the file's head)."""
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def normalize(password: str) -> str:
    """NFKC-normalize, so the same password typed on different devices matches."""
    return unicodedata.normalize("NFKC", password)


def _squash(text: str) -> str:
    """Case folded, without spaces."""
    return "".join(ch for ch in normalize(text).casefold() if not ch.isspace())


def _unleet(text: str) -> set[str]:
    plain = text.translate(LEET)
    return {plain.translate(str.maketrans(reading)) for reading in AMBIGUOUS}


def readings(password: str) -> set[str]:
    """What a guesser would try the password as: itself (case folded, no spaces), without
    the digits and symbols at its ends, with leetspeak undone, and both."""
    squashed = _squash(password)
    found = {squashed, *_trimmed(squashed)}
    for text in list(found):
        for plain in _unleet(text):
            found |= {plain, *_trimmed(plain)}
    return {text for text in found if text}


def _trimmed(text: str) -> list[str]:
    """`text` without the digits and symbols at its ends, when those are few (up to
    `MAX_ADDED`): "summer2026!" is "summer", but "cat" with ten random digits and
    symbols around it is a long password, not a common one."""
    return [t for end in ENDS if len(text) - len(t := end.sub("", text)) <= MAX_ADDED]


def _built_from(password_readings: set[str], word: str) -> bool:
    """True when the password is `word` (in any reading) with under 4 other characters."""
    word = _squash(word)
    if len(word) < 3:
        return False
    return any(len(text.replace(word, "")) < 4 for text in password_readings if word in text)


def password_problem(password: str, *, business_name: str = "", email: str = "") -> str | None:
    """Why `password` cannot be used, in words for the customer or staff member, or None
    if it is fine. `business_name` and `email` (the person's own) are refused as passwords."""
    password = normalize(password)
    length = len(password)
    if length < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters (this has {length})."
    if length > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters (this has {count_text(length, READ_LIMIT)})."
    found = readings(password)
    if password.lower() in common_passwords() or found & common_passwords():
        return COMMON
    # The whole name and each longer word of it ("Brightwater Plumbing": "brightwater").
    names = [business_name, business_name.rstrip("sS"), *re.findall(r"\w{4,}", business_name)]
    if business_name and any(_built_from(found, name) for name in names):
        return "Don't use our business's name as your password. Choose another."
    if email and (_built_from(found, email) or _built_from(found, email.split("@", 1)[0])):
        return "Don't use your email address as your password. Choose another."
    if len(set(_squash(password))) == 1:
        return "Don't repeat one character. Choose another."
    return None
