"""Stripe's ids are unique where the money depends on it: a webhook event is kept once per
business (Stripe delivers some twice), and a gateway's payment reference names one payment
(a checkout settles one payment, never two)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-01T21:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "stripe event and gateway reference uniqueness"

STATEMENTS = [
    "CREATE UNIQUE INDEX stripe_event_once ON stripe_event (tenant, event_id)",
    "CREATE INDEX stripe_event_due ON stripe_event (processed_at, id)",
    "CREATE UNIQUE INDEX payment_refund_gateway_once ON payment_refund (tenant, gateway_refund_id) "
    "WHERE gateway_refund_id <> ''",
    "CREATE INDEX payment_refund_payment ON payment_refund (tenant, payment)",
    # Per business (tenant-scoped keys, as everywhere): imported payments keep the business's
    # own references, which two businesses may share.
    "CREATE UNIQUE INDEX payment_gateway_ref_once ON payment (tenant, gateway, gateway_ref) "
    "WHERE gateway_ref <> ''",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
