"""Real nginx and pgbouncer processes for the deployment tests.

Each runs in the foreground as the current user, with its own config, pid file, logs and
temporary files in a directory of its own, on free ports: never the system's services.
`Nginx` renders the production site (deploy/nginx/portal.conf.template) with the test's
ports and paths, so the tests prove the file operators install. When a program does not
start, the error says why and carries its log.

    with Nginx(["127.0.0.1:8001", "127.0.0.1:8002"]) as nginx:
        nginx.url("xyzplumbing", "/sign-in")   # https://xyzplumbing.localhost:PORT/sign-in
    with PgBouncer("postgresql://postgres@127.0.0.1:5432/portal_test_x") as bouncer:
        bouncer.url                            # postgresql://postgres@127.0.0.1:PORT/portal
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import pytest

from portal.demo import DEMO_HOST
from portal.testing import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NGINX_SITE_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "portal.conf.template"
# The app's default base domain (Chromium resolves every `*.localhost` name to loopback).
TEST_BASE_DOMAIN = "localhost"
START_TIMEOUT = 15.0
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def program(name: str) -> str | None:
    """The path of an installed program (Debian puts daemons in /usr/sbin, which a
    non-root PATH often lacks), or None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _missing(name: str, package: str) -> str:
    return f"{name} is not installed (apt-get install {package}; .ci/run installs it)"


needs_nginx = pytest.mark.skipif(program("nginx") is None, reason=_missing("nginx", "nginx-light"))
needs_pgbouncer = pytest.mark.skipif(
    program("pgbouncer") is None, reason=_missing("pgbouncer", "pgbouncer")
)
needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="needs PostgreSQL: runs in the PostgreSQL pass (DATABASE_URL=postgresql://...)",
)


class ProcessFailed(RuntimeError):
    """A helper process did not start (the message carries its log)."""


