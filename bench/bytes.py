"""Bytes on the wire, measured in Chromium through the DevTools protocol.

    .venv/bin/python -m bench.bytes

Counts every byte received (headers and compressed bodies, `encodedDataLength`) for:
the sign-in page on a first visit with every asset; signing in; the first signed-in
page with a cold cache; a repeat visit (static files must come from the cache); each
tab switch with JavaScript on (an htmx fragment) and off (a whole page). The bench
business's customer has 25 unpaid invoices, so the Invoices tab is a 25-row fragment.
"""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from bench.common import (
    BENCH_EMAIL,
    BENCH_PASSWORD,
    Traffic,
    bench_server,
    bench_url,
    chromium,
    table,
)

KB = 1024
TABS = [
    ("History", "/history"),
    ("Memberships", "/memberships"),
    ("Scheduler", "/schedule"),
    ("Invoices", "/invoices"),
]


def watched(context: BrowserContext) -> tuple[Page, Traffic]:
    page = context.new_page()
    traffic = Traffic()
    traffic.attach(context.new_cdp_session(page))
    return page, traffic


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")


def kb(n: int) -> str:
    return f"{n / KB:.1f} KB"


def main() -> None:
    rows: list[list[str]] = []

    def record(step: str, traffic: Traffic, target: int | None) -> None:
        ok = "" if target is None else ("yes" if traffic.total_bytes <= target else "NO")
        encodings = sorted({r["encoding"] or "none" for r in traffic.network if r["bytes"]})
        rows.append(
            [
                step,
                kb(traffic.total_bytes),
                str(len(traffic.network)),
                ", ".join(encodings),
                kb(target) if target else "",
                ok,
            ]
        )

    with bench_server() as server, chromium() as browser:
        # 1. First visit to the sign-in page: HTML, stylesheet, scripts, logo.
        ctx = browser.new_context()
        page, traffic = watched(ctx)
        page.goto(bench_url(server, "/sign-in"))
        settle(page)
        record("Sign-in page, first visit (every asset)", traffic, 30 * KB)

        # 2. Signing in (htmx): the Invoices page comes back in the sign-in answer.
        traffic.reset()
        page.get_by_label("Email").fill(BENCH_EMAIL)
        page.get_by_label("Password").fill(BENCH_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Invoices", level=1)).to_be_visible()
        settle(page)
        record("Sign in → Invoices page (assets already cached)", traffic, None)
        state = ctx.storage_state()

        # 3. The first signed-in page with an empty cache, every asset included.
        cold = browser.new_context(storage_state=state)
        page, traffic = watched(cold)
        page.goto(bench_url(server, "/invoices"))
        settle(page)
        record("First signed-in page, cold cache (every asset)", traffic, 40 * KB)

        # 4. A repeat visit: only the HTML travels; static files come from the cache.
        traffic.reset()
        page.goto(bench_url(server, "/invoices"))
        settle(page)
        record("Repeat visit of Invoices (static files cached)", traffic, 5 * KB)

        # 5. Tab switches with JavaScript on: one htmx fragment each.
        for name, path in TABS:
            traffic.reset()
            page.get_by_role("navigation", name="Portal sections").get_by_role(
                "link", name=name
            ).click()
            expect(page).to_have_url(bench_url(server, path))
            settle(page)
            target = 3 * KB if name == "Invoices" else None
            label = (
                "Tab switch, JS on → Invoices (25-row fragment)"
                if name == "Invoices"
                else f"Tab switch, JS on → {name}"
            )
            record(label, traffic, target)

        # 6. The same with JavaScript off: a whole page each (assets from the cache).
        nojs = browser.new_context(storage_state=state, java_script_enabled=False)
        page, traffic = watched(nojs)
        page.goto(bench_url(server, "/invoices"))
        settle(page)
        for name, path in TABS:
            traffic.reset()
            page.get_by_role("navigation", name="Portal sections").get_by_role(
                "link", name=name
            ).click()
            expect(page).to_have_url(bench_url(server, path))
            settle(page)
            record(f"Tab switch, JS off → {name} (whole page)", traffic, None)

    print(table(rows, ["step", "received", "requests", "encoding", "target", "met"]))


if __name__ == "__main__":
    main()
