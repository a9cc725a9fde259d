"""Running the portal as operators do (issue 13): settings refused in one line, the CLI's
failures and `--version`/`--help`, `portal migrate` under its lock and `--check`, the
"being upgraded" gate, `/healthz` and `/readyz`, request ids, JSON request logs and the
Prometheus endpoint. Real `portal` processes on real databases (the engine DATABASE_URL
names)."""

# These tests drive real processes and wait for them on purpose.
# ruff: noqa: ASYNC220, ASYNC251

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.config import ENVIRONMENT, Settings, SettingsProblem
from portal.demo import DEMO_HOST
from portal.mail.links import portal_url
from portal.testing import CHEAP_HASHING_ENV, PostgresProxy, engine_kind, free_port, fresh_database


def env_for(var_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "operations-test-secret",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def portal(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def get(port: int, path: str, host: str = "localhost", headers: dict | None = None):
    """(status, headers, body) of a GET to a server on loopback with a Host header."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, answer.read().decode()


class Serving:
    """A `portal serve` process on a free port, started without migrating anything."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.log = Path(env["PORTAL_VAR_DIR"]) / f"serve-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(self.port), *args],
            env=env,
            stdout=open(self.log, "w"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if get(self.port, "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("no /healthz:\n" + self.log.read_text())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for server in started:
        server.stop()


# --- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "abc"}, "PORT: 'abc' is not a whole number"),
        ({"PORTAL_PUBLIC_SCHEME": "HTTPS"}, "PORTAL_PUBLIC_SCHEME: 'HTTPS'"),
        ({"PORTAL_PUBLIC_URL": "https://portal.example.com"}, "PORTAL_SECRET_KEY must be set"),
        ({"PORTAL_PUBLIC_SCHEME": "https"}, "PORTAL_SECRET_KEY must be set"),
        ({"PORTAL_PUBLIC_URL": "ftp://x.example"}, "PORTAL_PUBLIC_URL"),
        ({"PORTAL_PUBLIC_URL": "https://x.example/portal", "PORTAL_SECRET_KEY": "k"}, "no path"),
        (
            {"PORTAL_PUBLIC_URL": "https://a.example", "PORTAL_BASE_DOMAIN": "b.example"},
            "contradicts",
        ),
        ({"PORTAL_DB_POOL_SIZE": "0"}, "PORTAL_DB_POOL_SIZE"),
    ],
)
def test_an_unusable_setting_is_refused_naming_it(tmp_path: Path, env: dict, named: str):
    with pytest.raises(SettingsProblem, match=named.replace("(", r"\(")) as refused:
        Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path), **env})
    assert "\n" not in str(refused.value)


def test_the_public_url_is_the_only_source_of_links(tmp_path: Path):
    settings = Settings.from_env(
        {
            "PORTAL_VAR_DIR": str(tmp_path),
            "PORTAL_PUBLIC_URL": "https://Portal.Example.com:8443",
            "PORTAL_SECRET_KEY": "k",
            "PORT": "8131",
        }
    )
    assert settings.base_domain == "portal.example.com" and settings.cookies_secure
    # The server listens on 8131; the links keep the proxy's 8443.
    served = settings.listening_on(8131)
    assert portal_url(served, "xyzplumbing", "/reset?token=t") == (
        "https://xyzplumbing.portal.example.com:8443/reset?token=t"
    )
    on_443 = Settings.from_env(
        {
            "PORTAL_VAR_DIR": str(tmp_path),
            "PORTAL_PUBLIC_URL": "https://portal.example.com:443",
            "PORTAL_SECRET_KEY": "k",
        }
    )
    assert portal_url(on_443.listening_on(8001), "x", "/") == "https://x.portal.example.com/"
    # The older settings still work, and an explicit port is never replaced either.
    older = Settings.from_env(
        {"PORTAL_VAR_DIR": str(tmp_path), "PORTAL_PUBLIC_PORT": "8133", "PORT": "8131"}
    )
    assert portal_url(older.listening_on(8131), "x", "/") == "http://x.localhost:8133/"
    # With nothing configured (development), links follow the listening port.
    dev = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)})
    assert portal_url(dev.listening_on(9000), "x", "/") == "http://x.localhost:9000/"


