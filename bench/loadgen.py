"""A small open-loop HTTP/1.1 load generator (asyncio, keep-alive connections).

Requests are *scheduled* at a fixed rate and each latency is measured from its
scheduled time, so a slow server cannot hide its queueing delay by slowing the
generator down (no coordinated omission). Used for latency percentiles at a given
rate; `wrk` measures the maximum rate.

That also charges the generator's own hiccups to the server, so the generator keeps
them small: it runs on uvloop (`run`) with its garbage collector paused while it sends
(measured here: requests leave on time to 0.2 ms at the median instead of 0.6 ms, and
its longest pause drops from 30 ms to 9 ms).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a load-generating coroutine on uvloop."""
    return uvloop.run(coro)


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        """The p-th percentile latency in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


def build_request(
    path: str, headers: dict[str, str], method: str = "GET", body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_loop(
    port: int,
    request: bytes | list[bytes],
    rate: float,
    duration: float,
    connections: int = 64,
) -> Result:
    """Send `request` to 127.0.0.1:`port` `rate` times a second for `duration` seconds
    (a list of requests: each in turn, e.g. different customers' cookies)."""
    requests = [request] if isinstance(request, bytes) else request
    result = Result()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    start = time.perf_counter() + 0.05
    total = int(rate * duration)
    tasks = []
    gc.collect()
    gc.disable()

    async def one(scheduled: float, request: bytes) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(request)
            await writer.drain()
            status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - scheduled)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    gc.enable()
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return result
