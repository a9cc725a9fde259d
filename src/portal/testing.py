"""Helpers shared by the test suites (tests/ and e2e/): fresh databases, free ports."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg

from portal.db.engine import sqlite_path
from portal.demo import DEMO_HOST

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# For a `portal` process a test starts: passwords hashed at test cost (see Settings).
CHEAP_HASHING_ENV = {"PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS": "1"}


def engine_kind() -> str:
    """'postgres' when DATABASE_URL names PostgreSQL, else 'sqlite'."""
    url = os.environ.get("DATABASE_URL", "")
    return "postgres" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


@contextlib.asynccontextmanager
async def fresh_database(tmp_dir: Path, template: str | None = None) -> AsyncIterator[str]:
    """A new database on the engine DATABASE_URL names, dropped afterwards: empty, or a copy
    of the database at `template` (a SQLite file copied; on PostgreSQL `CREATE DATABASE …
    TEMPLATE`, which needs no one connected to the template)."""
    if engine_kind() == "sqlite":
        path = tmp_dir / f"test-{uuid.uuid4().hex[:8]}.sqlite3"
        if template is not None:
            shutil.copyfile(sqlite_path(template), path)
        yield f"sqlite:///{path}"
        return
    admin_url = os.environ["DATABASE_URL"]
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{urlparse(template).path.lstrip("/")}"' if template else ""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{copy_of}')
    finally:
        await conn.close()
    parts = urlparse(admin_url)
    try:
        yield urlunparse(parts._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        result: int = s.getsockname()[1]
        return result


class MailSink:
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives.

    `fail_next(n, code)` makes the next `n` messages get a temporary (4xx) or
    permanent (5xx) answer, like a flapping or strict mail server.
    """

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        self.port = free_port()
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def fail_next(self, count: int, answer: str = "421 Service not available, try later") -> None:
        with self._lock:
            self._failures.extend([answer] * count)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            self.messages.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Any]:
        """Messages received for `address`, oldest first."""
        with self._lock:
            return [m for m in self.messages if address in m["To"]]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        """Block until `count` messages for `address` arrived (for browser tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"no email for {address} within {timeout}s (got {len(self.to(address))})"
        )


def first_link(message: Any) -> str:
    """The first http(s) link in an email's plain-text part."""
    body = message.get_body(("plain",)).get_content()
    match = re.search(r"https?://\S+", body)
    assert match, body
    return match.group(0)