# --- the command line --------------------------------------------------------------


def test_version_and_help_list_every_environment_variable(tmp_path: Path):
    env = env_for(tmp_path, f"sqlite:///{tmp_path}/x.sqlite3")
    version = portal(env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("portal 0.")
    shown = portal(env, "--help")
    assert shown.returncode == 0
    for name, default, _ in ENVIRONMENT:
        line = next((ln for ln in shown.stdout.splitlines() if f" {name} " in ln), None)
        assert line is not None and default in line, name


@pytest.mark.parametrize(
    ("extra", "args", "says"),
    [
        ({"PORT": "abc"}, ["serve"], "portal: PORT: 'abc' is not a whole number"),
        ({"PORTAL_PUBLIC_SCHEME": "HTTPS"}, ["migrate"], "PORTAL_PUBLIC_SCHEME"),
        (
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"},
            ["migrate"],
            "portal migrate: cannot reach the database",
        ),
        ({"DATABASE_URL": "mysql://db/x"}, ["demo"], "unsupported DATABASE_URL scheme"),
        ({}, ["import", "/nonexistent/file.json"], "Cannot read /nonexistent/file.json"),
    ],
)
def test_every_cli_failure_is_one_clear_line(tmp_path: Path, extra: dict, args: list, says: str):
    env = env_for(tmp_path, f"sqlite:///{tmp_path}/x.sqlite3", **extra)
    failed = portal(env, *args, timeout=60)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], failed.stderr


def test_debug_shows_the_traceback(tmp_path: Path):
    env = env_for(tmp_path, "mysql://db/x")
    failed = portal(env, "--debug", "demo")
    assert failed.returncode == 1 and "Traceback" in failed.stderr


# --- migrations --------------------------------------------------------------------


async def test_two_concurrent_migrations_on_an_empty_database_both_succeed(tmp_path: Path):
    async with fresh_database(tmp_path) as url:
        env = env_for(tmp_path, url)
        before = portal(env, "migrate", "--check")
        assert before.returncode == 1 and "pending" in before.stdout
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "portal.cli", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=180) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        applied = [line for out, _ in outputs for line in out.splitlines() if "applied" in line]
        # Each migration was applied once, by one of them, one line each.
        ids = [line.split()[1].rstrip(":") for line in applied]
        assert len(ids) == len(set(ids)) and len(ids) >= 16, outputs
        after = portal(env, "migrate", "--check")
        assert after.returncode == 0 and "up to date" in after.stdout


# --- the upgrade gate and health ---------------------------------------------------


