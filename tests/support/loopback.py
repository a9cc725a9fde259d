"""An HTTP client for a real `portal serve` process at `<host>.localhost:<port>`.

Browsers resolve every `*.localhost` name to loopback; the C resolver behind Python does
not. This client connects to 127.0.0.1 on the URL's port and keeps the business's name in
the Host header and the cookie jar, so absolute links the portal hands out (the sandbox
card page, return URLs) are followed like a browser would.
"""

from __future__ import annotations

import httpx


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Sends each request to 127.0.0.1, its Host header unchanged."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # A copy: the client files cookies under the original request's host.
        sent = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(sent)

    async def aclose(self) -> None:
        await self._inner.aclose()


def loopback_client(base_url: str, timeout: float = 15.0) -> httpx.AsyncClient:
    """A client for `base_url` (e.g. `Server.base_url`) that reaches it on loopback."""
    return httpx.AsyncClient(base_url=base_url, transport=LoopbackTransport(), timeout=timeout)
