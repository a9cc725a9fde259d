"""The migrations and tables.py describe the same schema: Piccolo's auto-migration, run
against tables.py, finds nothing to do (a column added to a table without its migration, or
a migration without its column, fails here)."""

from __future__ import annotations

from piccolo.apps.migrations.commands.new import AutoMigrationManager

from portal.db.piccolo_app import APP_CONFIG


async def test_auto_migration_finds_nothing_to_do():
    groups = await AutoMigrationManager(auto_input="y").get_alter_statements(app_config=APP_CONFIG)
    pending = [statement for group in groups for statement in group.statements]
    assert not pending, "tables.py and the migrations differ; Piccolo would add:\n" + "\n".join(
        pending
    )