async def test_pending_migrations_answer_503_being_upgraded_until_migrated(
    tmp_path: Path, serving: list[Serving]
):
    async with fresh_database(tmp_path) as url:
        env = env_for(tmp_path, url)
        server = Serving(env)
        serving.append(server)
        for host in ("localhost", f"{DEMO_HOST}.localhost", "127.0.0.1"):
            assert get(server.port, "/healthz", host)[0] == 200
        status, _, body = get(server.port, "/readyz")
        assert status == 503 and "pending" in json.loads(body)["checks"]["schema"]
        for path in ("/", "/sign-in", "/office/sign-in"):
            status, headers, page = get(server.port, path, f"{DEMO_HOST}.localhost")
            assert status == 503 and "being upgraded" in page, path
            assert headers["Retry-After"] and headers["X-Request-ID"] in page
        assert portal(env, "migrate").returncode == 0
        assert portal(env, "demo").returncode == 0
        deadline = time.monotonic() + 10  # the gate asks the database again every 2 s
        while get(server.port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, get(server.port, "/readyz")
            time.sleep(0.3)
        status, headers, page = get(server.port, "/sign-in", f"{DEMO_HOST}.localhost")
        assert status == 200 and "Sign in" in page


async def test_readyz_wants_a_recent_worker_heartbeat_when_serve_sends_no_email(
    tmp_path: Path, serving: list[Serving]
):
    async with fresh_database(tmp_path) as url:
        env = env_for(tmp_path, url, PORTAL_MAIL_WORKER="0")
        assert portal(env, "migrate", "--quiet").returncode == 0
        server = Serving(env)
        serving.append(server)
        status, _, body = get(server.port, "/readyz")
        assert status == 503 and "worker" in json.loads(body)["checks"], body
        # No demo business here: no demo sign-ins printed either.
        assert "sign in as" not in server.log.read_text() and "demo" not in server.log.read_text()
        worker = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while get(server.port, "/readyz")[0] != 200:
                assert time.monotonic() < deadline, get(server.port, "/readyz")
                time.sleep(0.3)
        finally:
            worker.terminate()
            assert worker.wait(timeout=30) == 0  # SIGTERM is a clean stop


@pytest.mark.skipif(engine_kind() != "postgres", reason="PostgreSQL only (a server to lose)")
async def test_readyz_is_503_while_the_database_is_down(tmp_path: Path, serving: list[Serving]):
    async with fresh_database(tmp_path) as url:
        assert portal(env_for(tmp_path, url), "migrate", "--quiet").returncode == 0
        proxy = PostgresProxy(url).start()
        try:
            server = Serving(env_for(tmp_path, proxy.url))
            serving.append(server)
            assert get(server.port, "/readyz")[0] == 200
            proxy.set_mode("refuse")
            status, _, body = get(server.port, "/readyz")
            assert status == 503 and json.loads(body)["checks"]["database"] == "unreachable"
            assert get(server.port, "/healthz")[0] == 200  # the process itself is fine
            proxy.set_mode("forward")
            deadline = time.monotonic() + 15
            while get(server.port, "/readyz")[0] != 200:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        finally:
            server_list = list(serving)
            for server in server_list:
                server.stop()
            serving.clear()
            proxy.stop()


# --- logs, request ids, metrics ----------------------------------------------------


def test_one_json_line_per_request_and_prometheus_metrics(tmp_path: Path, serving: list):
    url = f"sqlite:///{tmp_path}/portal.sqlite3"
    env = env_for(tmp_path, url)
    assert portal(env, "migrate", "--quiet").returncode == 0
    assert portal(env, "demo").returncode == 0
    server = Serving(env, "--workers", "2")
    serving.append(server)
    status, headers, _ = get(server.port, "/sign-in", f"{DEMO_HOST}.localhost")
    assert status == 200
    request_id = headers["X-Request-ID"]
    deadline = time.monotonic() + 5
    while request_id not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    line = next(ln for ln in server.log.read_text().splitlines() if request_id in ln)
    logged = json.loads(line)
    assert logged["host"] == f"{DEMO_HOST}.localhost" and logged["method"] == "GET"
    assert logged["route"] == "/sign-in" and logged["status"] == 200
    assert logged["duration_ms"] >= 0 and logged["time"].startswith("20")
    # Two processes, each with its own counts (without PROMETHEUS_MULTIPROC_DIR): ask until
    # the one that answered the sign-in page answers /metrics too.
    for _ in range(30):
        status, headers, text = get(server.port, "/metrics")
        if "portal_request_duration_seconds_bucket" in text:
            break
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for name in (
        "portal_request_duration_seconds_bucket",
        "portal_outbox_pending_emails",
        "portal_outbox_oldest_pending_seconds",
        'portal_payments{state="succeeded"}',
    ):
        assert name in text, name
    # Never through the proxy: the counts are no visitor's business.
    assert get(server.port, "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 404


async def test_a_real_server_logs_security_events_with_the_request_and_business(
    tmp_path: Path, serving: list
):
    """The server process's own standard error: a wrong password and a password change are
    JSON event lines with the answer's request id, the business and who; no password."""
    import httpx

    from portal.demo import JANE_EMAIL, JANE_PASSWORD
    from tests.support.http import CSRF_FIELD
    from tests.support.loopback import loopback_client

    url = f"sqlite:///{tmp_path}/portal.sqlite3"
    env = env_for(tmp_path, url)
    assert portal(env, "migrate", "--quiet").returncode == 0
    assert portal(env, "demo").returncode == 0
    server = Serving(env)
    serving.append(server)

    async def form(client: httpx.AsyncClient, page: str, path: str, data: dict):
        token = CSRF_FIELD.search((await client.get(page)).text)
        assert token, page
        return await client.post(path, data={"_csrf_token": token.group(1), **data})

    async with loopback_client(f"http://{DEMO_HOST}.localhost:{server.port}") as client:
        sign_in = {"email": JANE_EMAIL}
        wrong = await form(client, "/sign-in", "/sign-in", {**sign_in, "password": "wrong one"})
        assert wrong.status_code == 422
        right = await form(client, "/sign-in", "/sign-in", {**sign_in, "password": JANE_PASSWORD})
        assert right.status_code == 303
        new = {"current_password": JANE_PASSWORD, "new_password": "jane's brand new password"}
        changed = await form(client, "/account", "/account/password", new)
        assert changed.status_code == 303

    def event(name: str) -> dict:
        deadline = time.monotonic() + 5
        while True:
            for line in server.log.read_text().splitlines():
                if line.startswith("{") and json.loads(line).get("event") == name:
                    return json.loads(line)
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)

    failed, password = event("signin.failed"), event("password.changed")
    assert failed["request_id"] == wrong.headers["x-request-id"]
    assert password["request_id"] == changed.headers["x-request-id"]
    for line in (failed, password):
        assert (
            line["business"] == DEMO_HOST and line["host"] == f"{DEMO_HOST}.localhost:{server.port}"
        )
    assert password["actor"].startswith("customer:") and password["area"] == "customer"
    # (The welcome banner above them shows the demo's passwords: the demo only.)
    text = "\n".join(ln for ln in server.log.read_text().splitlines() if ln.startswith("{"))
    assert "wrong one" not in text and JANE_PASSWORD not in text and "brand new" not in text


def test_uvicorn_serves_the_module_level_app_with_several_workers(tmp_path: Path):
    """`portal.asgi:app` is an ordinary ASGI app: uvicorn itself, two worker processes."""
    url = f"sqlite:///{tmp_path}/portal.sqlite3"
    env = env_for(tmp_path, url)
    assert portal(env, "migrate", "--quiet").returncode == 0
    assert portal(env, "demo").returncode == 0
    port = free_port()
    log = tmp_path / "uvicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:app", "--port", str(port),
         "--workers", "2", "--no-proxy-headers"],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        status, _, page = get(port, "/sign-in", f"{DEMO_HOST}.localhost")
        assert status == 200 and "Sign in" in page
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(engine_kind() != "postgres", reason="PostgreSQL's pool")
async def test_a_request_takes_one_pooled_connection_not_one_per_statement(app):
    from portal.db import engine as db_engine
    from portal.db import fast

    pool = db_engine.current_engine().pool
    async with db_engine.one_connection_per_request():
        pids = {(await fast.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"] for _ in range(5)}
        in_use = pool.get_size() - pool.get_idle_size()
        async with db_engine.transaction():
            # The request's connection went back first: never two held by one request.
            assert pool.get_size() - pool.get_idle_size() == in_use
        pids.add((await fast.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"])
    assert len(pids) == 1
    assert in_use >= 1 and pool.get_size() - pool.get_idle_size() == in_use - 1


def test_portal_serve_keeps_an_idle_connection_open_past_the_old_five_seconds(
    tmp_path: Path, serving: list[Serving]
):
    """A phone reading a page keeps its connection for the next click (issue 18.1:
    `portal serve` keeps idle connections 75 s; uvicorn's default closed them after 5 s)."""
    import http.client

    env = env_for(tmp_path, f"sqlite:///{tmp_path}/portal.sqlite3")
    assert portal(env, "migrate", "--quiet").returncode == 0
    server = Serving(env)
    serving.append(server)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/healthz", headers={"Host": "localhost"})
    first = connection.getresponse()
    first.read()
    assert first.status == 200
    local = connection.sock.getsockname()
    time.sleep(8)  # reading the page
    connection.request("GET", "/healthz", headers={"Host": "localhost"})
    second = connection.getresponse()
    second.read()
    assert second.status == 200
    assert connection.sock.getsockname() == local  # the same connection, not a new one
    connection.close()
