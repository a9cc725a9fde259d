"""`portal serve|migrate|demo|import|export|create-staff|domain|worker`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from portal import logs
from portal.config import Settings, SettingsProblem


async def _with_database(settings: Settings, work: Callable[[], Awaitable[Any]]) -> Any:
    from portal.auth import passwords
    from portal.db import engine as db_engine

    passwords.use_cost(cheap_for_tests=settings.cheap_password_hashing_for_tests)
    engine = db_engine.use_settings(settings)
    await db_engine.start(engine)
    try:
        return await work()
    finally:
        await db_engine.stop(engine)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from portal.db.migrate import migrate, pending_migrations

    if args.check:
        pending = asyncio.run(_with_database(settings, pending_migrations))
        for migration_id in pending:
            print(f"pending: {migration_id}")
        print(f"{len(pending)} migration(s) pending." if pending else "Database is up to date.")
        return 1 if pending else 0
    asyncio.run(_with_database(settings, lambda: migrate(quiet=args.quiet)))
    print("Database is up to date.")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from portal.db.tables import Tenant
    from portal.demo import DEMO_HOST, load_demo

    async def work() -> str:
        if args.if_empty and await Tenant.count().run() > 0:
            return "The database already has businesses; demo not loaded."
        if await Tenant.exists().where(Tenant.host == DEMO_HOST).run():
            return f"The demo business ({DEMO_HOST}) is already loaded."
        await load_demo()
        return f"Loaded the demo business ({DEMO_HOST})."

    print(asyncio.run(_with_database(settings, work)))
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from portal.importer import ImportProblem

    path = Path(args.file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"Cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        tenant_id = asyncio.run(_with_database(settings, lambda: _import_and_analyze(raw)))
    except ImportProblem as exc:
        print(f"Import failed, nothing was imported.\n{path}: {exc}", file=sys.stderr)
        return 1
    print(f"Imported {path} (business id {tenant_id}).")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from portal.exporter import ExportProblem, export_business

    try:
        body = asyncio.run(_with_database(settings, lambda: export_business(args.host)))
    except ExportProblem as exc:
        print(f"Export failed: {exc}", file=sys.stderr)
        return 1
    if args.output in (None, "-"):
        sys.stdout.buffer.write(body)
    else:
        Path(args.output).write_bytes(body)
        print(f"Exported {args.host} to {args.output}.", file=sys.stderr)
    return 0


async def _import_and_analyze(raw: bytes) -> int:
    """Import, then refresh the planner's statistics (PostgreSQL): a big import changes
    the tables' sizes by orders of magnitude."""
    from portal.db.migrate import analyze
    from portal.importer import import_file

    tenant_id = await import_file(raw)
    await analyze()
    return tenant_id


def cmd_create_staff(settings: Settings, args: argparse.Namespace) -> int:
    from portal.auth import staff

    def refuse(problem: str) -> int:
        print(f"Not created: {problem}", file=sys.stderr)
        return 1

    # Who, first: a mistyped host is told before anyone types a password.
    tenant, email, problem = asyncio.run(
        _with_database(settings, lambda: staff.new_staff_problem(args.host, args.email, args.role))
    )
    if problem or tenant is None:
        return refuse(problem or "no such business")
    password, problem = _read_new_password(args.password_stdin)
    if problem:
        return refuse(problem)
    problem = staff.staff_password_problem(password, tenant, email)
    if problem:
        return refuse(f"that password can't be used. {problem}")

    async def work() -> str | None:
        return await staff.create_staff(args.host, args.email, args.name or "", args.role, password)

    problem = asyncio.run(_with_database(settings, work))
    if problem:
        return refuse(problem)
    logs.event(
        "staff.added",
        "staff member added (portal create-staff)",
        tenant=tenant["id"],
        business=args.host,
        actor="operator",
        role=args.role,
    )
    print(f"Created {args.role} {args.email} for {args.host}.")
    return 0


