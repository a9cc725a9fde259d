"""Absolute links to a business's portal, built from its stored host name.

Never from the request's Host header: a forged header must not put a foreign
address in an email.
"""

from __future__ import annotations

from portal.config import Settings


def portal_url(settings: Settings, host: str, path: str = "/") -> str:
    """`http://xyzplumbing.localhost:8000/path` for the business at `host`."""
    default_port = {"http": 80, "https": 443}[settings.public_scheme]
    port = settings.public_port
    port_part = f":{port}" if port and port != default_port else ""
    return f"{settings.public_scheme}://{host}.{settings.base_domain}{port_part}{path}"
