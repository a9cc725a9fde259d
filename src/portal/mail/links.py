"""Absolute links to a business's portal, built from its stored host name and the one
public address (`Settings.public_url`, from PORTAL_PUBLIC_URL).

Never from the request's Host header: a forged header must not put a foreign
address in an email.
"""

from __future__ import annotations

from portal.config import SCHEMES, Settings


def portal_url(settings: Settings, host: str, path: str = "/") -> str:
    """`https://xyzplumbing.portal.example.com:8443/path` for the business at `host`."""
    port = settings.public_port
    port_part = f":{port}" if port and port != SCHEMES[settings.public_scheme] else ""
    return f"{settings.public_scheme}://{host}.{settings.base_domain}{port_part}{path}"
