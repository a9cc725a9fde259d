"""Which gateway serves a payment account: the one list of the portal's gateways.

Adding a gateway is one line in `GATEWAYS`: the prefix of the account ids it issues,
and its class (which implements `gateway.PaymentGateway`). An account keeps its
gateway for life, so a payment is settled by the gateway it started on.
"""

from __future__ import annotations

from collections.abc import Mapping

from portal.config import Settings
from portal.payments.gateway import (
    BadCallback,
    CallbackEvent,
    GatewayFactory,
    PaymentGateway,
    PaymentsUnavailable,
)
from portal.payments.sandbox import SandboxGateway
from portal.payments.stripe_gateway import StripeGateway

# Account id prefix -> gateway; the longest matching prefix wins.
GATEWAYS: dict[str, GatewayFactory] = {
    "sandbox_acct_": SandboxGateway,
    # "stripe_test_acct_..." / "stripe_live_acct_..." (portal.db.stripe_accounts)
    "stripe_": StripeGateway,
}


def gateway_for(settings: Settings, account_id: str) -> PaymentGateway:
    """The gateway of one payment account: the business's linked account for a new
    payment, the account a payment or card update started on for everything after.
    Raises PaymentsUnavailable when there is no account, or no gateway serves it."""
    matches = [prefix for prefix in GATEWAYS if account_id and account_id.startswith(prefix)]
    if not matches:
        raise PaymentsUnavailable()
    return GATEWAYS[max(matches, key=len)](settings, account_id)


def verify_callback(
    settings: Settings, account_ids: list[str], headers: Mapping[str, str], body: bytes
) -> CallbackEvent:
    """A callback checked against each of the business's payment accounts (the linked
    one first, then those it linked before): its event names the account that signed
    it. Raises BadCallback when none of them did (or PaymentsUnavailable: no accounts)."""
    if not account_ids:
        raise PaymentsUnavailable()
    for account_id in account_ids:
        try:
            return gateway_for(settings, account_id).verify_callback(headers, body)
        except (BadCallback, PaymentsUnavailable):
            continue
    raise BadCallback("not signed by any of the business's payment accounts")
