"""Custom domains (tenant.custom_domain) and former host names that redirect
(host_redirect). Their indexes are the next migration's."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import Serial
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.column_types import Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class Tenant(Table, tablename="tenant", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


ID = "2026-12-01T20:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "custom domains and host redirects"

COLUMN = {
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
    manager.add_column(
        table_class_name="Tenant",
        tablename="tenant",
        column_name="custom_domain",
        db_column_name="custom_domain",
        column_class_name="Varchar",
        column_class=Varchar,
        params={"length": 253, "default": None, "null": True, **COLUMN},
        schema=None,
    )
    manager.add_table(
        class_name="HostRedirect", tablename="host_redirect", schema=None, columns=None
    )
    manager.add_column(
        table_class_name="HostRedirect",
        tablename="host_redirect",
        column_name="tenant",
        db_column_name="tenant",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": Tenant,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            **COLUMN,
        },
        schema=None,
    )
    manager.add_column(
        table_class_name="HostRedirect",
        tablename="host_redirect",
        column_name="old_host",
        db_column_name="old_host",
        column_class_name="Varchar",
        column_class=Varchar,
        params={"length": 40, "default": "", "null": False, **COLUMN},
        schema=None,
    )
    manager.add_column(
        table_class_name="HostRedirect",
        tablename="host_redirect",
        column_name="until",
        db_column_name="until",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={"default": TimestamptzNow(), "null": False, **COLUMN},
        schema=None,
    )
    return manager
