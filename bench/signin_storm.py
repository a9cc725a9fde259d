"""Sign-in storm: 20 customers signing in at once (argon2 is slow on purpose) must
not stall the others. Target: tab p99 during the storm ≤ 2 × without it.

    .venv/bin/python -m bench.signin_storm [--seconds 10] [--rate 150]

One `portal serve` process pinned to core 0, the load on core 1. The signed-in
Invoices fragment is requested at a fixed rate (open loop) for `--seconds`, first
alone, then while 20 clients sign in over and over (each a real POST /sign-in with
its password verified by argon2id).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time

import httpx

from bench.common import (
    BENCH_EMAIL,
    BENCH_HOST,
    BENCH_PASSWORD,
    bench_server,
    sign_in_cookie,
    table,
)
from bench.loadgen import build_request, open_loop, run
from portal.auth.passwords import HASHER

STORM = 20


async def storm(port: int, seconds: float, done: list[float]) -> None:
    """20 clients signing in back to back for `seconds`; records each sign-in's time."""
    host = f"{BENCH_HOST}.localhost:{port}"

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Host": host}, timeout=120
        ) as c:
            token = re.search(
                r'name="_csrf_token" value="([^"]+)"', (await c.get("/sign-in")).text
            ).group(1)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                c.cookies.pop("portal_session", None)
                started = time.perf_counter()
                r = await c.post(
                    "/sign-in",
                    data={"_csrf_token": token, "email": BENCH_EMAIL, "password": BENCH_PASSWORD},
                )
                assert r.status_code == 303, r.status_code
                done.append(time.perf_counter() - started)

    await asyncio.gather(*[client() for _ in range(STORM)])


async def with_storm(port: int, request: bytes, rate: float, seconds: float) -> tuple:
    sign_ins: list[float] = []
    storm_task = asyncio.create_task(storm(port, seconds + 1, sign_ins))
    await asyncio.sleep(1)  # the storm is under way before measuring
    result = await open_loop(port, request, rate, seconds, connections=16)
    await storm_task
    return result, sign_ins


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the whole server to core 0 (its hashing threads too)",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    with bench_server(prefix=["taskset", "-c", "0"] if args.pin else None) as server:
        cookie = sign_in_cookie(server)
        request = build_request(
            "/invoices",
            {
                "Host": f"{BENCH_HOST}.localhost:{server.port}",
                "Cookie": cookie,
                "HX-Request": "true",
                "HX-Request-Type": "partial",
                "Accept-Encoding": "br",
                "Connection": "keep-alive",
            },
        )
        run(open_loop(server.port, request, args.rate, 2, connections=16))  # warm up
        calm = run(open_loop(server.port, request, args.rate, args.seconds, connections=16))
        busy, sign_ins = run(with_storm(server.port, request, args.rate, args.seconds))
    ratio = busy.pct(99) / calm.pct(99)
    sign_ins.sort()
    rows = [
        [
            "tab alone",
            f"{calm.rate:.0f}/s",
            f"{calm.pct(50):.1f}",
            f"{calm.pct(95):.1f}",
            f"{calm.pct(99):.1f}",
            "",
        ],
        [
            "tab during 20 concurrent sign-ins",
            f"{busy.rate:.0f}/s",
            f"{busy.pct(50):.1f}",
            f"{busy.pct(95):.1f}",
            f"{busy.pct(99):.1f}",
            f"p99 ratio {ratio:.2f} (≤ 2: {'yes' if ratio <= 2 else 'NO'})",
        ],
        [
            "sign-ins during the storm",
            f"{len(sign_ins)} done",
            f"{sign_ins[len(sign_ins) // 2] * 1000:.0f}" if sign_ins else "",
            "",
            "",
            f"each verifies argon2id (m={HASHER.memory_cost // 1024} MiB, t={HASHER.time_cost}, p={HASHER.parallelism})",
        ],
    ]
    print(table(rows, ["measured", "rate", "p50 ms", "p95 ms", "p99 ms", "note"]))


if __name__ == "__main__":
    main()
