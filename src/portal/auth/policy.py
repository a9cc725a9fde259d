"""Password rules: 8–128 characters, no composition rules, not a common password,
not the business's name or the customer's email (NIST SP 800-63B style)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 8
MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of the 10,000 most common passwords (lower-cased)."""
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def normalize(password: str) -> str:
    """NFKC-normalize, so the same password typed on different devices matches."""
    return unicodedata.normalize("NFKC", password)


def _squash(text: str) -> str:
    return "".join(ch for ch in normalize(text).casefold() if not ch.isspace())


def password_problem(password: str, *, business_name: str = "", email: str = "") -> str | None:
    """Why `password` cannot be used, in words for the customer, or None if it is fine."""
    password = normalize(password)
    length = len(password)
    if length < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters (this has {length})."
    if length > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters (this has {length})."
    squashed = _squash(password)
    if password.lower() in common_passwords() or squashed in common_passwords():
        return "That is one of the most common passwords, so it is easy to guess. Choose another."
    if business_name and squashed in {_squash(business_name), _squash(business_name).rstrip("s")}:
        return "Don't use our business's name as your password. Choose another."
    if email:
        local = email.split("@", 1)[0]
        if squashed in {_squash(email), _squash(local)}:
            return "Don't use your email address as your password. Choose another."
    if len(set(squashed)) == 1:
        return "Don't repeat one character. Choose another."
    return None
