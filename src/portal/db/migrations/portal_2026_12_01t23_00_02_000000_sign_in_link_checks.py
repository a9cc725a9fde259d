"""Issue 16.2 and 16.3: an `auth_token` may be a sign-in link (purpose `signin`); the
new tables' kinds are checked like the others (PostgreSQL; SQLite cannot add CHECK
constraints to an existing table, see portal_2026_11_25t03_10_00)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T23:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "sign-in link purpose and checks of the sign-in tables"

POSTGRES = [
    "ALTER TABLE auth_token DROP CONSTRAINT auth_token_purpose_valid",
    "ALTER TABLE auth_token ADD CONSTRAINT auth_token_purpose_valid"
    " CHECK (purpose IN ('confirm', 'reset', 'signin'))",
    "ALTER TABLE sign_in_record ADD CONSTRAINT sign_in_record_method_valid"
    " CHECK (method IN ('password', 'link', 'passkey', 'confirm', 'reset'))",
    "ALTER TABLE passkey_challenge ADD CONSTRAINT passkey_challenge_purpose_valid"
    " CHECK (purpose IN ('register', 'sign-in'))",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        if engine.engine_type != "sqlite":
            for statement in POSTGRES:
                await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