def render(template: str, values: dict[str, str]) -> str:
    """`template` with each `${NAME}` replaced by `values[NAME]` (as envsubst does with an
    explicit list); nginx's own `$name` variables stay. Every placeholder needs a value."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - values.keys())
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def self_signed_certificate(
    directory: Path, domain: str, hosts: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A self-signed certificate for `domain`, `*.domain` and `<host>.domain` for each of
    `hosts` (openssl CLI): (cert, key). TLS clients refuse a wildcard right below a
    one-label name such as `localhost`, so the businesses a test visits are named too.
    The certificate is its own authority: a client trusts it by loading it as its CA."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = ",".join(
        f"DNS:{name}" for name in (domain, f"*.{domain}", *(f"{h}.{domain}" for h in hosts))
    )
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "2", "-keyout", str(key), "-out", str(cert),
            "-subj", f"/CN={domain}",
            "-addext", f"subjectAltName={names}",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessFailed(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    process.kill()
    raise ProcessFailed(f"{name} did not listen on {port} in {START_TIMEOUT:.0f}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class _Process:
    """Start on enter, stop and remove the directory on exit."""

    directory: Path
    process: subprocess.Popen | None = None

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Nginx(_Process):
    """nginx with TLS (a self-signed certificate) and HTTP/2 on a free port, proxying to
    `upstreams` ("host:port" of `portal serve` processes) with the production site."""

    def __init__(
        self,
        upstreams: list[str],
        base_domain: str = TEST_BASE_DOMAIN,
        hosts: tuple[str, ...] = (DEMO_HOST,),
    ) -> None:
        self.binary = program("nginx")
        if self.binary is None:
            pytest.skip(_missing("nginx", "nginx-light"))
        self.upstreams = upstreams
        self.base_domain = base_domain
        self.directory = Path(tempfile.mkdtemp(prefix="portal-nginx-"))
        self.https_port = free_port()
        self.http_port = free_port()
        self.certificate, self.key = self_signed_certificate(self.directory, base_domain, hosts)
        self.error_log = self.directory / "error.log"
        self.access_log_path = self.directory / "access.log"

    def url(self, host: str, path: str = "/") -> str:
        """The public address of a business's page through this proxy."""
        return f"https://{host}.{self.base_domain}:{self.https_port}{path}"

    def site_config(self) -> str:
        """The production site, rendered with this test's ports, upstreams and certificate."""
        return render(
            NGINX_SITE_TEMPLATE.read_text(),
            {
                "PORTAL_DOMAIN": self.base_domain,
                "PORTAL_HTTPS_PORT": str(self.https_port),
                "PORTAL_HTTP_PORT": str(self.http_port),
                "PORTAL_UPSTREAM_SERVERS": " ".join(f"server {u};" for u in self.upstreams),
                "PORTAL_TLS_CERTIFICATE": str(self.certificate),
                "PORTAL_TLS_CERTIFICATE_KEY": str(self.key),
            },
        )

    def _main_config(self) -> str:
        """What Debian's /etc/nginx/nginx.conf provides around a site, with every path in
        this directory, and an access log the tests read (connection, protocol, upstream)."""
        d = self.directory
        user = ""
        if os.geteuid() == 0:  # workers would otherwise drop to `nobody`
            user = (
                f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
            )
        temp = {
            name: d / "temp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        }
        for path in temp.values():
            path.mkdir(parents=True, exist_ok=True)
        return f"""
{user}
worker_processes 1;
pid {d / "nginx.pid"};
error_log {self.error_log} info;
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    log_format portal_test escape=json '{{"connection": $connection, '
        '"connection_requests": $connection_requests, "protocol": "$server_protocol", '
        '"method": "$request_method", "uri": "$request_uri", "status": $status, '
        '"upstream": "$upstream_addr", "host": "$host"}}';
    access_log {self.access_log_path} portal_test;
    include {d / "portal.conf"};
}}
"""

    def start(self) -> Nginx:
        (self.directory / "portal.conf").write_text(self.site_config())
        conf = self.directory / "nginx.conf"
        conf.write_text(self._main_config())
        command = [
            self.binary, "-p", str(self.directory), "-c", str(conf), "-e", str(self.error_log),
        ]  # fmt: skip
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise ProcessFailed(f"nginx refused its configuration:\n{check.stderr}")
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.error_log, "a"),  # noqa: SIM115 - nginx keeps it
        )
        _wait_for_port(self.https_port, self.process, self.error_log, "nginx")
        return self

    def access_log(self) -> list[dict[str, Any]]:
        """The requests nginx answered so far, oldest first (one dict per request)."""
        if not self.access_log_path.exists():
            return []
        return [json.loads(line) for line in self.access_log_path.read_text().splitlines()]

    def logged_since(self, start: int, request: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The requests logged after the first `start`, once `request` ("GET /history") is
        among them: nginx writes its line when it has sent the answer, a moment after the
        browser may have shown it."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.access_log()[start:]
            if any(f"{e['method']} {e['uri']}" == request for e in entries):
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx logged no {request} in {timeout}s: {entries}")
            time.sleep(0.02)


class PgBouncer(_Process):
    """pgbouncer in transaction pool mode on a free port, in front of the PostgreSQL server
    of `database_url` (trust auth), with one database alias for that database."""

    def __init__(self, database_url: str, alias: str = "portal", pool_size: int = 10) -> None:
        self.binary = program("pgbouncer")
        if self.binary is None:
            pytest.skip(_missing("pgbouncer", "pgbouncer"))
        self.target = urlparse(database_url)
        self.alias = alias
        self.pool_size = pool_size
        self.user = self.target.username or "postgres"
        self.port = free_port()
        # pgbouncer refuses to run as root: then it runs as `nobody`, which needs a
        # directory of its own that it can write (pytest's temporary folders are private).
        self.directory = Path(tempfile.mkdtemp(prefix="portal-pgbouncer-"))
        self.log = self.directory / "pgbouncer.log"

    @property
    def url(self) -> str:
        """The database URL a `portal serve` uses to go through pgbouncer."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.alias}"

    def _ini(self) -> str:
        d, t = self.directory, self.target
        return f"""
[databases]
{self.alias} = host={t.hostname or "127.0.0.1"} port={t.port or 5432} dbname={t.path.lstrip("/")} user={self.user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {d / "userlist.txt"}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 200
pidfile = {d / "pgbouncer.pid"}
admin_users = {self.user}
"""

    def start(self) -> PgBouncer:
        (self.directory / "userlist.txt").write_text(f'"{self.user}" ""\n')
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(self._ini())
        command = [self.binary, str(ini)]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            command = [self.binary, "-u", "nobody", str(ini)]
        # Not daemonized, pgbouncer logs to stderr: that file is its log.
        self.process = subprocess.Popen(
            command,
            stdout=open(self.log, "w"),  # noqa: SIM115 - pgbouncer keeps it
            stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, self.process, self.log, "pgbouncer")
        return self
