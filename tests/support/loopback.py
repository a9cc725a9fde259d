"""An HTTP client for a real `portal serve` process at `<host>.localhost:<port>`.

Browsers resolve every `*.localhost` name to loopback; the C resolver behind Python does
not. This client connects to 127.0.0.1 on the URL's port and keeps the business's name in
the Host header and the cookie jar, so absolute links the portal hands out (the sandbox
card page, return URLs) are followed like a browser would.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Sends each request to 127.0.0.1, its Host header unchanged (over https, the
    business's name also in the TLS handshake, as nginx answers no other names)."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # A copy: the client files cookies under the original request's host.
        sent = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": request.url.host},
        )
        return await self._inner.handle_async_request(sent)

    async def aclose(self) -> None:
        await self._inner.aclose()


def loopback_client(
    base_url: str, timeout: float = 15.0, *, cafile: Path | None = None
) -> httpx.AsyncClient:
    """A client for `base_url` (e.g. `Server.base_url`) that reaches it on loopback;
    `cafile`: the certificate an https proxy's is checked against (a self-signed one)."""
    verify: ssl.SSLContext | bool = True
    if cafile is not None:
        verify = ssl.create_default_context(cafile=str(cafile))
    return httpx.AsyncClient(
        base_url=base_url, transport=LoopbackTransport(verify), timeout=timeout
    )
