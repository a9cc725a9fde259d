"""SMTP servers for fault tests (the plain recording server is portal.testing.MailSink)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from email.parser import BytesParser
from pathlib import Path
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


class HoldingSink(MailSink):
    """An SMTP server that holds the first message before answering: for `hold_seconds`
    and then accepts it (a slow server), or, with `hold_seconds=None`, until the test is
    over, answering "421 try later" then (a server that never accepted it). Every later
    message is accepted at once. `arrived` is set when the first message is in."""

    def __init__(self, hold_seconds: float | None) -> None:
        super().__init__()
        self.hold_seconds = hold_seconds
        self.arrived = threading.Event()
        self._held = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if not self._held:
            self._held = True
            self.arrived.set()
            if self.hold_seconds is None:
                await asyncio.sleep(300)
                return "421 Service not available, try later"
            await asyncio.sleep(self.hold_seconds)
        return await super().handle_DATA(server, session, envelope)


def dev_mailbox(mail_dir: Path, to: str, containing: str, timeout: float = 30.0) -> Any:
    """The newest email to `to` whose plain text contains `containing`, from the `.eml`
    files a test server's mail worker writes when it has no SMTP server (it polls every
    few seconds, so this waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for path in mail_dir.glob("*.eml") if mail_dir.exists() else []:
            message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
            if message["To"] == to and containing in message.get_body(("plain",)).get_content():
                found.append((path.stat().st_mtime, message))
        if found:
            return max(found, key=lambda pair: pair[0])[1]
        time.sleep(0.2)
    raise AssertionError(f"no email to {to} containing {containing!r} in {mail_dir}")
