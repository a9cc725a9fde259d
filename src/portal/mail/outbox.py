"""Queue emails. Call inside the transaction that causes the email, so the change
and its email are saved together or not at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from portal.config import Settings
from portal.db.rows import TenantRow
from portal.db.tables import OutboxEmail
from portal.formatting import money
from portal.forms import one_line
from portal.mail.links import portal_url
from portal.web import TEMPLATES_DIR

_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR / "email"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["money"] = money


def render_email(name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) from `email/<name>.txt` and `email/<name>.html`.

    The text template's first line is `Subject: …`.
    """
    text = _env.get_template(f"{name}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"email/{name}.txt must start with 'Subject: '")
    html = _env.get_template(f"{name}.html").render(context)
    return first.removeprefix("Subject: ").strip(), body.lstrip("\n"), html


def message_id(settings: Settings) -> str:
    """A unique Message-ID, fixed when queued so a resend is recognisably the same email."""
    return f"<{uuid.uuid4().hex}@{settings.base_domain}>"


async def queue_email(
    settings: Settings,
    tenant: TenantRow | None,
    to: str,
    template: str,
    context: dict[str, Any],
) -> int:
    """Render `template` for `to` and add it to the outbox; returns the row id."""
    full_context = {"tenant": tenant, **context}
    if tenant is not None:
        full_context.setdefault("portal_link", portal_url(settings, tenant, "/sign-in"))
        full_context.setdefault(
            "logo_url",
            portal_url(settings, tenant, f"/logo/{tenant['logo_version']}")
            if tenant.get("logo_version")
            else "",
        )
    subject, text, html = render_email(template, full_context)
    return await queue_raw(settings, tenant, to, subject, text, html)


async def queue_raw(
    settings: Settings,
    tenant: TenantRow | None,
    to: str,
    subject: str,
    text: str,
    html: str = "",
) -> int:
    """Add an already-written email to the outbox; returns the row id."""
    rows = await OutboxEmail.insert(
        OutboxEmail(
            tenant=tenant["id"] if tenant else None,
            message_id=message_id(settings),
            to_addr=to,
            # Names and subjects end up in headers: kept on one line.
            from_name=one_line(tenant["name"] if tenant else "Customer Portal")[:120],
            reply_to=tenant["email"] if tenant else "",
            subject=one_line(subject)[:300],
            text_body=text,
            html_body=html,
            next_attempt_at=datetime.now(UTC),
        )
    ).run()
    email_id: int = rows[0]["id"]
    return email_id
