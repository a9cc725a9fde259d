"""Helpers shared by the test suites (tests/ and e2e/): fresh databases, free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def engine_kind() -> str:
    """'postgres' when DATABASE_URL names PostgreSQL, else 'sqlite'."""
    url = os.environ.get("DATABASE_URL", "")
    return "postgres" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


@contextlib.asynccontextmanager
async def fresh_database(tmp_dir: Path) -> AsyncIterator[str]:
    """A new, empty database on the engine DATABASE_URL names; dropped afterwards."""
    if engine_kind() == "sqlite":
        yield f"sqlite:///{tmp_dir / f'test-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    admin_url = os.environ["DATABASE_URL"]
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlparse(admin_url)
    try:
        yield urlunparse(parts._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
