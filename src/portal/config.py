"""Settings: one dataclass, built from environment variables.

Tests build their own `Settings` and pass it to `create_app`; nothing else in the
app reads the environment.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def default_var_dir() -> Path:
    """`var/` in the working directory: the database, the dev secret and the dev mailbox
    live where the portal is run, never inside the installed package."""
    return Path.cwd() / "var"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Seconds before each retry of a failed webhook delivery: the Standard Webhooks schedule,
# stretched to about three days.
WEBHOOK_RETRY_SECONDS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 50400, 86400)


def _webhook_retries(env: dict[str, str]) -> tuple[float, ...]:
    """PORTAL_WEBHOOK_RETRY_SECONDS, comma-separated seconds (the default when unset)."""
    raw = env.get("PORTAL_WEBHOOK_RETRY_SECONDS", "")
    if not raw.strip():
        return WEBHOOK_RETRY_SECONDS
    name = "PORTAL_WEBHOOK_RETRY_SECONDS"
    return tuple(_seconds(x, name) for x in raw.split(",") if x.strip())


class SettingsProblem(ValueError):
    """A setting that cannot be used: the message names the variable and what is wrong,
    in one line (the CLI prints it and exits non-zero instead of starting)."""


# Every environment variable the portal reads, its default as shown to people, and what it
# does: `portal --help` prints this list and docs/deploy.md's settings table has each one.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("DATABASE_URL", "sqlite:///<var dir>/portal.sqlite3", "postgresql://user:pw@host:port/db"),
    ("PORTAL_PUBLIC_URL", "http://<base domain>:<PORT>", "scheme, base domain, port of links"),
    ("PORTAL_BASE_DOMAIN", "localhost", "businesses at <host>.<base domain>"),
    ("PORTAL_PUBLIC_SCHEME", "http", "fallback when PORTAL_PUBLIC_URL is unset"),
    ("PORTAL_PUBLIC_PORT", "the listening port", "fallback when PORTAL_PUBLIC_URL is unset"),
    ("PORTAL_SECRET_KEY", "generated into <var dir>/secret_key", "required with https"),
    ("PORTAL_SMTP_URL", "unset: emails written to <var dir>/mail/", "smtp://user:pw@host:587"),
    ("PORTAL_MAIL_FROM", "portal@<base domain>", "sender of the portal's emails"),
    ("PORTAL_MAIL_WORKER", "1", "0: serve sends no email, a `portal worker` does"),
    ("PORTAL_MAIL_RETENTION_DAYS", "30", "sent/failed emails deleted after this"),
    ("PORTAL_VAR_DIR", "./var", "dev mailbox, generated secret, default SQLite file"),
    ("PORTAL_BIND", "127.0.0.1", "address `portal serve` listens on"),
    ("PORT", "8000", "port `portal serve` listens on"),
    ("PORTAL_WORKERS", "1", "`portal serve` worker processes"),
    ("PORTAL_KEEPALIVE_SECONDS", "75", "idle client connections kept open this long"),
    ("PORTAL_TRUSTED_PROXIES", "none", "proxies whose X-Forwarded-* headers are believed"),
    ("PORTAL_DB_POOL_SIZE", "10", "PostgreSQL connections per process"),
    ("PORTAL_DB_WAIT_SECONDS", "10", "wait for a connection or lock before 503"),
    ("PORTAL_DB_COMMAND_TIMEOUT", "30", "seconds a PostgreSQL statement may take"),
    ("PORTAL_DB_APPLICATION_NAME", "portal", "application_name in pg_stat_activity"),
    ("PORTAL_DB_STATEMENT_CACHE", "1", "0 behind pgbouncer in transaction mode"),
    ("PORTAL_HASH_THREADS", "2", "password-hashing threads per process"),
    ("PORTAL_HASH_MAX_WAIT", "3", "seconds a sign-in waits for a hashing thread"),
    ("PORTAL_SIGN_IN_DEADLINE", "5", "seconds a sign-in may take in all before it says busy"),
    ("PORTAL_LOG_FORMAT", "json", "json (one object a line) or text"),
    ("PORTAL_METRICS", "1", "0: no /metrics endpoint"),
    ("PORTAL_WORKER_HEARTBEAT_SECONDS", "60", "/readyz: worker heartbeat older → not ready"),
    ("PORTAL_WORKER_GRACE_SECONDS", "25", "after SIGTERM, time to finish the email in flight"),
    ("PORTAL_HOST_REDIRECT_DAYS", "90", "an old host name redirects to the new this long"),
    ("PORTAL_API_REQUESTS_PER_MINUTE", "600", "sync API requests a minute per key"),
    ("PORTAL_WEBHOOK_RETRY_SECONDS", "5,300,…,86400", "seconds before each webhook retry"),
    ("PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS", "0", "test suites only"),
    ("PORTAL_SENTRY_DSN", "unset: no Sentry", "errors to Sentry (needs portal[sentry])"),
    ("PORTAL_SENTRY_ENVIRONMENT", "production", "Sentry's environment name"),
    ("PORTAL_SENTRY_TRACES_SAMPLE_RATE", "0", "share of requests traced to Sentry (0 to 1)"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "unset: no tracing", "OTLP/HTTP traces (needs portal[otel])"),
    ("PORTAL_OTEL", "0", "1: OpenTelemetry traces on (OTEL_* variables configure them)"),
    ("OTEL_SERVICE_NAME", "portal", "the traces' service name"),
)

# What each optional integration needs installed (the extra that brings it, its modules).
OPTIONAL_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sentry": ("sentry", ("sentry_sdk",)),
    "otel": (
        "otel",
        (
            "opentelemetry.sdk",
            "opentelemetry.exporter.otlp.proto.http",
            "opentelemetry.instrumentation.asgi",
        ),
    ),
}

SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know about its environment."""

    database_url: str
    secret_key: str
    base_domain: str = "localhost"
    smtp_url: str | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    var_dir: Path = field(default_factory=default_var_dir)
    # The public address of every absolute link (emails, gateway return URLs, redirects):
    # scheme and port here, base domain above (PORTAL_PUBLIC_URL sets all three).
    public_scheme: str = "http"
    # None when links carry no port (the scheme's default).
    public_port: int | None = 8000
    # True when neither PORTAL_PUBLIC_URL nor PORTAL_PUBLIC_PORT was given: then (and only
    # then) `portal serve --port N` makes the links' port N too (the development default).
    public_port_is_listening_port: bool = False
    confirm_token_hours: int = 24
    reset_token_hours: int = 1
    session_idle_minutes: int = 120
    session_absolute_days: int = 7
    booking_max_days_ahead: int = 60
    run_mail_worker: bool = True
    mail_poll_seconds: float = 2.0
    mail_from: str = "portal@localhost"
    # PostgreSQL connections per process; how long a request waits for one (or, on
    # SQLite, for a lock) before it is answered 503 "try again" instead of hanging.
    db_pool_size: int = 10
    db_wait_seconds: float = 10.0
    # The longest one PostgreSQL statement may run (client side, so it also holds behind
    # pgbouncer, which passes no startup settings), and the name in pg_stat_activity.
    db_command_timeout: float = 30.0
    db_application_name: str = "portal"
    # asyncpg's prepared-statement cache; off behind pgbouncer in transaction mode, where
    # the next transaction may run on another server connection.
    db_statement_cache: bool = True
    # Delivered (and failed) emails are deleted this many days after they were sent/queued.
    mail_retention_days: int = 30
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks); with none,
    # the client is the TCP peer. Env PORTAL_TRUSTED_PROXIES, comma-separated.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Password hashing: threads per process, and the longest a sign-in waits for a free
    # one before it is answered "busy, try again in a moment" (auth/passwords.py).
    hash_threads: int = 2
    hash_max_wait_seconds: float = 3.0
    # The longest a whole sign-in may take (database waits, the wait for a hashing thread
    # and the hash together) before it is answered "busy, try again in a moment".
    sign_in_deadline_seconds: float = 5.0
    # argon2 at its smallest cost, for test suites only (never with https: see from_env).
    cheap_password_hashing_for_tests: bool = False
    # The sync API: requests a minute per key (counted in the database, across processes).
    api_requests_per_minute: int = 600
    # Outgoing webhooks: seconds before each retry after a failed delivery (the Standard
    # Webhooks schedule, stretched to about three days), and how long one may take.
    webhook_retry_seconds: tuple[float, ...] = WEBHOOK_RETRY_SECONDS
    webhook_timeout_seconds: float = 10.0
    # `portal serve`: worker processes and how long idle client connections stay open
    # (a phone reading a page keeps its connection for the next click).
    workers: int = 1
    keepalive_seconds: int = 75
    log_format: str = "json"
    metrics: bool = True
    # /readyz: with no worker in this process, a separate `portal worker` must have
    # reported within this many seconds.
    worker_heartbeat_seconds: float = 60.0
    # `portal worker` after SIGTERM: how long the email in flight may take to finish
    # before it is released for another worker.
    worker_grace_seconds: float = 25.0
    # After a host change the old address answers 301 to the new one this many days.
    host_redirect_days: int = 90
    # The key (Fernet, urlsafe base64 of 32 bytes) that encrypts the payment provider's
    # keys at rest: its own setting, never PORTAL_SECRET_KEY, so rotating one never
    # touches the other. Without it no Stripe account can be linked.
    encryption_key: str = ""
    # Where the Stripe SDK sends API calls: "" is Stripe itself; the test suites point it
    # at the Stripe test double (tests/support/stripe_double.py).
    stripe_api_base: str = ""
    # A payment still pending this long is asked about at the gateway by the worker (a
    # lost webhook never leaves a paid invoice unpaid).
    reconcile_after_seconds: float = 600.0
    reconcile_every_seconds: float = 60.0  # how often the worker's reconciliation runs
    # Errors (and, at this sample rate, traces) to Sentry when a DSN is set; OpenTelemetry
    # traces over OTLP/HTTP when on (the exporter reads the standard OTEL_* variables).
    # Both optional packages (extras `sentry`, `otel`): never imported when off.
    sentry_dsn: str = ""
    sentry_environment: str = "production"
    sentry_traces_sample_rate: float = 0.0
    otel: bool = False
    otel_service_name: str = "portal"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def mail_dir(self) -> Path:
        """Where the dev mail backend writes `.eml` files."""
        return self.var_dir / "mail"

    @property
    def cookies_secure(self) -> bool:
        return self.public_scheme == "https"

    @property
    def public_url(self) -> str:
        """`https://portal.example.com:8443`: the base of every absolute link."""
        port = self.public_port
        port_part = f":{port}" if port and port != SCHEMES[self.public_scheme] else ""
        return f"{self.public_scheme}://{self.base_domain}{port_part}"

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def listening_on(self, port: int) -> Settings:
        """These settings for a server on `port`: the links' port follows only when no
        public address was configured (never behind a proxy on another port)."""
        if self.public_port_is_listening_port:
            return self.with_(port=port, public_port=port)
        return self.with_(port=port)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment); a setting that
        cannot be used raises `SettingsProblem` naming it."""
        env = dict(os.environ if env is None else env)
        var_dir = var_dir_from_env(env)
        database_url = database_url_from_env(env)
        port = _port(env.get("PORT", "8000"), "PORT")
        scheme, base_domain, public_port, follows = _public_address(env, port)
        secret_key = env.get("PORTAL_SECRET_KEY", "")
        if scheme == "https" and not secret_key:
            raise SettingsProblem(
                "PORTAL_SECRET_KEY must be set when the portal is served over https: every "
                "process must sign forms with the same key (generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        cheap_hashing = _flag(
            env.get("PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS", "0"),
            "PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS",
        )
        if cheap_hashing and scheme == "https":
            raise SettingsProblem(
                "PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS is for test suites only; "
                "a portal served over https always hashes passwords at full cost"
            )
        sentry_dsn = env.get("PORTAL_SENTRY_DSN", "").strip()
        otel = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()) or _flag(
            env.get("PORTAL_OTEL", "0"), "PORTAL_OTEL"
        )
        if sentry_dsn:
            _installed("sentry", "PORTAL_SENTRY_DSN is set")
        if otel:
            _installed("otel", "OpenTelemetry is on (OTEL_EXPORTER_OTLP_ENDPOINT or PORTAL_OTEL)")
        log_format = env.get("PORTAL_LOG_FORMAT", "json")
        if log_format not in ("json", "text"):
            raise SettingsProblem(f"PORTAL_LOG_FORMAT: {log_format!r} is neither json nor text")
        return cls(
            database_url=database_url,
            secret_key=secret_key or _dev_secret_key(var_dir),
            base_domain=base_domain,
            smtp_url=env.get("PORTAL_SMTP_URL") or None,
            port=port,
            host=env.get("PORTAL_BIND", "127.0.0.1"),
            var_dir=var_dir,
            public_scheme=scheme,
            public_port=public_port,
            public_port_is_listening_port=follows,
            run_mail_worker=_flag(env.get("PORTAL_MAIL_WORKER", "1"), "PORTAL_MAIL_WORKER"),
            mail_from=env.get("PORTAL_MAIL_FROM", f"portal@{base_domain}"),
            **{f"db_{name}": value for name, value in database_options(env).items()},
            mail_retention_days=_int(
                env.get("PORTAL_MAIL_RETENTION_DAYS", "30"), "PORTAL_MAIL_RETENTION_DAYS", 1
            ),
            trusted_proxies=parse_networks(env.get("PORTAL_TRUSTED_PROXIES", "")),
            hash_threads=_int(env.get("PORTAL_HASH_THREADS", "2"), "PORTAL_HASH_THREADS", 1),
            hash_max_wait_seconds=_seconds(
                env.get("PORTAL_HASH_MAX_WAIT", "3"), "PORTAL_HASH_MAX_WAIT", zero_allowed=True
            ),
            sign_in_deadline_seconds=_seconds(
                env.get("PORTAL_SIGN_IN_DEADLINE", "5"), "PORTAL_SIGN_IN_DEADLINE"
            ),
            api_requests_per_minute=_int(
                env.get("PORTAL_API_REQUESTS_PER_MINUTE", "600"),
                "PORTAL_API_REQUESTS_PER_MINUTE",
                1,
            ),
            webhook_retry_seconds=_webhook_retries(env),
            cheap_password_hashing_for_tests=cheap_hashing,
            workers=_int(env.get("PORTAL_WORKERS", "1"), "PORTAL_WORKERS", 1),
            keepalive_seconds=_int(
                env.get("PORTAL_KEEPALIVE_SECONDS", "75"), "PORTAL_KEEPALIVE_SECONDS", 1
            ),
            log_format=log_format,
            metrics=_flag(env.get("PORTAL_METRICS", "1"), "PORTAL_METRICS"),
            worker_heartbeat_seconds=_seconds(
                env.get("PORTAL_WORKER_HEARTBEAT_SECONDS", "60"), "PORTAL_WORKER_HEARTBEAT_SECONDS"
            ),
            worker_grace_seconds=_seconds(
                env.get("PORTAL_WORKER_GRACE_SECONDS", "25"), "PORTAL_WORKER_GRACE_SECONDS"
            ),
            host_redirect_days=_int(
                env.get("PORTAL_HOST_REDIRECT_DAYS", "90"), "PORTAL_HOST_REDIRECT_DAYS", 0
            ),
            encryption_key=env.get("PORTAL_ENCRYPTION_KEY", ""),
            stripe_api_base=env.get("PORTAL_STRIPE_API_BASE", ""),
            reconcile_after_seconds=_seconds(
                env.get("PORTAL_RECONCILE_AFTER_SECONDS", "600"), "PORTAL_RECONCILE_AFTER_SECONDS"
            ),
            reconcile_every_seconds=_seconds(
                env.get("PORTAL_RECONCILE_EVERY_SECONDS", "60"), "PORTAL_RECONCILE_EVERY_SECONDS"
            ),
            sentry_dsn=sentry_dsn,
            sentry_environment=env.get("PORTAL_SENTRY_ENVIRONMENT", "").strip() or "production",
            sentry_traces_sample_rate=_share(
                env.get("PORTAL_SENTRY_TRACES_SAMPLE_RATE", "0"), "PORTAL_SENTRY_TRACES_SAMPLE_RATE"
            ),
            otel=otel,
            otel_service_name=env.get("OTEL_SERVICE_NAME", "").strip() or "portal",
        )


def _public_address(env: dict[str, str], port: int) -> tuple[str, str, int | None, bool]:
    """(scheme, base domain, links' port, whether that port follows the listening one)
    from PORTAL_PUBLIC_URL, or from the older PORTAL_PUBLIC_SCHEME / PORTAL_BASE_DOMAIN /
    PORTAL_PUBLIC_PORT when it is unset. Given both ways, they must agree."""
    scheme_raw = env.get("PORTAL_PUBLIC_SCHEME")
    if scheme_raw is not None and scheme_raw not in SCHEMES:
        raise SettingsProblem(
            f"PORTAL_PUBLIC_SCHEME: {scheme_raw!r} is not 'http' or 'https' (lower case)"
        )
    domain_raw = env.get("PORTAL_BASE_DOMAIN")
    url = env.get("PORTAL_PUBLIC_URL", "").strip()
    if not url:
        scheme = scheme_raw or "http"
        base_domain = (domain_raw or "localhost").lower()
        port_raw = env.get("PORTAL_PUBLIC_PORT")
        if port_raw is None:
            return scheme, base_domain, port, True
        return (
            scheme,
            base_domain,
            _port(port_raw, "PORTAL_PUBLIC_PORT") if port_raw else None,
            False,
        )
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise SettingsProblem(
            f"PORTAL_PUBLIC_URL: {url!r} is not an http:// or https:// address "
            "such as https://portal.example.com"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise SettingsProblem(
            f"PORTAL_PUBLIC_URL: {url!r} must be only scheme, host and port (no path)"
        )
    try:
        public_port = parts.port
    except ValueError:
        raise SettingsProblem(f"PORTAL_PUBLIC_URL: {url!r} has an invalid port") from None
    base_domain = parts.hostname.lower()
    if scheme_raw is not None and scheme_raw != parts.scheme:
        raise SettingsProblem(
            f"PORTAL_PUBLIC_SCHEME={scheme_raw} contradicts PORTAL_PUBLIC_URL={url}: "
            "remove PORTAL_PUBLIC_SCHEME"
        )
    if domain_raw is not None and domain_raw.lower() != base_domain:
        raise SettingsProblem(
            f"PORTAL_BASE_DOMAIN={domain_raw} contradicts PORTAL_PUBLIC_URL={url}: "
            "remove PORTAL_BASE_DOMAIN"
        )
    if public_port == SCHEMES[parts.scheme]:
        public_port = None
    return parts.scheme, base_domain, public_port, False


def _int(raw: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsProblem(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsProblem(f"{name}: {raw!r} must be at least {minimum}")
    return value


def _port(raw: str, name: str) -> int:
    value = _int(raw, name, 1)
    if value > 65535:
        raise SettingsProblem(f"{name}: {raw!r} is not a TCP port (1 to 65535)")
    return value


def _seconds(raw: str, name: str, *, zero_allowed: bool = False) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsProblem(f"{name}: {raw!r} is not a number of seconds") from None
    if zero_allowed and value == 0:
        return value
    if not value > 0:
        floor = "0 or more" if zero_allowed else "more than 0"
        raise SettingsProblem(f"{name}: {raw!r} must be {floor} seconds")
    return value


def _share(raw: str, name: str) -> float:
    """A fraction from 0 to 1 (a sample rate)."""
    try:
        value = float(raw.strip() or "0")
    except ValueError:
        raise SettingsProblem(f"{name}: {raw!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise SettingsProblem(f"{name}: {raw!r} must be from 0 to 1")
    return value


def _installed(integration: str, because: str) -> None:
    """Refuse to start, in one line, when an optional integration that a setting turns on
    is not installed (found without importing it: the check costs nothing)."""
    extra, modules = OPTIONAL_PACKAGES[integration]
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SettingsProblem(
                f"{because} but {module} is not installed: pip install 'portal[{extra}]'"
            )


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsProblem(f"{name}: {raw!r} is not 1 or 0")


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`"10.0.0.1, 192.168.0.0/16, ::1"` as networks (a bare address is a network of one).
    A value that is not an address stops start-up with the value named."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsProblem(
                f"PORTAL_TRUSTED_PROXIES: {part!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def database_options(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The database engine's options from PORTAL_DB_* (`engines.make_engine`'s keywords;
    `Settings.db_<name>`): the app's settings and `piccolo_conf`'s engine read them alike,
    so no engine of the portal's runs without the statement-cache setting."""
    env = dict(os.environ if env is None else env)
    return {
        "pool_size": _int(env.get("PORTAL_DB_POOL_SIZE", "10"), "PORTAL_DB_POOL_SIZE", 1),
        "wait_seconds": _seconds(env.get("PORTAL_DB_WAIT_SECONDS", "10"), "PORTAL_DB_WAIT_SECONDS"),
        "command_timeout": _seconds(
            env.get("PORTAL_DB_COMMAND_TIMEOUT", "30"), "PORTAL_DB_COMMAND_TIMEOUT"
        ),
        "application_name": env.get("PORTAL_DB_APPLICATION_NAME", "portal"),
        "statement_cache": _flag(
            env.get("PORTAL_DB_STATEMENT_CACHE", "1"), "PORTAL_DB_STATEMENT_CACHE"
        ),
    }


def var_dir_from_env(env: dict[str, str]) -> Path:
    """`PORTAL_VAR_DIR`, or `var/` in the working directory."""
    return Path(env["PORTAL_VAR_DIR"]) if env.get("PORTAL_VAR_DIR") else default_var_dir()


def database_url_from_env(env: dict[str, str] | None = None) -> str:
    """`DATABASE_URL`, or the default SQLite file under `var/`."""
    env = dict(os.environ if env is None else env)
    return env.get("DATABASE_URL") or f"sqlite:///{var_dir_from_env(env) / 'portal.sqlite3'}"


def _dev_secret_key(var_dir: Path) -> str:
    """A development secret, generated once and kept in `var/` (never committed)."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Create with owner-only permissions; a racing process may have won, so re-read.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
