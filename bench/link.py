"""A modelled mobile link at the socket level: a TCP proxy between the browser and the server.

Unlike DevTools emulation (a fixed delay added to each request, overlapping the
server's own time), every byte crosses a modelled link:

- one downlink and one uplink shared by every connection, each with its bandwidth:
  data is cut into 1,460-byte packets that leave one after another (a packet waits
  while the link is busy);
- each packet arrives one-way latency (RTT ÷ 2) after it left;
- a new connection costs its handshake: the client's first bytes leave only after
  `setup_rtts` round trips (1: TCP; 2: TCP + TLS 1.3, as in production behind TLS);
- a connection the server closes (idle keep-alive ending) closes at the browser one
  one-way latency later, so the browser's next click must open a new one.

Not modelled: TCP slow start, loss, radio wake-up; so the modelled link is kinder
than a real one, never harsher.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field

MSS = 1460


@dataclass
class Counters:
    down: int = 0  # bytes server → browser
    up: int = 0  # bytes browser → server
    connections: int = 0  # connections the browser opened


@dataclass
class Link:
    """The link's model; `start(target_port)` serves it on a free port in a thread."""

    rtt: float  # seconds
    down_bytes_per_s: float
    up_bytes_per_s: float
    setup_rtts: int = 1
    counters: Counters = field(default_factory=Counters)
    port: int = 0

    def __post_init__(self) -> None:
        self._free = {"up": 0.0, "down": 0.0}  # when each direction's link is idle again
        self._loop: asyncio.AbstractEventLoop | None = None

    def snapshot(self) -> Counters:
        c = self.counters
        return Counters(c.down, c.up, c.connections)

    def start(self, target_port: int, port: int = 0, target_host: str = "127.0.0.1") -> Link:
        """Serve the link (127.0.0.1:`port`, a free one by default → `target_host`:
        `target_port`) in a thread."""
        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        ready = threading.Event()

        def serve() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                server = await asyncio.start_server(
                    lambda r, w: self._connection(r, w, target_host, target_port),
                    "127.0.0.1",
                    self.port,
                )
                ready.set()
                async with server:
                    await server.serve_forever()

            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                asyncio.run(main())

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        # The link's loop may have ended already (its thread is a daemon): nothing to stop.
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                for task in asyncio.all_tasks(self._loop):
                    self._loop.call_soon_threadsafe(task.cancel)

    async def _connection(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        target_host: str,
        target_port: int,
    ) -> None:
        self.counters.connections += 1
        loop = asyncio.get_running_loop()
        handshake_done = loop.time() + self.setup_rtts * self.rtt
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, "up", handshake_done),
                self._pipe(server_r, client_w, "down", 0.0),
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a side hung up, or the link is stopping
        finally:
            for w in (client_w, server_w):
                w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str, not_before: float
    ) -> None:
        loop = asyncio.get_running_loop()
        rate = self.up_bytes_per_s if way == "up" else self.down_bytes_per_s
        one_way = self.rtt / 2
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if data is None:
                    dst.close()  # the other side closed: so does this one, on arrival
                    return
                dst.write(data)
                await dst.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    data = await src.read(65536)
                except OSError:
                    data = b""
                now = loop.time()
                if not data:
                    queue.put_nowait((max(now, self._free[way]) + one_way, None))
                    break
                for i in range(0, len(data), MSS):
                    packet = data[i : i + MSS]
                    leaves = max(now, not_before, self._free[way])
                    self._free[way] = leaves + len(packet) / rate
                    if way == "up":
                        self.counters.up += len(packet)
                    else:
                        self.counters.down += len(packet)
                    queue.put_nowait((self._free[way] + one_way, packet))
            await delivering
        finally:
            delivering.cancel()
