"""Time on a slow network: DevTools "3G" (400 kbps down and up, 2,000 ms latency per
request) plus 4× CPU slowdown, against the physical floor of each step.

    .venv/bin/python -m bench.slow_network

floor = round trips that cannot be avoided × 2 s + bytes received ÷ 50,000 B/s
        + bytes sent ÷ 50,000 B/s

Round trips that cannot be avoided, per step (JavaScript on):
- sign in → Invoices: 1 (the sign-in answer can be the Invoices page itself);
- a tab switch: 1;
- paying an invoice: 4 — send the pay form to the portal (it must create the payment
  and the gateway checkout), load the gateway's hosted card page (another party's
  page in production), send the card to the gateway, and load the portal's receipt
  where the gateway sends the customer back;
- requesting an appointment: 1.
Typing is not timed: each measurement runs from the click to the moment the result
is on screen.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from playwright.sync_api import Page, expect

from bench.common import (
    BENCH_EMAIL,
    BENCH_PASSWORD,
    Traffic,
    bench_server,
    bench_url,
    chromium,
    table,
)

LATENCY_MS = 2000
BYTES_PER_SECOND = 400_000 / 8
TIMEOUT = 120_000


# Marks taken inside the page (every document): when the user clicked, when htmx finished
# a swap, when a new page's HTML was ready. Timing in the page avoids counting how often
# the test driver polls for the result.
MARKS_SCRIPT = """
(() => {
  const mark = (name) => window.__benchMark(name, performance.timeOrigin + performance.now());
  document.addEventListener('click', () => mark('click'), true);
  document.addEventListener('htmx:after:settle', () => mark('swapped'));
  window.addEventListener('DOMContentLoaded', () => mark('loaded'));
})();
"""


def throttle(page: Page, traffic: Traffic) -> None:
    cdp = page.context.new_cdp_session(page)
    traffic.attach(cdp)
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": LATENCY_MS,
            "downloadThroughput": BYTES_PER_SECOND,
            "uploadThroughput": BYTES_PER_SECOND,
        },
    )
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})


def main() -> None:
    rows: list[list[str]] = []

    marks: dict[str, float] = {}

    def measure(
        step: str, trips: int, traffic: Traffic, action, done, end: str = "swapped"
    ) -> None:  # noqa: ANN001
        traffic.reset()
        marks.clear()
        action()
        done()
        # The page's marks reach us through an exposed function, a moment after the page
        # shows the result: wait for them.
        for _ in range(200):
            if end in marks and "click" in marks:
                break
            page.wait_for_timeout(50)
        # The page is ready: the interval runs from the click to the swap (or page load).
        elapsed = (marks[end] - marks["click"]) / 1000
        floor = (
            trips * LATENCY_MS / 1000
            + traffic.total_bytes / BYTES_PER_SECOND
            + traffic.upload_bytes / BYTES_PER_SECOND
        )
        ratio = elapsed / floor
        rows.append(
            [
                step,
                f"{elapsed:.2f} s",
                str(trips),
                str(len(traffic.network)),
                f"{traffic.total_bytes / 1024:.1f} KB",
                f"{floor:.2f} s",
                f"{ratio:.2f}",
                "yes" if ratio <= 1.25 else "NO",
            ]
        )

    with bench_server() as server, chromium() as browser:
        context = browser.new_context()
        context.expose_function("__benchMark", lambda name, at: marks.__setitem__(name, at))
        context.add_init_script(MARKS_SCRIPT)
        page = context.new_page()
        traffic = Traffic()
        page.goto(bench_url(server, "/sign-in"))  # warm the cache at full speed first
        page.wait_for_load_state("networkidle")
        throttle(page, traffic)
        page.get_by_label("Email").fill(BENCH_EMAIL)
        page.get_by_label("Password").fill(BENCH_PASSWORD)
        measure(
            "Sign in → Invoices",
            1,
            traffic,
            lambda: page.get_by_role("button", name="Sign in").click(),
            lambda: expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible(
                timeout=TIMEOUT
            ),
        )
        nav = page.get_by_role("navigation", name="Portal sections")
        for name, heading in [
            ("History", "History"),
            ("Memberships", "Memberships"),
            ("Scheduler", "Scheduler"),
            ("Invoices", "Invoices"),
        ]:
            measure(
                f"Tab switch → {name}",
                1,
                traffic,
                lambda name=name: nav.get_by_role("link", name=name).click(),
                lambda heading=heading: expect(
                    page.get_by_role("heading", name=heading, level=1)
                ).to_be_visible(timeout=TIMEOUT),
            )

        # Paying the oldest invoice in full: to the card page, then back to the receipt.
        page.get_by_role("checkbox").first.check()
        card_page = {}

        def to_card_page() -> None:
            page.get_by_role("button", name="Pay in full").click()

        def on_card_page() -> None:
            expect(page.get_by_label("Card number")).to_be_visible(timeout=TIMEOUT)
            card_page["traffic"] = list(traffic.network)

        measure(
            "Pay: Pay in full → card page", 2, traffic, to_card_page, on_card_page, end="loaded"
        )
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry date (MM / YY)").fill(f"12 / {(date.today().year + 2) % 100:02d}")
        page.get_by_label("Security code (CVC)").fill("123")
        measure(
            "Pay: card sent → receipt",
            2,
            traffic,
            lambda: page.get_by_role("button", name=re.compile(r"^Pay \$")).click(),
            lambda: expect(
                page.get_by_role("heading", name="Payment received", level=1)
            ).to_be_visible(timeout=TIMEOUT),
            end="loaded",
        )

        # Requesting an appointment.
        page.goto(bench_url(server, "/schedule"))
        expect(page.get_by_role("heading", name="Scheduler", level=1)).to_be_visible(
            timeout=TIMEOUT
        )
        page.get_by_label("Service location").select_option(index=1)
        page.get_by_label("Plumbing repair").check()
        page.get_by_label("Date").first.fill((date.today() + timedelta(days=5)).isoformat())
        measure(
            "Request an appointment",
            1,
            traffic,
            lambda: page.get_by_role("button", name="Send request").click(),
            lambda: expect(page.get_by_text("Requested").first).to_be_visible(timeout=TIMEOUT),
        )

    print(
        table(
            rows,
            [
                "step",
                "time",
                "round trips (floor)",
                "requests",
                "received",
                "floor",
                "time ÷ floor",
                "≤ 1.25",
            ],
        )
    )


if __name__ == "__main__":
    main()
