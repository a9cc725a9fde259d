"""Server throughput: a signed-in 25-row Invoices fragment against the same server's
plain-text hello-world route, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.throughput [--seconds 15]

One `portal serve` process pinned to core 0 (`taskset -c 0`); the load generators
pinned to core 1: `wrk` (one thread, 32 connections) finds the maximum rate of each
route, then an open-loop generator (bench/loadgen.py) sends the fragment at 70 % of
its maximum rate and reports p50/p95/p99 measured from each request's scheduled time.
Targets: fragment ÷ hello ≥ 0.25; p99 ≤ 3 × p50 at 70 % of the maximum rate.
Beside the portal's hello (which runs the portal's whole middleware stack) a bare
Litestar hello (bench/bare_hello.py) on the same core shows what that stack costs.
Only the Invoices fragment is measured here; bench/cpu.py measures every tab.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from bench import loadgen
from bench.common import BENCH_HOST, bench_server, postgres_database, sign_in_cookie, table
from bench.loadgen import build_request, open_loop

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format("BENCH %d %d %.0f %.0f %.0f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), errors))
end
"""


def wrk(port: int, path: str, headers: dict[str, str], seconds: int) -> dict[str, float]:
    """Maximum rate of one route (wrk on core 1): requests/s and latency percentiles (ms)."""
    script = Path(tempfile.mkdtemp()) / "report.lua"
    script.write_text(WRK_SCRIPT)
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script)]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    requests, duration, p50, p95, p99, errors = re.search(r"BENCH (.*)", out).group(1).split()
    return {
        "requests": int(requests),
        "rps": int(requests) / (int(duration) / 1e6),
        "p50": float(p50) / 1000,
        "p95": float(p95) / 1000,
        "p99": float(p99) / 1000,
        "errors": int(errors),
    }


def run(engine: str, env: dict[str, str], seconds: int) -> list[list[str]]:
    with bench_server(env, prefix=["taskset", "-c", "0"]) as server:
        host = f"{BENCH_HOST}.localhost:{server.port}"
        cookie = sign_in_cookie(server)
        fragment_headers = {
            "Host": host,
            "Cookie": cookie,
            "HX-Request": "true",
            "HX-Request-Type": "partial",
            "Accept-Encoding": "br, gzip",
        }
        hello_headers = {"Host": host, "Accept-Encoding": "br, gzip"}
        # Warm up (templates compiled, connections open), then measure.
        wrk(server.port, "/invoices", fragment_headers, 3)
        hello = wrk(server.port, "/_hello", hello_headers, seconds)
        from bench.cpu import start_bare_hello

        bare_port, bare_process = start_bare_hello(["taskset", "-c", "0"])
        try:
            bare = wrk(bare_port, "/_hello", {"Accept-Encoding": "br, gzip"}, seconds)
        finally:
            bare_process.terminate()
            bare_process.wait(timeout=10)
        fragment = wrk(server.port, "/invoices", fragment_headers, seconds)
        rate = 0.7 * fragment["rps"]
        request = build_request("/invoices", {**fragment_headers, "Connection": "keep-alive"})
        steady = loadgen.run(open_loop(server.port, request, rate, seconds, connections=32))
        bad = sum(n for status, n in steady.statuses.items() if status != 200) + steady.errors
    ratio = fragment["rps"] / hello["rps"]
    return [
        [
            engine,
            "bare Litestar hello world, no middleware (wrk)",
            f"{bare['rps']:.0f}",
            f"{bare['p50']:.1f}",
            f"{bare['p95']:.1f}",
            f"{bare['p99']:.1f}",
            str(bare["errors"]),
            f"portal hello ÷ bare = {hello['rps'] / bare['rps']:.2f}",
        ],
        [
            engine,
            "hello world, max rate (wrk)",
            f"{hello['rps']:.0f}",
            f"{hello['p50']:.1f}",
            f"{hello['p95']:.1f}",
            f"{hello['p99']:.1f}",
            str(hello["errors"]),
            "",
        ],
        [
            engine,
            "25-row Invoices fragment, max rate (wrk)",
            f"{fragment['rps']:.0f}",
            f"{fragment['p50']:.1f}",
            f"{fragment['p95']:.1f}",
            f"{fragment['p99']:.1f}",
            str(fragment["errors"]),
            f"fragment ÷ hello = {ratio:.2f} (≥ 0.25: {'yes' if ratio >= 0.25 else 'NO'})",
        ],
        [
            engine,
            f"fragment at 70 % of max ({rate:.0f}/s, open loop)",
            f"{steady.rate:.0f}",
            f"{steady.pct(50):.1f}",
            f"{steady.pct(95):.1f}",
            f"{steady.pct(99):.1f}",
            str(bad),
            f"p99 ÷ p50 = {steady.pct(99) / steady.pct(50):.2f} (≤ 3: "
            f"{'yes' if steady.pct(99) <= 3 * steady.pct(50) else 'NO'})",
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # this process (the open-loop generator) on core 1
    rows: list[list[str]] = []
    if "sqlite" in args.engines:
        rows += run("SQLite", {}, args.seconds)
    if "postgres" in args.engines:
        with postgres_database("portal_bench_throughput") as url:
            rows += run("PostgreSQL", {"DATABASE_URL": url}, args.seconds)
    print(
        table(rows, ["engine", "route", "req/s", "p50 ms", "p95 ms", "p99 ms", "non-200", "target"])
    )


if __name__ == "__main__":
    main()
