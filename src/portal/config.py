"""Settings: one dataclass, built from environment variables.

Tests build their own `Settings` and pass it to `create_app`; nothing else in the
app reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path


def default_var_dir() -> Path:
    """`var/` in the working directory: the database, the dev secret and the dev mailbox
    live where the portal is run, never inside the installed package."""
    return Path.cwd() / "var"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _webhook_retries(env: dict[str, str]) -> dict[str, object]:
    """PORTAL_WEBHOOK_RETRY_SECONDS, comma-separated seconds, if set."""
    raw = env.get("PORTAL_WEBHOOK_RETRY_SECONDS", "")
    if not raw.strip():
        return {}
    return {"webhook_retry_seconds": tuple(float(x) for x in raw.split(",") if x.strip())}


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
    # Public scheme of customer links in emails; "https" in production behind TLS.
    public_scheme: str = "http"
    # Port shown in links built for emails; None when the public URL has no port.
    public_port: int | None = 8000
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
    # Delivered (and failed) emails are deleted this many days after they were sent/queued.
    mail_retention_days: int = 30
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks); with none,
    # the client is the TCP peer. Env PORTAL_TRUSTED_PROXIES, comma-separated.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Password hashing: threads per process, and the longest a sign-in waits for a free
    # one before it is answered "busy, try again in a moment" (auth/passwords.py).
    hash_threads: int = 2
    hash_max_wait_seconds: float = 3.0
    # argon2 at its smallest cost, for test suites only (never with https: see from_env).
    cheap_password_hashing_for_tests: bool = False
    # The sync API: requests a minute per key (counted in the database, across processes).
    api_requests_per_minute: int = 600
    # Outgoing webhooks: seconds before each retry after a failed delivery (the Standard
    # Webhooks schedule, stretched to about three days), and how long one may take.
    webhook_retry_seconds: tuple[float, ...] = (
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        50400,
        86400,
    )
    webhook_timeout_seconds: float = 10.0
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

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = dict(os.environ if env is None else env)
        var_dir = var_dir_from_env(env)
        database_url = database_url_from_env(env)
        port = int(env.get("PORT", "8000"))
        cheap_hashing = env.get("PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS", "0") != "0"
        if cheap_hashing and env.get("PORTAL_PUBLIC_SCHEME") == "https":
            raise ValueError(
                "PORTAL_CHEAP_PASSWORD_HASHING_FOR_TESTS is for test suites only; "
                "a portal served over https always hashes passwords at full cost"
            )
        public_port_raw = env.get("PORTAL_PUBLIC_PORT")
        if public_port_raw is None:
            public_port: int | None = port
        else:
            public_port = int(public_port_raw) if public_port_raw else None
        return cls(
            database_url=database_url,
            secret_key=env.get("PORTAL_SECRET_KEY") or _dev_secret_key(var_dir),
            base_domain=env.get("PORTAL_BASE_DOMAIN", "localhost").lower(),
            smtp_url=env.get("PORTAL_SMTP_URL") or None,
            port=port,
            host=env.get("PORTAL_BIND", "127.0.0.1"),
            var_dir=var_dir,
            public_scheme=env.get("PORTAL_PUBLIC_SCHEME", "http"),
            public_port=public_port,
            run_mail_worker=env.get("PORTAL_MAIL_WORKER", "1") != "0",
            mail_from=env.get(
                "PORTAL_MAIL_FROM", f"portal@{env.get('PORTAL_BASE_DOMAIN', 'localhost').lower()}"
            ),
            db_pool_size=int(env.get("PORTAL_DB_POOL_SIZE", "10")),
            db_wait_seconds=float(env.get("PORTAL_DB_WAIT_SECONDS", "10")),
            mail_retention_days=int(env.get("PORTAL_MAIL_RETENTION_DAYS", "30")),
            trusted_proxies=parse_networks(env.get("PORTAL_TRUSTED_PROXIES", "")),
            hash_threads=int(env.get("PORTAL_HASH_THREADS", "2")),
            api_requests_per_minute=int(env.get("PORTAL_API_REQUESTS_PER_MINUTE", "600")),
            **_webhook_retries(env),
            hash_max_wait_seconds=float(env.get("PORTAL_HASH_MAX_WAIT", "3")),
            cheap_password_hashing_for_tests=cheap_hashing,
        )


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
            raise ValueError(
                f"PORTAL_TRUSTED_PROXIES: {part!r} is not an IP address or network"
            ) from None
    return tuple(networks)


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