def cmd_domain(settings: Settings, args: argparse.Namespace) -> int:
    """Give a business its own domain (or take it away): its primary address from now on.
    DNS and the TLS certificate for it are the operator's (docs/deploy.md)."""
    from portal.db import office_settings
    from portal.db.activity import Actor
    from portal.db.queries import tenant_by_host
    from portal.settings_form import clean_domain

    domain = None
    if not args.remove:
        domain, problem = clean_domain(args.domain or "", settings.base_domain)
        if problem:
            print(f"Not changed: {problem}", file=sys.stderr)
            return 1

    async def work() -> str | None:
        tenant = await tenant_by_host(args.host)
        if tenant is None:
            return f"no business has the host name {args.host!r}"
        try:
            await office_settings.set_custom_domain(
                tenant["id"], domain, Actor("operator (portal domain)", "system")
            )
        except office_settings.DomainTaken:
            return f"another business already uses {domain}"
        return None

    problem = asyncio.run(_with_database(settings, work))
    if problem:
        print(f"Not changed: {problem}", file=sys.stderr)
        return 1
    print(f"{args.host}: own domain {domain}." if domain else f"{args.host}: no own domain.")
    return 0


class _NoPasswordArgument(argparse.Action):
    """`--password X` is refused (without repeating X): a password on the command line is
    seen by other users (ps) and kept in shell history."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(
            "--password is not accepted (the command line is visible to others): type the "
            "password when asked, or pipe it in with --password-stdin"
        )


def _read_new_password(from_stdin: bool) -> tuple[str, str | None]:
    """(password, problem): typed twice at a terminal (not echoed), or the first line of
    standard input with `--password-stdin` or when it is not a terminal (scripts). Never
    from the command line, where other users and the shell history would see it."""
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        return line, None if line else "no password on standard input"
    first = getpass.getpass("Password for the new staff member: ")
    if getpass.getpass("The same password again: ") != first:
        return "", "the two passwords differ"
    return first, None


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the worker until SIGTERM or SIGINT: then the email in flight is finished (or,
    past the grace period, released for another worker) before the process exits 0."""
    from portal import observability
    from portal.worker import run_forever

    observability.start(settings, process="worker")  # its errors to Sentry too, when set

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_forever(
            settings, stop, heartbeat=True, grace_seconds=settings.worker_grace_seconds
        )

    asyncio.run(_with_database(settings, work))
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve `portal.asgi:app` with uvicorn: options become the environment the worker
    processes build their settings from, so every process sees the same settings."""
    import uvicorn

    overrides = {
        "PORT": args.port,
        "PORTAL_BIND": args.host,
        "PORTAL_WORKERS": args.workers,
        "PORTAL_TRUSTED_PROXIES": args.trusted_proxies,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    settings = Settings.from_env()  # the options checked as the workers will read them
    asyncio.run(_print_welcome(settings))
    uvicorn.run(
        "portal.asgi:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        # One JSON line per request comes from the app itself (portal/logs.py).
        access_log=False,
        log_config=None,
        server_header=False,
        # Who the client is comes from the app's own trusted-proxy rule (forwarded.py),
        # never from uvicorn's default of believing 127.0.0.1.
        proxy_headers=False,
        # A phone reading a page keeps its connection (and TLS session) for the next click.
        timeout_keep_alive=settings.keepalive_seconds,
        timeout_graceful_shutdown=10,
    )
    return 0


async def _print_welcome(settings: Settings) -> None:
    """Where the portal is; the demo's sign-ins only when the demo business is loaded."""
    from portal import demo
    from portal.db import engine as db_engine
    from portal.db.tables import Tenant
    from portal.mail.links import portal_url

    lines = [f"\n  Customer Portal is starting: {settings.public_url}/"]
    db_engine.engine_for(settings)  # a DATABASE_URL that names no database stops here
    try:
        has_demo = await _with_database(
            settings, lambda: Tenant.exists().where(Tenant.host == demo.DEMO_HOST).run()
        )
    except Exception:  # not reachable or not migrated yet: the app answers 503 until it is
        has_demo = False
    if has_demo:
        base = portal_url(settings, demo.DEMO_HOST, "")
        lines += [
            f"  Demo customer portal: {base}/",
            f"      sign in as {demo.JANE_EMAIL} / {demo.JANE_PASSWORD}",
            f"  Demo office:          {base}/office/",
            f"      admin  {demo.ADMIN_EMAIL} / {demo.ADMIN_PASSWORD}",
            f"      office {demo.OFFICE_EMAIL} / {demo.OFFICE_PASSWORD}",
        ]
    if not settings.smtp_url:
        lines.append(f"  Emails (no SMTP set): {settings.mail_dir}/")
    print("\n".join(lines) + "\n", flush=True)


