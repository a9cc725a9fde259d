"""A bare Litestar hello world: the floor the portal's own `/_hello` is compared with.

    .venv/bin/python -m bench.bare_hello --port 8123

One route, no middleware, no CSRF, no compression, no security headers, no database,
served the way `portal serve` serves the portal (uvicorn, same options, the same
garbage-collector settings), so the difference to the portal's `/_hello` is what the
portal's stack costs on every request.
"""

from __future__ import annotations

import argparse
import gc

import uvicorn
from litestar import Litestar, get


@get("/_hello", media_type="text/plain")
async def hello() -> str:
    return "Hello, world!"


def app() -> Litestar:
    """The bare app: one plain-text route."""
    return Litestar(route_handlers=[hello], openapi_config=None, debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    bare = app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    uvicorn.run(
        bare,
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
