"""Delivery backends: SMTP (aiosmtplib) or, in development, `.eml` files on disk."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

import aiosmtplib

from portal.config import Settings
from portal.forms import is_one_line, one_line

log = logging.getLogger("portal.mail")


class TemporaryFailure(Exception):
    """Try again later (server down, 4xx answer)."""


class PermanentFailure(Exception):
    """Retrying will not help (5xx answer, such as an unknown mailbox)."""


class Unbuildable(Exception):
    """The outbox row cannot become an email; retrying will not help (the message says why)."""


class Backend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_message(row: dict[str, Any], settings: Settings) -> EmailMessage:
    """The MIME message for an outbox row: plain text plus an HTML alternative.

    Headers are built from cleaned text: a line break or control character in a name or
    subject (cleaned where it entered, but rows may predate that) is folded to a space,
    never passed to the email package, which refuses it. A recipient that is not exactly
    one address raises `Unbuildable`.
    """
    to = _address(row["to_addr"])
    if to is None:
        raise Unbuildable(f"the recipient {row['to_addr']!r} is not one valid email address")
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(row["from_name"]), settings.mail_from))
    msg["To"] = to
    reply_to = _address(row["reply_to"]) if row["reply_to"] else None
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = one_line(row["subject"])
    msg["Message-ID"] = one_line(row["message_id"])
    msg["Date"] = formatdate(localtime=False)
    msg.set_content(row["text_body"])
    if row["html_body"]:
        msg.add_alternative(row["html_body"], subtype="html")
    return msg


def _address(value: str) -> str | None:
    """`value` if it is exactly one plain email address, else None."""
    try:
        return str(Address(addr_spec=value)) if is_one_line(value) else None
    except (ValueError, IndexError):  # the email package's parse errors are ValueErrors
        return None


@dataclass
class SMTPBackend:
    """`smtp://user:pass@host:port` (STARTTLS when offered or `?starttls=1`), `smtps://` for TLS."""

    url: str
    timeout: float = 30.0

    async def send(self, message: EmailMessage) -> None:
        parts = urlparse(self.url)
        query = parse_qs(parts.query)
        use_tls = parts.scheme == "smtps"
        kwargs: dict[str, Any] = {
            "hostname": parts.hostname or "127.0.0.1",
            "port": parts.port or (465 if use_tls else 25),
            "use_tls": use_tls,
            "timeout": self.timeout,
        }
        if "starttls" in query:
            kwargs["start_tls"] = query["starttls"][0] not in ("0", "false")
        if parts.username:
            kwargs["username"] = unquote(parts.username)
            kwargs["password"] = unquote(parts.password or "")
        try:
            errors, _ = await aiosmtplib.send(message, **kwargs)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                raise PermanentFailure(str(exc)) from exc
            raise TemporaryFailure(str(exc)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"{exc.code} {exc.message}") from exc
            raise TemporaryFailure(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        if errors:
            raise PermanentFailure(f"refused: {errors}")


@dataclass
class FileBackend:
    """Development: each email becomes a `.eml` file; its first link is logged."""

    directory: Path

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        safe_id = re.sub(r"[^A-Za-z0-9]", "", message["Message-ID"])[:40]
        path = self.directory / f"{safe_id}.eml"
        path.write_bytes(bytes(message))
        text = message.get_body(("plain",))
        link = re.search(r"https?://\S+", text.get_content() if text else "")
        log.info(
            "email to %s: %r saved to %s%s",
            message["To"],
            message["Subject"],
            path,
            f" (link: {link.group(0)})" if link else "",
        )


def backend_for(settings: Settings) -> Backend:
    """SMTP when `PORTAL_SMTP_URL` is set, else `.eml` files under `var/mail/`."""
    if settings.smtp_url:
        return SMTPBackend(settings.smtp_url)
    return FileBackend(settings.mail_dir)
