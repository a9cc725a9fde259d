"""Piccolo configuration module (PICCOLO_CONF points here).

`DB` starts as the engine named by `DATABASE_URL` (or the default SQLite file) so that
Piccolo's own commands work, with the app's PORTAL_DB_* options (the statement cache off
behind pgbouncer); building it connects to nothing. `portal.db.engine.use_database`
replaces it (the factory is `engines.py`, which imports no table: Piccolo reads `DB` while
the tables are defined) when the app or a test picks a database.
"""

from typing import Any

from portal.config import SettingsProblem, database_options, database_url_from_env
from portal.db.engines import make_engine

try:
    _OPTIONS = database_options()
except SettingsProblem:  # reported in one line by Settings.from_env, which every start runs
    _OPTIONS = {}

DB = make_engine(database_url_from_env(), **_OPTIONS)


def __getattr__(name: str) -> Any:
    """`APP_REGISTRY`, made when Piccolo's migrations first ask for it: its module
    imports black (the code formatter Piccolo writes migration files with) at the top,
    0.1-0.2 s of start-up for every portal process, and only migrations read it."""
    if name == "APP_REGISTRY":
        from piccolo.conf.apps import AppRegistry

        registry = AppRegistry(apps=["portal.db.piccolo_app"])
        globals()["APP_REGISTRY"] = registry
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
