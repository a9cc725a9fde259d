"""The logo's size and a sharp copy for 2× screens (issue 18.2): `logo_width` (its width
in CSS pixels at 50 px high, so pages reserve its box before it arrives and nothing
jumps), `logo_2x` (a copy 100 px high, for phones' 2× screens) and `logo_sharp` (whether
there is one). The next migration measures the logos stored before this."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean, Bytea, Integer
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T01:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "logo width and 2x copy"


def _params(default):
    return {
        "default": default,
        "null": default is None,
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
    for name, column_class, default in (
        ("logo_2x", Bytea, None),
        ("logo_width", Integer, 0),
        ("logo_sharp", Boolean, False),
    ):
        manager.add_column(
            table_class_name="Tenant",
            tablename="tenant",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=_params(default),
            schema=None,
        )

    return manager
