"""SMTP servers for fault tests (the plain recording server is portal.testing.MailSink)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from typing import Any

from portal.testing import MailSink


class SlowSink(MailSink):
    """An SMTP server that takes the message and then does not answer for a long time."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.seen: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.seen.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.arrived.set()
        await asyncio.sleep(120)  # the worker is killed long before this answers
        return "250 too late"
