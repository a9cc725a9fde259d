"""The sync API under /api/v1/: the business's own system pushes its records in and reads
the events feed (docs/api.md). `app.py` builds it with `api.app.create_api`."""
