"""Worker heartbeats (worker_heartbeat): `/readyz` is ready only while a `portal worker`
reported recently. Its unique index is the next migration's."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-01T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "worker heartbeats"

COLUMN = {
    "null": False,
    "primary_key": False,
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)
    manager.add_table(
        class_name="WorkerHeartbeat", tablename="worker_heartbeat", schema=None, columns=None
    )
    manager.add_column(
        table_class_name="WorkerHeartbeat",
        tablename="worker_heartbeat",
        column_name="worker",
        db_column_name="worker",
        column_class_name="Varchar",
        column_class=Varchar,
        params={"length": 200, "default": "", **COLUMN},
        schema=None,
    )
    manager.add_column(
        table_class_name="WorkerHeartbeat",
        tablename="worker_heartbeat",
        column_name="beat_at",
        db_column_name="beat_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={"default": TimestamptzNow(), **COLUMN},
        schema=None,
    )
    return manager
