"""Routes that need no sign-in: static files, the business's logo, the front door."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from portal.auth.context import TenantDep
from portal.db import queries

IMMUTABLE = "public, max-age=31536000, immutable"


# Routes whose answers the compression middleware leaves alone (see app.py).
ALREADY_COMPRESSED_KEY = "already_compressed"
ALREADY_COMPRESSED = {ALREADY_COMPRESSED_KEY: True}


@get("/static/{name:path}", include_in_schema=False, exclude_from_csrf=True, opt=ALREADY_COMPRESSED)
async def static_file(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """A fingerprinted static file (its name changes when its content does), compressed
    ahead of time."""
    found = request.app.state.renderer.static.get(name.lstrip("/"))
    if found is None:
        raise NotFoundException()
    body, encoding = found.encoded(request.headers.get("accept-encoding", ""))
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return Response(body, media_type=found.content_type, headers=headers)


@get("/logo/{version:int}", include_in_schema=False, opt=ALREADY_COMPRESSED)
async def logo(tenant: TenantDep, version: FromPath[int]) -> Response[bytes]:
    """The business's logo; the version in the URL changes whenever the logo does."""
    found = await queries.tenant_logo(tenant["id"])
    if found is None or version != tenant["logo_version"]:
        raise NotFoundException()
    body, content_type = found
    return Response(body, media_type=content_type, headers={"Cache-Control": IMMUTABLE})


@get("/logo/{version:int}/2x", include_in_schema=False, opt=ALREADY_COMPRESSED)
async def logo_2x(tenant: TenantDep, version: FromPath[int]) -> Response[bytes]:
    """The logo twice as large, for 2× screens (`srcset`); 404 when there is none."""
    found = await queries.tenant_logo(tenant["id"], sharp=True)
    if found is None or version != tenant["logo_version"] or not tenant["logo_sharp"]:
        raise NotFoundException()
    body, content_type = found
    return Response(body, media_type=content_type, headers={"Cache-Control": IMMUTABLE})


@get("/_hello", include_in_schema=False, media_type="text/plain")
async def hello() -> str:
    """Plain-text hello world: the baseline the throughput benchmark compares pages with."""
    return "Hello, world!"


ROUTES = [static_file, logo, logo_2x, hello]
