"""What a `portal serve` process answers while its PostgreSQL refuses connections.

A new database, one server process reaching it through `portal.testing.PostgresProxy`
(on TCP, or with `--unix` on a Unix socket as a local PostgreSQL is usually reached),
the demo customer signed in and `--loops` loops opening her tabs. After 2 s the proxy
refuses every connection for `--seconds` (on a Unix socket: the socket file is gone, as
when PostgreSQL is stopped), then lets them through again for 5 s. Printed: the answers
while refused and after, and what the server logged (tracebacks, warnings).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.db_outage [--unix]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import tempfile
import time
from pathlib import Path

import httpx

from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import PostgresProxy, fresh_database, start_servers, stop_server

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')
PAGES = ["/invoices", "/history", "/memberships", "/schedule", "/account"]


async def main(seconds: float, loops: int, unix: bool) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        async with fresh_database(tmp_path) as url:
            proxy = PostgresProxy(url, socket_dir=tmp_path if unix else None).start()
            [server] = await asyncio.to_thread(start_servers, tmp_path, 1, proxy.url)
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{server.port}",
                    headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
                    timeout=60,
                ) as client:
                    token = CSRF_FIELD.search((await client.get("/sign-in")).text).group(1)
                    r = await client.post(
                        "/sign-in",
                        data={"_csrf_token": token, "email": JANE_EMAIL, "password": JANE_PASSWORD},
                    )
                    assert r.status_code == 303, r.text[:300]
                    answers: list[tuple[float, int, float]] = []
                    stop = asyncio.Event()

                    async def browse(n: int) -> None:
                        while not stop.is_set():
                            n += 1
                            started = time.monotonic()
                            try:
                                status = (await client.get(PAGES[n % len(PAGES)])).status_code
                            except httpx.TransportError:
                                status = 0
                            answers.append((started, status, time.monotonic() - started))

                    tasks = [asyncio.create_task(browse(i)) for i in range(loops)]
                    await asyncio.sleep(2)
                    down = time.monotonic()
                    proxy.set_mode("refuse")
                    await asyncio.sleep(seconds)
                    up = time.monotonic()
                    proxy.set_mode("forward")
                    await asyncio.sleep(5)
                    stop.set()
                    await asyncio.gather(*tasks)
            finally:
                stop_server(server)
                proxy.stop()
            log = (tmp_path / "server0.log").read_text()
    during = [a for a in answers if down <= a[0] < up]
    after = [a for a in answers if a[0] >= up + 2]
    where = "a Unix socket whose file is gone" if unix else "TCP, nothing listening"
    print(f"{seconds:.0f} s of refused connections ({where}), {loops} browsing loops:")
    print(f"  while refused: {dict(collections.Counter(s for _, s, _ in during))}")
    print(f"  slowest answer while refused: {max((d for *_, d in during), default=0):.2f} s")
    print(f"  2 s after:     {dict(collections.Counter(s for _, s, _ in after))}")
    # Plain lines ("WARNING …") or JSON lines ({"level": "warning", …}, issue 13's logs).
    warnings = [
        line
        for line in log.splitlines()
        if line.startswith("WARNING") or '"level": "warning"' in line
    ]
    for line in log.splitlines():
        if "Traceback" in line:
            print(f"    traceback in: {line[:300]}")
    print(f"  server log: {log.count('Traceback')} tracebacks, {len(warnings)} warnings")
    shown = warnings if len(warnings) <= 3 else [*warnings[:2], "  ...", warnings[-1]]
    for line in shown:
        print(f"    {line[:160]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--unix", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.loops, args.unix))
