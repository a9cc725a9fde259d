"""Issue 11.4: whether a browser signed in to an account before is one index lookup.

Every sign-in asks "has this account signed in before, and ever from this browser?"
(auth/signins.py: the new-browser email). It used to count all of the account's sign-in
records, so each sign-in cost more than the one before it (a storm of right passwords adds
thousands). Now it asks two EXISTS questions; this index answers the second without
reading the account's other records.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T05:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sign-in records by account and browser"

STATEMENTS = [
    "CREATE INDEX sign_in_record_device ON sign_in_record (account, device_hash)",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
