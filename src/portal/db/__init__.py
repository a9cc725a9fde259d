"""Database: tables, engines, migrations, queries."""

import os

# Piccolo finds its configuration through this variable (for its migration runner).
os.environ.setdefault("PICCOLO_CONF", "portal.db.piccolo_conf")
