"""Payments: the gateway protocol (`gateway.py`), the list of gateways (`registry.py`),
the built-in sandbox gateway with its
hosted card page (`sandbox.py`), and the portal's side of paying invoices
(`service.py`, with the callback URL in `callbacks.py`); the Stripe gateway
(`stripe_gateway.py`) with its webhooks (`webhooks.py`), bank debits and refunds."""

from portal.payments.callbacks import ROUTES as _CALLBACK_ROUTES
from portal.payments.sandbox import ROUTES as _SANDBOX_ROUTES
from portal.payments.webhooks import ROUTES as _WEBHOOK_ROUTES

# Mounted at the top level by app.py: no sign-in, no "portal open" guard.
ROUTES = [*_SANDBOX_ROUTES, *_CALLBACK_ROUTES, *_WEBHOOK_ROUTES]
