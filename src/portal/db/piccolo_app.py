"""The Piccolo app holding the portal's tables and migrations."""

import os

from piccolo.conf.apps import AppConfig

from portal.db.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="portal",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "migrations"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
