"""The width of every logo stored before the logo had one (issue 18.2), from its own
pixels; its 2× copy comes with the next upload (a 50 px image enlarged would be no
sharper). Separate from the migration that adds the columns: Piccolo runs a
migration's raw steps before its column changes."""

import io

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Bytea, Integer
from piccolo.table import Table

ID = "2026-12-02T01:11:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "logo widths of earlier logos"
LOGO_HEIGHT = 50


class LogoRow(Table, tablename="tenant", schema=None):
    """The columns the backfill reads and writes, as they are at this migration."""

    logo = Bytea(null=True, default=None)
    logo_width = Integer(default=0)


def _width(png: bytes) -> int:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
    except Exception:  # an unreadable stored logo keeps no width (shown as before)
        return 0
    return max(1, round(width * LOGO_HEIGHT / height)) if height else 0


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def backfill():
        rows = await LogoRow.select(LogoRow.id, LogoRow.logo).where(LogoRow.logo.is_not_null())
        for row in rows:
            width = _width(bytes(row["logo"]))
            await LogoRow.update({LogoRow.logo_width: width}).where(LogoRow.id == row["id"])

    manager.add_raw(backfill)
    return manager