def _environment_help() -> str:
    from portal.config import ENVIRONMENT

    width = max(len(name) for name, _, _ in ENVIRONMENT)
    rows = [f"  {name:<{width}}  {default}  ({meaning})" for name, default, meaning in ENVIRONMENT]
    return "environment variables (default, meaning):\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `portal` command."""
    parser = argparse.ArgumentParser(
        prog="portal",
        description="Customer Portal",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"portal {_version()}")
    parser.add_argument("--debug", action="store_true", help="on failure, show the traceback too")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the portal over HTTP (uvicorn)")
    p.add_argument("--port", type=int, default=None, help="port to listen on (env PORT)")
    p.add_argument(
        "--host", "--bind", dest="host", default=None, help="address to listen on (PORTAL_BIND)"
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes (PORTAL_WORKERS)")
    p.add_argument(
        "--trusted-proxies",
        default=None,
        help="proxies whose X-Forwarded-* headers are believed (PORTAL_TRUSTED_PROXIES)",
    )
    p.add_argument("--access-log", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--check", action="store_true", help="apply nothing; exit 1 while migrations are pending"
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="load the demo business (XYZ Services)")
    p.add_argument("--if-empty", action="store_true", help="only when there is no business yet")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import a business from a JSON file (docs/import-format.md)")
    p.add_argument("file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "export", help="write a business in the import format (docs/import-format.md)"
    )
    p.add_argument("--host", required=True, help="the business's portal host name")
    p.add_argument("--output", "-o", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("create-staff", help="add an office staff member", allow_abbrev=False)
    p.add_argument("--host", required=True, help="the business's portal host name")
    p.add_argument("--email", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--role", choices=["admin", "office"], default="office")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (default: asked for, twice, at a "
        "terminal; read from standard input when it is not one)",
    )
    p.add_argument("--password", action=_NoPasswordArgument, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_create_staff)

    p = sub.add_parser("domain", help="give a business its own domain (its primary address)")
    p.add_argument("--host", required=True, help="the business's portal host name")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--domain", help="e.g. portal.xyzplumbing.com")
    group.add_argument("--remove", action="store_true", help="back to <host>.<base domain>")
    p.set_defaults(func=cmd_domain)

    p = sub.add_parser("worker", help="deliver queued emails (also runs inside `serve`)")
    p.set_defaults(func=cmd_worker)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsProblem as problem:
        print(f"portal: {problem}", file=sys.stderr)
        return 2
    logs.configure(settings)
    if args.command not in ("serve", "worker"):
        # A one-off command reports a failure once, in its own line (below), not also as
        # a driver warning and an outage log line.
        warnings.filterwarnings("ignore", module="piccolo")
        logging.getLogger("portal.db").setLevel(logging.ERROR)
    try:
        result: int = args.func(settings, args)
        return result
    except KeyboardInterrupt:
        return 130
    except SettingsProblem as problem:  # found once running (a DSN Sentry cannot use)
        print(f"portal: {problem}", file=sys.stderr)
        return 2
    except Exception as exc:
        # One line a person can act on; the traceback only when asked for (--debug).
        if args.debug:
            traceback.print_exc()
        print(f"portal {args.command}: {failure_in_words(exc)}", file=sys.stderr)
        return 1


def failure_in_words(exc: BaseException) -> str:
    """What went wrong, in one line (the database out of reach, a bad URL, …)."""
    from portal.db.outage import unavailable_in

    if isinstance(exc, OSError) or unavailable_in(exc):
        return f"cannot reach the database ({type(exc).__name__}: {exc}); is DATABASE_URL right?"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{text} ({type(exc).__name__}; --debug shows the traceback)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("portal")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
