"""Template databases: migrated once per test session (one of them with the demo loaded once),
then copied for each test module and each browser-test server instead of migrating and
loading the demo again (portal.testing.fresh_database and start_server make the copies)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg

from portal.auth import passwords
from portal.db import engine as db_engine
from portal.db.migrate import migrate
from portal.demo import load_demo
from portal.testing import engine_kind


class DemoBusiness(int):
    """The demo business's id (what tests pass as a tenant id), with `today`: the date its
    data were made relative to (visits, due dates, completed jobs). The demo is loaded once
    per session, so a module that runs after midnight still knows the demo's own day."""

    today: date

    def __new__(cls, tenant_id: int, today: date) -> DemoBusiness:
        business = super().__new__(cls, tenant_id)
        business.today = today
        return business


@dataclass(frozen=True)
class Template:
    """A migrated database to copy; `demo` is set when the demo business is loaded in it."""

    url: str
    demo: DemoBusiness | None = None


def _run(work: Coroutine[Any, Any, Any]) -> Any:
    """Run `work` to completion on an event loop of its own, in another thread (a test
    module's loop may be running in this one)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, work).result()


def make_template(url: str, *, with_demo: bool) -> Template:
    """Migrate the (new, empty) database at `url`, and load the demo into it if asked.

    Passwords are hashed at test cost, like everything else the suites do."""

    async def build() -> DemoBusiness | None:
        passwords.use_cost(cheap_for_tests=True)
        engine = db_engine.use_database(url)
        await db_engine.start(engine)
        try:
            await migrate(quiet=True)
            if not with_demo:
                return None
            today = date.today()
            return DemoBusiness(await load_demo(today), today)
        finally:
            await db_engine.stop(engine)

    demo = _run(build())
    if url.startswith("sqlite"):
        # Copies are made of the file alone: move everything out of the write-ahead log.
        with sqlite3.connect(db_engine.sqlite_path(url)) as connection:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, f"{url} is still in use"
    return Template(url, demo)


class Templates:
    """The session's two templates, on the engine DATABASE_URL names, each made on first use:
    migrated only, and migrated with the demo loaded. `drop()` removes them at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: dict[bool, Template] = {}
        self.session = uuid.uuid4().hex[:8]

    def get(self, *, with_demo: bool) -> Template:
        """The template with (or without) the demo, made now if not yet made."""
        if with_demo not in self.made:
            name = f"template_{self.session}_{'demo' if with_demo else 'empty'}"
            self.made[with_demo] = make_template(self._new_database(name), with_demo=with_demo)
        return self.made[with_demo]

    def _new_database(self, name: str) -> str:
        if engine_kind() == "sqlite":
            return f"sqlite:///{self.folder / f'{name}.sqlite3'}"
        _run(_admin(f'CREATE DATABASE "portal_{name}"'))
        return urlunparse(urlparse(os.environ["DATABASE_URL"])._replace(path=f"/portal_{name}"))

    def drop(self) -> None:
        """Drop the PostgreSQL templates (SQLite ones go with the session's temporary files)."""
        for template in self.made.values():
            if not template.url.startswith("sqlite"):
                name = urlparse(template.url).path.lstrip("/")
                _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    """Run a statement on the PostgreSQL server DATABASE_URL names."""
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
