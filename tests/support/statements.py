"""Catch the SQL statements the app sends: through Piccolo's engine and through the
plain-SQL read path (db/fast.py), values left out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from portal.db import fast
from portal.db.engine import current_engine


@dataclass
class Seen:
    """Statements in the order they were sent; `piccolo` holds those built by Piccolo."""

    all: list[str] = field(default_factory=list)
    piccolo: list[str] = field(default_factory=list)


@contextlib.contextmanager
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Every statement sent while the block runs."""
    engine = current_engine()
    seen = Seen()
    real_run = type(engine).run_querystring
    real_fetch = fast.fetch

    async def run_querystring(self, querystring, in_pool=True):
        sql = querystring.compile_string(engine_type=self.engine_type)[0]
        seen.all.append(sql)
        seen.piccolo.append(sql)
        return await real_run(self, querystring, in_pool)

    async def fetch(sql, *args):
        seen.all.append(sql)
        return await real_fetch(sql, *args)

    with monkeypatch.context() as patch:
        patch.setattr(type(engine), "run_querystring", run_querystring)
        patch.setattr(fast, "fetch", fetch)
        yield seen


@contextlib.contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent while the block runs, as one list."""
    with recorded(monkeypatch) as seen:
        yield seen.all
