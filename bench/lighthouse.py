"""Lighthouse (mobile) scores of the sign-in page and every customer page.

    (cd bench && npm ci)                          # once: Lighthouse into bench/node_modules
    .venv/bin/python -m bench.lighthouse          # --pages sign-in,invoices,...

Lighthouse 12 (pinned in bench/package.json; 13 needs a newer Node than Debian's 20)
runs the system Chromium (CHROME_PATH=/usr/bin/chromium, headless, no sandbox) in its
default mobile mode — a Moto G-class screen, simulated slow 4G and 4× CPU slowdown —
against a `portal serve` process with the bench business. Signed-in pages get the
session cookie through `--extra-headers`. Printed per page: the four category scores
(performance, accessibility, best practices, SEO), CLS, first and largest contentful
paint, the audits that kept a category under 100, and any audit that could not run.

Target (issue 18): 100 in every category on the sign-in page and every tab.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.common import BENCH_HOST, bench_server, query, sign_in_cookie, table
from portal.testing import CHROMIUM_ARGS, chromium_path

LIGHTHOUSE = Path(__file__).parent / "node_modules" / ".bin" / "lighthouse"
CATEGORIES = ["performance", "accessibility", "best-practices", "seo"]


def pages(database_url: str) -> dict[str, tuple[str, bool]]:
    """{name: (path, signed in)}."""
    pat = query(
        database_url,
        """SELECT c.id FROM customer c JOIN tenant t ON t.id = c.tenant
           WHERE t.host = ? AND c.name = 'Pat Bench'""",
        BENCH_HOST,
    )[0]["id"]

    def first(sql: str) -> int:
        return next(iter(query(database_url, sql, pat)[0].values()))

    location = first("SELECT min(id) FROM location WHERE customer = ?")
    membership = first("SELECT min(id) FROM membership WHERE customer = ?")
    payment = first("SELECT max(id) FROM payment WHERE customer = ? AND status = 'succeeded'")
    invoice = first("SELECT max(id) FROM invoice WHERE customer = ?")
    return {
        "Sign-in": ("/sign-in", False),
        "Invoices": ("/invoices", True),
        "History": ("/history", True),
        "A location's history": (f"/history?location={location}", True),
        "Memberships": ("/memberships", True),
        "A membership's visits": (f"/memberships/{membership}", True),
        "Scheduler": ("/schedule", True),
        "An invoice": (f"/invoices/{invoice}", True),
        "The receipt": (f"/payments/{payment}", True),
        "Your account": ("/account", True),
    }


def lighthouse(url: str, cookie: str | None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lighthouse-")) / "report.json"
    flags = " ".join(["--headless=new", *CHROMIUM_ARGS])
    command = [
        str(LIGHTHOUSE),
        url,
        "--output=json",
        f"--output-path={out}",
        "--quiet",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags={flags}",
    ]
    if cookie:
        command.append(f"--extra-headers={json.dumps({'Cookie': cookie})}")
    env = {**os.environ, "CHROME_PATH": chromium_path() or "/usr/bin/chromium"}
    for _ in range(2):  # Chromium now and then fails to start on a busy machine: once more
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            break
    if done.returncode != 0:
        raise RuntimeError(f"lighthouse failed on {url}:\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def summary(report: dict) -> tuple[list[str], list[str]]:
    """The figures of one report, and the notes: audits under 1 per category, errors."""
    cats = report["categories"]
    audits = report["audits"]
    scores = [
        f"{round(cats[c]['score'] * 100)}" if cats[c]["score"] is not None else "error"
        for c in CATEGORIES
    ]
    figures = [
        *scores,
        f"{audits['cumulative-layout-shift']['numericValue']:.3f}",
        f"{audits['first-contentful-paint']['numericValue'] / 1000:.1f} s",
        f"{audits['largest-contentful-paint']['numericValue'] / 1000:.1f} s",
    ]
    notes = []
    for c in CATEGORIES:
        for ref in cats[c]["auditRefs"]:
            audit = audits[ref["id"]]
            if ref["weight"] and audit["score"] is not None and audit["score"] < 1:
                notes.append(f"{c}: {ref['id']} ({audit['score']:.2f})")
    for audit_id, audit in audits.items():
        if audit.get("scoreDisplayMode") == "error":
            notes.append(f"could not run: {audit_id} ({audit.get('errorMessage', '')[:80]})")
    return figures, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default="", help="comma-separated page names (default all)")
    args = parser.parse_args()
    if not LIGHTHOUSE.exists():
        raise SystemExit("Lighthouse is not installed: run (cd bench && npm ci) first")
    rows, notes = [], []
    with bench_server() as server:
        cookie = sign_in_cookie(server)
        chosen = pages(server.env["DATABASE_URL"])
        wanted = [p.strip() for p in args.pages.split(",") if p.strip()]
        for name, (path, signed_in) in chosen.items():
            if wanted and name not in wanted:
                continue
            url = f"http://{BENCH_HOST}.localhost:{server.port}{path}"
            report = lighthouse(url, cookie if signed_in else None)
            final = report.get("finalDisplayedUrl") or report.get("finalUrl", "")
            assert final.endswith(path), f"{name}: Lighthouse ended on {final}"
            figures, page_notes = summary(report)
            rows.append([name, *figures, "yes" if all(f == "100" for f in figures[:4]) else "NO"])
            notes += [f"{name}: {n}" for n in page_notes]
            print(f"  {name}: {' '.join(figures)}", flush=True)
    print()
    print(
        table(
            rows,
            [
                "page",
                "performance",
                "accessibility",
                "best practices",
                "SEO",
                "CLS",
                "FCP",
                "LCP",
                "all 100",
            ],
        )
    )
    if notes:
        print("\nAudits under 1, and audits that could not run:")
        print("\n".join(f"- {n}" for n in notes))


if __name__ == "__main__":
    main()
