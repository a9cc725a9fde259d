"""Email: an outbox table written in the same transaction as the change, and a
worker that delivers it (SMTP, or `.eml` files in development)."""