@dataclass
class Server:
    """A running `portal serve` process."""

    port: int
    var_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{DEMO_HOST}.localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `portal` command against this server's database."""
        return subprocess.run(
            [sys.executable, "-m", "portal.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def start_server(
    var_dir: Path,
    extra_env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    *,
    template: Path | None = None,
) -> Server:
    """Serve a new SQLite database: a copy of `template` (a migrated SQLite file with the demo
    loaded) when given, else one migrated and loaded with the demo here."""
    port = free_port()
    database = var_dir / "portal.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "e2e-secret-key-not-for-production",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    if template is not None:
        shutil.copyfile(template, database)
    else:
        for step in (["migrate", "--quiet"], ["demo"]):
            subprocess.run(
                [sys.executable, "-m", "portal.cli", *step],
                env=env,
                check=True,
                capture_output=True,
                timeout=180,
            )
    log = open(var_dir / "server.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(port=port, var_dir=var_dir, process=process, env=env)
    # As long as start_servers allows: on a loaded machine the imports alone take seconds.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((var_dir / "server.log").read_text())
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "localhost"})
            urllib.request.urlopen(req, timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start:\n" + (var_dir / "server.log").read_text())


def start_servers(
    var_dir: Path,
    count: int,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    *,
    load_demo: bool = True,
) -> list[Server]:
    """`count` `portal serve` processes sharing one database (for concurrency tests: two
    processes on PostgreSQL). The database is migrated (and the demo loaded) once."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "e2e-secret-key-not-for-production",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    steps = [["migrate", "--quiet"], *([["demo"]] if load_demo else [])]
    for step in steps:
        subprocess.run(
            [sys.executable, "-m", "portal.cli", *step],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
    servers = []
    for i in range(count):
        port = free_port()
        server_env = {**env, "PORT": str(port)}
        log = open(var_dir / f"server{i}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append(Server(port=port, var_dir=var_dir, process=process, env=server_env))
    deadline = time.monotonic() + 60
    for i, server in enumerate(servers):
        while True:
            if server.process.poll() is not None:
                raise RuntimeError((var_dir / f"server{i}.log").read_text())
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{server.port}/", headers={"Host": "localhost"}
                )
                urllib.request.urlopen(req, timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    for s in servers:
                        s.process.kill()
                    raise RuntimeError(
                        "server did not start:\n" + (var_dir / f"server{i}.log").read_text()
                    ) from None
                time.sleep(0.1)
    return servers


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """The system Chromium (this machine cannot download Playwright's own)."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None  # fall back to a browser installed by `playwright install chromium`


def blank_png(width: int, height: int) -> bytes:
    """A real, fully decodable black RGB PNG, compressed row by row: tiny on disk, huge
    decoded (6,000 × 6,000: 105 KB, 36 megapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 3)  # filter byte, then black pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM, Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


class PostgresProxy:
    """A TCP proxy in front of PostgreSQL that a test can turn into each kind of outage,
    without touching the real server (which other test runs share).

    Modes: "forward" (pass bytes through), "refuse" (nothing listens on the port: every
    new connection is refused), "starting up" and "shutting down" (a fake server that
    answers every new connection as PostgreSQL does then: FATAL 57P03). Leaving
    "forward" cuts every connection passed through so far, as a restart would.

    With `socket_dir` it listens on a Unix socket there instead, as a local PostgreSQL
    does; "refuse" then removes the socket file, as a stopped server does.
    """

    FAKE_ANSWERS = {
        "starting up": "the database system is starting up",
        "shutting down": "the database system is shutting down",
    }

    def __init__(self, database_url: str, socket_dir: Path | None = None) -> None:
        parts = urlparse(database_url)
        self.database_url = database_url
        self.socket_dir = socket_dir
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = free_port()
        self.mode = "forward"
        self.loop = asyncio.new_event_loop()
        self._server: Any = None
        self._writers: set[Any] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """`database_url` with the proxy's address in place of the server's."""
        parts = urlparse(self.database_url)
        user = f"{parts.username}@" if parts.username else ""
        if self.socket_dir is not None:
            query = f"host={self.socket_dir}&port={self.port}"
            return urlunparse(parts._replace(netloc=user, query=query))
        return urlunparse(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def start(self) -> PostgresProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    def set_mode(self, mode: str) -> None:
        """Switch to `mode` (see the class docstring); returns when it is in effect."""
        assert mode in ("forward", "refuse", *self.FAKE_ANSWERS), mode
        self._call(self._switch(mode))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _listen(self) -> None:
        if self.socket_dir is not None:
            path = self.socket_dir / f".s.PGSQL.{self.port}"
            self._server = await asyncio.start_unix_server(self._accept, path)
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if self.socket_dir is not None:
                (self.socket_dir / f".s.PGSQL.{self.port}").unlink(missing_ok=True)
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when the server process dies
        self._writers.clear()

    async def _switch(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        if previous == "forward" or mode == "refuse":
            await self._close()
        if mode != "refuse" and self._server is None:
            await self._listen()

    async def _accept(self, reader: Any, writer: Any) -> None:
        self._writers.add(writer)
        try:
            if self.mode == "refuse":  # accepted just before the port closed
                writer.transport.abort()
                return
            if self.mode in self.FAKE_ANSWERS:
                await self._answer_fatal(reader, writer, self.FAKE_ANSWERS[self.mode])
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)

            async def pipe(src: Any, dst: Any) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _answer_fatal(reader: Any, writer: Any, message: str) -> None:
        """Answer a connection attempt the way PostgreSQL does while it cannot take one:
        refuse SSL/GSS encryption, then an ErrorResponse (FATAL 57P03) and close."""
        while True:
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
            code = struct.unpack("!i", body[:4])[0]
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                writer.write(b"N")
                await writer.drain()
                continue
            break  # the StartupMessage
        fields = b"".join(
            key + value.encode() + b"\0"
            for key, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", "57P03"), (b"M", message))
        )
        payload = fields + b"\0"
        writer.write(b"E" + struct.pack("!i", len(payload) + 4) + payload)
        await writer.drain()
        writer.close()
