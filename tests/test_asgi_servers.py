"""`portal.asgi:app` under the other common ASGI servers (issue 13.2), each with two worker
processes on PostgreSQL, as docs/deploy.md's commands run them: gunicorn with uvicorn's
worker class (the `uvicorn-worker` package) and granian. Each serves the sign-in page
and, after Jane signs in, her Invoices; and who the client is still comes from the
portal's own trusted-proxy setting alone: a forwarded address is believed from the
configured proxy (127.0.0.2 here) and from no one else, not even from loopback, which
gunicorn's uvicorn worker believes by default (`--forwarded-allow-ips ''` turns that off).

The servers are the `servers` extra (`pip install 'portal[servers]'`).
"""

# These tests drive real processes and wait for them on purpose.
# ruff: noqa: ASYNC220, ASYNC251

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from portal.db.tables import ThrottleCount
from portal.demo import DEMO_HOST, JANE_EMAIL, JANE_PASSWORD
from portal.testing import CHEAP_HASHING_ENV, free_port
from tests.support.http import CSRF_FIELD
from tests.support.loopback import loopback_client
from tests.support.proxies import needs_postgres

pytestmark = [pytest.mark.deploy, needs_postgres]

BIN = Path(sys.executable).parent
HOST = f"{DEMO_HOST}.localhost"
PROXY = "127.0.0.2"  # the configured proxy: another loopback address


def commands(port: int) -> dict[str, list[str]]:
    """The commands of docs/deploy.md, step 8, on `port`."""
    return {
        "gunicorn": [
            str(BIN / "gunicorn"), "portal.asgi:app", "-k", "uvicorn_worker.UvicornWorker",
            "-w", "2", "-b", f"127.0.0.1:{port}", "--keep-alive", "75",
            "--forwarded-allow-ips", "",
        ],
        "granian": [
            str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2", "portal.asgi:app",
        ],
    }  # fmt: skip


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def ready(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers={"Host": HOST})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as answer:
        return answer.code


@pytest.fixture(scope="module")
def env(var_dir: Path, database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        **CHEAP_HASHING_ENV,
        "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_SECRET_KEY": "asgi-servers-test-secret",
        "PORTAL_TRUSTED_PROXIES": PROXY,
        "PORTAL_DB_POOL_SIZE": "4",
        "PYTHONUNBUFFERED": "1",
    }
    for step in (["migrate", "--quiet"], ["demo"]):
        subprocess.run(
            [sys.executable, "-m", "portal.cli", *step], env=env, check=True, timeout=180
        )
    return env


@pytest.fixture(params=["gunicorn", "granian"])
def server(request, env: dict[str, str], var_dir: Path) -> Iterator[tuple[str, int, int]]:
    """(name, port, pid) of the server running the portal with two workers."""
    name, port = request.param, free_port()
    log = var_dir / f"{name}.log"
    process = subprocess.Popen(
        commands(port)[name],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if ready(port) == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield name, port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wrong_password(port: int, source: str, forwarded: str) -> int:
    """A wrong password for Jane from `source` (a loopback address), X-Forwarded-For
    `forwarded`: the sign-in page first (CSRF cookie and token), then the form."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=15, source_address=(source, 0)
    )
    headers = {"Host": HOST, "X-Forwarded-For": forwarded}
    try:
        connection.request("GET", "/sign-in", headers=headers)
        page = connection.getresponse()
        body = page.read().decode()
        cookie = "; ".join(c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or [])
        token = CSRF_FIELD.search(body)
        assert page.status == 200 and token, (page.status, body[:300])
        form = {"_csrf_token": token.group(1), "email": JANE_EMAIL, "password": "not hers"}
        connection.request(
            "POST",
            "/sign-in",
            body=urlencode(form),
            headers={
                **headers,
                "Cookie": cookie,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


async def test_the_server_serves_the_portal_with_two_workers_and_the_portals_trust(
    server: tuple[str, int, int], app
):
    name, port, pid = server
    assert len(children(pid)) >= 2, f"{name}: worker processes {children(pid)}"
    async with loopback_client(f"http://{HOST}:{port}") as client:
        page = await client.get("/sign-in")
        assert page.status_code == 200 and "Sign in" in page.text
        token = CSRF_FIELD.search(page.text)
        assert token
        form = {"_csrf_token": token.group(1), "email": JANE_EMAIL, "password": JANE_PASSWORD}
        signed_in = await client.post("/sign-in", data=form)
        assert signed_in.status_code == 303, signed_in.text
        # Several answers: the two workers take turns or not, the session is in PostgreSQL.
        for _ in range(4):
            invoices = await client.get("/invoices")
            assert invoices.status_code == 200 and "Jane" in invoices.text
    # Straight from loopback, forwarded address ignored; from the configured proxy, believed.
    ignored, believed = f"203.0.113.{10 + port % 100}", f"198.51.100.{10 + port % 100}"
    assert wrong_password(port, "127.0.0.1", ignored) == 422
    assert wrong_password(port, PROXY, believed) == 422
    keys = {row["key"] for row in await ThrottleCount.select(ThrottleCount.key).run()}
    assert any(k.endswith(f":client:{believed}") for k in keys), (name, keys)
    assert not any(ignored in k for k in keys), (name, keys)
    assert any(k.endswith(":client:127.0.0.1") for k in keys), (name, keys)
