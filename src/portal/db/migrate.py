"""Apply the checked-in Piccolo migrations to the current database."""

from __future__ import annotations

import contextlib
import io


async def migrate(quiet: bool = False) -> None:
    """Run every migration not yet applied; raises if one fails."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        result = await run_forwards(app_name="portal", migration_id="all", fake=False)
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}\n{out.getvalue()}")
