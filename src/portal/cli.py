"""`portal serve|migrate|demo|import|export|create-staff|worker`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from portal.config import Settings


async def _with_database(settings: Settings, work: Callable[[], Awaitable[Any]]) -> Any:
    from portal.auth import passwords
    from portal.db import engine as db_engine

    passwords.use_cost(cheap_for_tests=settings.cheap_password_hashing_for_tests)
    engine = db_engine.use_database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        wait_seconds=settings.db_wait_seconds,
    )
    await db_engine.start(engine)
    try:
        return await work()
    finally:
        await db_engine.stop(engine)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from portal.db.migrate import migrate

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
    from portal.importer import ImportProblem, import_file

    path = Path(args.file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"Cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        tenant_id = asyncio.run(_with_database(settings, lambda: import_file(raw)))
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
    print(f"Created {args.role} {args.email} for {args.host}.")
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
    from portal.worker import run_forever

    asyncio.run(_with_database(settings, lambda: run_forever(settings)))
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from portal.app import create_app

    port = args.port or settings.port
    settings = settings.with_(port=port, public_port=settings.public_port and port)
    _print_welcome(settings)
    app = create_app(settings)
    app.state.renderer.compile_all()
    # Long-lived objects made at start-up (templates, routes) need no more garbage
    # collection; fewer, later collections keep rare long pauses out of request latency.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    uvicorn.run(
        app,
        host=args.bind or settings.host,
        port=port,
        log_level="info",
        access_log=args.access_log,
        server_header=False,
    )
    return 0


def _print_welcome(settings: Settings) -> None:
    from portal import demo

    port = f":{settings.port}" if settings.port not in (80, 443) else ""
    base = f"{settings.public_scheme}://{demo.DEMO_HOST}.{settings.base_domain}{port}"
    print(
        "\n  Customer Portal is starting.\n"
        f"  Demo customer portal: {base}/\n"
        f"      sign in as {demo.JANE_EMAIL} / {demo.JANE_PASSWORD}\n"
        f"  Demo office:          {base}/office/\n"
        f"      admin  {demo.ADMIN_EMAIL} / {demo.ADMIN_PASSWORD}\n"
        f"      office {demo.OFFICE_EMAIL} / {demo.OFFICE_PASSWORD}\n"
        f"  Emails (no SMTP set): {settings.mail_dir}/\n",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `portal` command."""
    parser = argparse.ArgumentParser(prog="portal", description="Customer Portal")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the portal over HTTP")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--bind", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--quiet", action="store_true")
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

    p = sub.add_parser("worker", help="deliver queued emails (also runs inside `serve`)")
    p.set_defaults(func=cmd_worker)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    return args.func(Settings.from_env(), args)


if __name__ == "__main__":
    sys.exit(main())
