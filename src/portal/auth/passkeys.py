"""Passkeys (WebAuthn, with the `webauthn` package): adding one to a customer account and
signing in with one. The business's own host (`xyzplumbing.example.com`) is the relying
party: a passkey made for one business's portal is useless on another's, and the browser
offers it only on that host.

Challenges are random, kept hashed on the server (db/passkeys.py) and used once; the
browser's answer is checked against the challenge, the host and the origin by the library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from portal.auth.tokens import token_hash
from portal.config import Settings
from portal.db import passkeys as store
from portal.db.rows import TenantRow
from portal.mail.links import portal_url

MAX_ANSWER = 20_000  # bytes of JSON a browser's answer may take


def rp_id(settings: Settings, tenant: TenantRow) -> str:
    """The relying party: the business's primary host name (its own domain when it has
    one), without scheme or port."""
    return urlsplit(portal_url(settings, tenant, "/")).hostname or ""


def origin(settings: Settings, tenant: TenantRow) -> str:
    """The origin the browser reports: the business's public URL."""
    return portal_url(settings, tenant, "")


async def registration_options(
    settings: Settings, tenant: TenantRow, account: dict[str, Any], existing: list[dict[str, Any]]
) -> str:
    """The JSON options for navigator.credentials.create(): a discoverable credential (so
    signing in needs no email), the account's passkeys excluded (one per authenticator)."""
    options = generate_registration_options(
        rp_id=rp_id(settings, tenant),
        rp_name=tenant["name"],
        user_id=f"portal-account-{account['id']}".encode(),
        user_name=account["email"],
        user_display_name=account["email"],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p["credential_id"]))
            for p in existing
        ],
    )
    await store.remember_challenge(
        tenant["id"], "register", _hash(options.challenge), account["id"]
    )
    return options_to_json(options)


async def authentication_options(settings: Settings, tenant: TenantRow) -> str:
    """The JSON options for navigator.credentials.get(): no credential list, so the browser
    offers this host's passkeys (and an unknown email reveals nothing)."""
    options = generate_authentication_options(
        rp_id=rp_id(settings, tenant),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    await store.remember_challenge(tenant["id"], "sign-in", _hash(options.challenge))
    return options_to_json(options)


def _hash(challenge: bytes) -> str:
    """A challenge as stored: its hash only, like every token."""
    return token_hash(challenge.hex())


def _answer(body: bytes) -> dict[str, Any] | None:
    if len(body) > MAX_ANSWER:
        return None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return answer if isinstance(answer, dict) else None


def _challenge_of(answer: dict[str, Any]) -> bytes | None:
    """The challenge the browser signed, read from its clientDataJSON (checked again, with
    everything else, by the library)."""
    try:
        client_data = json.loads(base64url_to_bytes(answer["response"]["clientDataJSON"]))
        return base64url_to_bytes(client_data["challenge"])
    except (KeyError, TypeError, ValueError):
        return None


async def add_passkey(
    settings: Settings, tenant: TenantRow, account_id: int, body: bytes, name: str
) -> bool:
    """Verify a browser's new credential against a challenge this account was given and
    keep it. False (nothing kept) for anything else."""
    answer = _answer(body)
    challenge = _challenge_of(answer) if answer else None
    if (
        answer is None
        or challenge is None
        or not await store.take_challenge(tenant["id"], "register", _hash(challenge), account_id)
    ):
        return False
    try:
        verified = verify_registration_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp_id(settings, tenant),
            expected_origin=origin(settings, tenant),
        )
    except (WebAuthnException, KeyError, TypeError, ValueError):
        return False
    known = {t.value for t in AuthenticatorTransport}
    transports = answer.get("response", {}).get("transports") or []
    await store.add_passkey(
        tenant["id"],
        account_id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        transports=",".join(t for t in transports if t in known),
        name=name,
    )
    return True


@dataclass
class PasskeySignIn:
    """The account a passkey opened, or None."""

    account: dict[str, Any] | None


async def check_sign_in(settings: Settings, tenant: TenantRow, body: bytes) -> PasskeySignIn:
    """Verify a browser's passkey answer to a sign-in challenge of this business; the
    account it belongs to (confirmed accounts only), or None."""
    answer = _answer(body)
    challenge = _challenge_of(answer) if answer else None
    if (
        answer is None
        or challenge is None
        or not await store.take_challenge(tenant["id"], "sign-in", _hash(challenge))
    ):
        return PasskeySignIn(None)
    raw_id = answer.get("id")
    credential_id = raw_id if isinstance(raw_id, str) else ""
    passkey = await store.passkey_by_credential(tenant["id"], credential_id[:1400])
    if passkey is None or passkey["confirmed_at"] is None:
        return PasskeySignIn(None)
    try:
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp_id(settings, tenant),
            expected_origin=origin(settings, tenant),
            credential_public_key=base64url_to_bytes(passkey["public_key"]),
            credential_current_sign_count=passkey["sign_count"],
        )
    except (WebAuthnException, KeyError, TypeError, ValueError):
        return PasskeySignIn(None)
    await store.passkey_used(passkey["id"], verified.new_sign_count)
    return PasskeySignIn({"id": passkey["account"], "email": passkey["email"]})
