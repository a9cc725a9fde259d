"""Absolute links to a business's portal, built from its stored host name and the one
public address (`Settings.public_url`, from PORTAL_PUBLIC_URL).

Never from the request's Host header: a forged header must not put a foreign
address in an email.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.config import SCHEMES, Settings


def portal_url(settings: Settings, business: str | Mapping[str, Any], path: str = "/") -> str:
    """`https://xyzplumbing.portal.example.com:8443/path` for a business: its primary
    address, which is its own domain when it has one (`business` a tenant row), else its
    host under the base domain (`business` a row or a host name)."""
    port = settings.public_port
    port_part = f":{port}" if port and port != SCHEMES[settings.public_scheme] else ""
    if isinstance(business, str):
        name = f"{business}.{settings.base_domain}"
    else:
        name = business.get("custom_domain") or f"{business['host']}.{settings.base_domain}"
    return f"{settings.public_scheme}://{name}{port_part}{path}"
