"""Payments: the gateway protocol and its sandbox implementation."""

# Routes of the gateway side (hosted card page, callbacks); filled in by the payments work.
ROUTES: list = []
