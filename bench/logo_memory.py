"""Peak memory of a `portal serve` process while logos are uploaded at once.

A black 6,000 × 6,000 PNG is 105 KB on disk and 36 megapixels decoded (108 MB as RGB,
144 MB as RGBA). The script starts a real server (SQLite, the demo business), signs the
demo administrator in, and sends `--count` such uploads at the same moment, then the same
with the largest logo the portal accepts. It prints each answer and the server's peak
resident memory (VmHWM from /proc) before and after each burst.

    .venv/bin/python -m bench.logo_memory [--count 4]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

import httpx

from portal.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_HOST
from portal.testing import blank_png, peak_rss_mb, start_server, stop_server

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


async def burst(client: httpx.AsyncClient, data: bytes, count: int) -> list[str]:
    """`count` uploads of `data` at once; a short description of each answer."""
    token = CSRF_FIELD.search((await client.get("/office/settings")).text).group(1)

    async def one() -> str:
        r = await client.post(
            "/office/settings/logo",
            data={"_csrf_token": token},
            files={"logo": ("logo.png", data, "image/png")},
            headers={"HX-Request": "true", "HX-Request-Type": "partial"},
        )
        found = re.search(r'class="error"[^>]*>([^<]+)<', r.text)
        return f"{r.status_code} {found.group(1).strip() if found else ''}".strip()

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def main(count: int) -> None:
    from portal.logos import MAX_LOGO_PIXELS

    side = int(MAX_LOGO_PIXELS**0.5)
    cases = [("36 megapixels (6000 × 6000)", blank_png(6000, 6000))]
    cases.append((f"the largest accepted ({side} × {side})", blank_png(side, side)))
    with tempfile.TemporaryDirectory() as tmp:
        server = await asyncio.to_thread(start_server, Path(tmp), {"PORTAL_MAIL_WORKER": "0"})
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}",
                headers={"Host": f"{DEMO_HOST}.localhost:{server.port}"},
                timeout=120,
            ) as client:
                token = CSRF_FIELD.search((await client.get("/office/sign-in")).text).group(1)
                r = await client.post(
                    "/office/sign-in",
                    data={"_csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                )
                assert r.status_code == 303, r.text[:300]
                await client.get("/office/settings")
                pid = server.process.pid
                print(f"server pid {pid}; peak RSS after start-up {peak_rss_mb(pid):.0f} MB")
                for label, data in cases:
                    before = peak_rss_mb(pid)
                    answers = await burst(client, data, count)
                    print(
                        f"{count} uploads at once of a {len(data) / 1000:.0f} KB PNG, {label}: "
                        f"peak RSS {before:.0f} MB -> {peak_rss_mb(pid):.0f} MB"
                    )
                    for answer in sorted(set(answers)):
                        print(f"  {answers.count(answer)} x {answer}")
        finally:
            stop_server(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4)
    asyncio.run(main(parser.parse_args().count))
