"""Secrets the portal must keep but never show: the payment provider's keys, encrypted at
rest with Fernet (AES-128-CBC + HMAC-SHA256, from the `cryptography` package).

The key is its own setting, `PORTAL_ENCRYPTION_KEY` (`Fernet.generate_key()`), never
`PORTAL_SECRET_KEY`: a database dump alone reveals no key, and the session secret can be
rotated without losing the linked account.
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet, InvalidToken

from portal.config import Settings

_PREFIX = re.compile(r"^(?:(?:sk|rk)_(?:test|live)_|whsec_)")


class VaultUnavailable(Exception):
    """PORTAL_ENCRYPTION_KEY is missing or not a Fernet key (or does not open a stored
    secret: it was changed)."""


def _fernet(settings: Settings) -> Fernet:
    if not settings.encryption_key:
        raise VaultUnavailable("PORTAL_ENCRYPTION_KEY is not set")
    try:
        return Fernet(settings.encryption_key.encode())
    except (ValueError, TypeError):
        raise VaultUnavailable("PORTAL_ENCRYPTION_KEY is not a Fernet key") from None


def seal(settings: Settings, secret: str) -> str:
    """`secret` encrypted (a token that carries its own timestamp and MAC)."""
    return _fernet(settings).encrypt(secret.encode()).decode()


def open_sealed(settings: Settings, token: str) -> str:
    """The secret back. Raises VaultUnavailable when the key cannot open it."""
    try:
        return _fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken:
        raise VaultUnavailable("PORTAL_ENCRYPTION_KEY does not open the stored keys") from None


def hint(secret: str) -> str:
    """What the office sees of a key again: its kind and last four ("sk_test_…4242")."""
    known = _PREFIX.match(secret)
    return f"{known.group(0) if known else ''}…{secret[-4:]}"
