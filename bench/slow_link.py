"""Time on a modelled 3G link at the socket level (bench/link.py), against the physical floor.

    .venv/bin/python -m bench.slow_link            # --rtts 300,2000 --think 7 --cpu-slowdown 4

Chromium (empty cache) reaches the server only through the link proxy: 400 kbit/s down
and up, a round-trip time of 300 ms (DevTools' "Slow 3G" is 400 kbit/s at 400 ms,
"Fast 3G" 1.6 Mbit/s at 150 ms) and of 2,000 ms (the issue's 2 s-latency case), a TCP
handshake on every new connection (`--tls` adds TLS 1.3's round trip). A person
thinks between clicks (`--think` seconds: typing the password, reading a tab, typing
the card), which is when a server that drops idle connections makes the next click
pay a new handshake.

Steps: cold first visit of the sign-in page (first paint, and fully loaded); sign in
(→ Invoices); switch to History after reading; back to Invoices after reading; pay in
full (→ the card page); send the card (→ the receipt).

    floor = (round trips that cannot be avoided + handshakes that cannot be avoided) × RTT
            + bytes received ÷ downlink + bytes sent ÷ uplink

with the bytes the link carried during the step. Round trips that cannot be avoided:
cold visit 1 (the document; its handshake is unavoidable too); first paint counts only
the document's bytes; sign in 1; a tab switch 1; pay 2 (the pay form, then the
gateway's hosted card page: another party's page in production); receipt 2 (the card
to the gateway, then the portal's receipt it sends the customer back to). A connection
kept open while the person reads costs no new handshake, so none is counted after the
first visit: "new connections" shows the ones the browser had to open anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from bench.common import (
    BENCH_EMAIL,
    BENCH_HOST,
    BENCH_PASSWORD,
    Traffic,
    analyze,
    bench_business,
    chromium,
    table,
)
from bench.link import Counters, Link
from portal.testing import Server, free_port, stop_server

BANDWIDTH = 400_000 / 8  # bytes a second, each way
TIMEOUT = 180_000
DEBUG = os.environ.get("BENCH_DEBUG") == "1"  # True: print each step's requests

MARKS_SCRIPT = """
(() => {
  const mark = (name) => window.__benchMark(name, performance.timeOrigin + performance.now());
  document.addEventListener('click', () => mark('click'), true);
  document.addEventListener('htmx:after:settle', () => mark('swapped'));
  for (const e of ['before:request', 'before:response', 'before:swap', 'after:swap']) {
    document.addEventListener('htmx:' + e, () => mark(e));
  }
  window.addEventListener('DOMContentLoaded', () => mark('loaded'));
})();
"""


@contextmanager
def behind_link(link: Link) -> Iterator[Server]:
    """The bench business served on 127.0.0.2:P with the link on 127.0.0.1:P, the same
    port: the absolute links the server builds (the card page, the gateway's return
    address) name its own port, and the browser must reach them through the link too
    (`portal serve` builds them with the port it listens on)."""
    var_dir = Path(tempfile.mkdtemp(prefix="portal-link-"))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{var_dir / 'portal.sqlite3'}",
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "bench-link-secret",
        "PORTAL_MAIL_WORKER": "0",
        "PYTHONUNBUFFERED": "1",
    }
    portal = [sys.executable, "-m", "portal.cli"]
    data = var_dir / "bench.json"
    data.write_text(json.dumps(bench_business()))
    subprocess.run([*portal, "migrate", "--quiet"], env=env, check=True, capture_output=True)
    subprocess.run([*portal, "import", str(data)], env=env, check=True, capture_output=True)
    analyze(env["DATABASE_URL"])
    log = open(var_dir / "server.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [*portal, "serve", "--port", str(port), "--bind", "127.0.0.2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(port=port, var_dir=var_dir, process=process, env=env)
    try:
        link.start(port, port, target_host="127.0.0.2")
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.2:{port}/_hello", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((var_dir / "server.log").read_text()) from None
                time.sleep(0.1)
        yield server
    finally:
        link.stop()
        stop_server(server)


def run_profile(rtt_ms: int, think: float, tls: bool, cpu_slowdown: float) -> list[list[str]]:
    rtt = rtt_ms / 1000
    rows: list[list[str]] = []
    link = Link(rtt, BANDWIDTH, BANDWIDTH, setup_rtts=2 if tls else 1)
    with behind_link(link), chromium() as browser:
        base = f"http://{BENCH_HOST}.localhost:{link.port}"
        marks: dict[str, float] = {}
        context = browser.new_context()
        context.expose_function("__benchMark", lambda name, at: marks.__setitem__(name, at))
        context.add_init_script(MARKS_SCRIPT)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        traffic = Traffic()
        traffic.attach(cdp)
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
        if cpu_slowdown > 1:
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu_slowdown})

        def record(
            step: str,
            seconds: float,
            trips: int,
            setups: int,
            before: Counters,
            down: int | None = None,
        ) -> None:
            after = link.snapshot()
            received = after.down - before.down if down is None else down
            sent = after.up - before.up
            floor = (trips + setups) * rtt + received / BANDWIDTH + sent / BANDWIDTH
            ratio = seconds / floor
            rows.append(
                [
                    f"{rtt_ms} ms",
                    step,
                    f"{seconds:.2f} s",
                    f"{floor:.2f} s",
                    f"{ratio:.2f}",
                    "yes" if ratio <= 1.25 else "NO",
                    str(trips + setups),
                    str(after.connections - before.connections),
                    f"{received / 1024:.1f} KB",
                    f"{sent / 1024:.1f} KB",
                ]
            )

        def timed(step: str, trips: int, action: Any, done: Any, end: str = "swapped") -> None:
            page.wait_for_timeout(think * 1000)  # the person reads, types, thinks
            before = link.snapshot()
            marks.clear()
            traffic.reset()
            action()
            done()
            for _ in range(400):
                if end in marks and "click" in marks:
                    break
                page.wait_for_timeout(25)
            record(step, (marks[end] - marks["click"]) / 1000, trips, 0, before)
            if DEBUG:
                print(step, {k: round(v - marks["click"]) for k, v in marks.items()})
                print(
                    step,
                    [
                        (r["method"], r["url"], r["status"], r["bytes"])
                        for r in traffic.requests.values()
                    ],
                )

        # 1. Cold first visit: empty cache, no connection yet.
        before = link.snapshot()
        page.goto(f"{base}/sign-in", timeout=TIMEOUT)
        page.wait_for_load_state("load", timeout=TIMEOUT)
        timing = page.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const paint = performance.getEntriesByName('first-contentful-paint')[0];
              return {fcp: paint ? paint.startTime : null, load: nav.loadEventEnd};
            }"""
        )
        page.wait_for_load_state("networkidle", timeout=TIMEOUT)
        document = next(r for r in traffic.requests.values() if r["url"].endswith("/sign-in"))
        record(
            "Cold first visit → first paint",
            timing["fcp"] / 1000,
            1,
            link.setup_rtts,
            before,
            down=document["bytes"],
        )
        record("Cold first visit → loaded", timing["load"] / 1000, 1, link.setup_rtts, before)

        # 2. Sign in (typing takes a while), 3. tabs after reading, 4. pay, 5. receipt.
        page.get_by_label("Email").fill(BENCH_EMAIL)
        page.get_by_label("Password").fill(BENCH_PASSWORD)
        timed(
            "Sign in → Invoices",
            1,
            lambda: page.get_by_role("button", name="Sign in").click(),
            lambda: expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible(
                timeout=TIMEOUT
            ),
        )
        nav = page.get_by_role("navigation", name="Portal sections")
        for name in ("History", "Invoices"):
            timed(
                f"Tab switch → {name} after {think:.0f} s of reading",
                1,
                lambda name=name: nav.get_by_role("link", name=name).click(),
                lambda name=name: expect(
                    page.get_by_role("heading", name=name, level=1)
                ).to_be_visible(timeout=TIMEOUT),
            )
        page.get_by_role("checkbox").first.check()
        timed(
            "Pay: Pay in full → card page",
            2,
            lambda: page.get_by_role("button", name="Pay in full").click(),
            lambda: expect(page.get_by_label("Card number")).to_be_visible(timeout=TIMEOUT),
            end="loaded",
        )
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry date (MM / YY)").fill(f"12 / {(date.today().year + 2) % 100:02d}")
        page.get_by_label("Security code (CVC)").fill("123")
        timed(
            "Receipt: card sent → receipt",
            2,
            lambda: page.get_by_role("button", name=re.compile(r"^Pay \$")).click(),
            lambda: expect(
                page.get_by_role("heading", name="Payment received", level=1)
            ).to_be_visible(timeout=TIMEOUT),
            end="loaded",
        )
        context.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtts", default="300,2000", help="round-trip times to model, ms")
    parser.add_argument("--think", type=float, default=7, help="seconds between clicks")
    parser.add_argument("--tls", action="store_true", help="new connections also pay TLS 1.3")
    parser.add_argument("--cpu-slowdown", type=float, default=4)
    args = parser.parse_args()
    rows: list[list[str]] = []
    for rtt in (int(x) for x in args.rtts.split(",")):
        rows += run_profile(rtt, args.think, args.tls, args.cpu_slowdown)
    print(
        table(
            rows,
            [
                "RTT",
                "step",
                "time",
                "floor",
                "time ÷ floor",
                "≤ 1.25",
                "RTTs (floor)",
                "new connections",
                "received",
                "sent",
            ],
        )
    )


if __name__ == "__main__":
    main()
