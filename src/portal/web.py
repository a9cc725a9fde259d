"""Rendering: Jinja environment, fingerprinted static files, and the one helper
that decides between a full page and an htmx fragment."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import brotli
from jinja2 import Environment, FileSystemLoader, StrictUndefined, nodes, select_autoescape
from litestar import Litestar, Request, Response
from litestar.config.app import AppConfig
from litestar.status_codes import HTTP_200_OK
from litestar.utils.scope.state import ScopeState
from markupsafe import Markup

from portal.formatting import FILTERS
from portal.security import inline_stylesheet, nonce_of

TEMPLATES_DIR = Path(__file__).parent / "partials"
HTML = "text/html"  # Litestar adds "; charset=utf-8"
# Both kinds of response come from the same URL, so caches must keep them apart.
VARY = "HX-Request, HX-Request-Type, HX-History-Restore-Request"


@dataclass(frozen=True)
class StaticFile:
    """A file under `static/`, served at a URL that contains its content hash, with its
    brotli and gzip forms made once at start-up at the strongest settings (every
    customer's first visit downloads these; nothing is compressed per request)."""

    name: str  # its plain name under static/, e.g. "app.css"
    url: str
    content_type: str
    body: bytes
    brotli: bytes
    gzip: bytes

    def encoded(self, accept_encoding: str) -> tuple[bytes, str | None]:
        """The smallest form the client accepts: (body, Content-Encoding or None)."""
        if "br" in accept_encoding:
            return self.brotli, "br"
        if "gzip" in accept_encoding:
            return self.gzip, "gzip"
        return self.body, None


@lru_cache(maxsize=64)
def _compressed(body: bytes) -> tuple[bytes, bytes]:
    """A static file's brotli and gzip forms (made once per process: every app the
    tests build serves the same files)."""
    return brotli.compress(body, quality=11), gzip.compress(body, compresslevel=9, mtime=0)


def _static_files(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    """(plain name, file) of every file under `folder`, bar the package's own module."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name in ("__init__.py", "__pycache__"):
            continue
        if entry.is_dir():
            yield from _static_files(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def load_static() -> dict[str, StaticFile]:
    """Map each static file's fingerprinted name (`app.1a2b3c4d5e.css`) to the file.

    The files are the package `portal.static` (the top-level static/ folder, shipped in
    the wheel), found through importlib.resources wherever the package is installed."""
    files: dict[str, StaticFile] = {}
    for rel, entry in _static_files(resources.files("portal.static")):
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:10]
        stem, dot, suffix = rel.rpartition(".")
        name = f"{stem}.{digest}.{suffix}" if dot else f"{rel}.{digest}"
        content_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        brotli_body, gzip_body = _compressed(body)
        files[name] = StaticFile(
            name=rel,
            url=f"/static/{name}",
            content_type=content_type,
            body=body,
            brotli=brotli_body,
            gzip=gzip_body,
        )
    return files


_DICT_ATTRIBUTES = frozenset(dir(dict))


def escaped_text(value: Any) -> str:
    """`value` as HTML-escaped text, a plain `str`: the `text` filter, for the few rows
    written with autoescaping off (the Invoices tab's table). Half the cost of `| e`,
    which builds a `Markup` object per value; never used where autoescaping is on (there
    a plain `str` would be escaped twice)."""
    if value is None:
        return ""
    # The same entities as MarkupSafe writes, so a page spells every escape one way.
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


class PortalEnvironment(Environment):
    """Jinja, reading `row.name` on a dict as the key first.

    Jinja tries an attribute before a key, and on a dict the attribute lookup fails
    with an exception before the key is read; on a page of 25 invoices that is
    hundreds of wasted lookups. Dict methods (`.get`,
    `.items`) still resolve as methods.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return Environment.getattr(self, obj, attribute)


class Renderer:
    """Holds the Jinja environment and static file map for one app."""

    def __init__(self) -> None:
        self.static = load_static()
        self._parent_cache: dict[str, list[str]] = {}
        self._static_by_name = {f.name: f for f in self.static.values()}
        # Decoded once: the signed-out pages put these inside every page they render.
        self._script_text = {
            f.name: Markup(f.body.decode()) for f in self.static.values() if f.name.endswith(".js")
        }
        self.env = PortalEnvironment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters.update(FILTERS)
        self.env.filters["text"] = escaped_text
        self.env.globals["static_url"] = self.static_url
        # Shared macros, available in whole pages and in blocks rendered alone.
        self.env.globals["forms"] = self.env.get_template("macros/forms.html").module
        self.env.globals["invoice_tables"] = self.env.get_template("macros/invoices.html").module
        self.env.globals["brand"] = self.env.get_template("macros/brand.html").module
        self.env.globals["inline_css"] = Markup(inline_stylesheet())  # allowed by its CSP hash
        self.env.globals["inline_script"] = self.inline_script

    def compile_all(self) -> None:
        """Compile every template now (the server does this at start-up, so no customer
        waits for a compile and the compiled code is frozen out of garbage collection)."""
        for name in self.env.list_templates():
            self.env.get_template(name)

    def static_url(self, name: str) -> str:
        """URL of a static file by its plain name, e.g. `static_url('app.css')`."""
        return self._static_by_name[name].url

    def inline_script(self, name: str) -> Markup:
        """A static script's text, to put inside a `<script nonce>` on a page that should
        need no other request (the signed-out pages); our own files, free of `</script>`."""
        return self._script_text[name]

    def render_string(
        self, template_name: str, context: dict[str, Any], block: str | None = None
    ) -> str:
        """Render a whole template, or only one of its blocks."""
        template = self.env.get_template(template_name)
        if block is None:
            return template.render(context)
        # Give the context the blocks of the whole `extends` chain (most derived first),
        # as a full render would, so a layout's block can call the page's blocks.
        ctx = template.new_context(context)
        for parent_name in self._parents(template_name):
            for name, func in self.env.get_template(parent_name).blocks.items():
                ctx.blocks.setdefault(name, []).append(func)
        return "".join(ctx.blocks[block][0](ctx))

    def _parents(self, template_name: str) -> list[str]:
        """Names of the templates `template_name` extends, nearest first (cached)."""
        cached = self._parent_cache.get(template_name)
        if cached is None:
            cached = []
            name: str | None = template_name
            while name is not None:
                source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
                extends = self.env.parse(source).find(nodes.Extends)
                name = extends.template.value if extends is not None else None  # type: ignore[attr-defined]
                if name is not None:
                    cached.append(name)
            self._parent_cache[template_name] = cached
        return cached


def is_fragment_request(request: Request[Any, Any, Any]) -> bool:
    """True when htmx asks to swap one region (not a full page, not a history restore)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-request-type", "partial") == "partial"
        and headers.get("hx-history-restore-request") != "true"
    )


def renders_block(request: Request[Any, Any, Any], block: str | None) -> str | None:
    """The block `render` answers this request with: `block` for an htmx swap of one
    region, None (the whole page) for anything else. Helpers that skip work a fragment
    does not show (the office menu's counts) ask this, not the headers."""
    return block if block is not None and is_fragment_request(request) else None


def csrf_token(request: Request[Any, Any, Any]) -> str:
    """The CSRF token for forms on this page (set by Litestar's CSRF middleware)."""
    token = ScopeState.from_scope(request.scope).csrf_token
    return token if isinstance(token, str) else ""


def render(
    request: Request[Any, Any, Any],
    template_name: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = "region",
    status_code: int = HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """Render `template_name`: the whole page for a plain request, only `block` for htmx.

    This is the one place that decides full page versus fragment.
    """
    renderer: Renderer = request.app.state.renderer
    full_context = {**request.app.state.template_globals, "request": request, **(context or {})}
    full_context.setdefault("csrf_token", csrf_token(request))
    full_context.setdefault("csp_nonce", nonce_of(request.scope))
    shown = renders_block(request, block)
    full_context["fragment"] = shown is not None
    body = renderer.render_string(template_name, full_context, shown)
    all_headers = {"Vary": VARY, "Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return Response(body, status_code=status_code, media_type=HTML, headers=all_headers)


async def after_write(
    request: Request[Any, Any, Any], url: str, fragment: Callable[[], Awaitable[Response[str]]]
) -> Response[str]:
    """The answer to a successful write: an htmx swap gets the region `fragment()`
    renders (the page's new state, with its notice); a plain form post (JavaScript off)
    is sent on to `url` with a 303, so a reload never posts twice. Only the answer given
    is built. With `render`, the one place that tells the two kinds of request apart."""
    if is_fragment_request(request):
        return await fragment()
    return see_other(request, url)


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    """True for any request made by htmx."""
    return request.headers.get("hx-request") == "true"


def see_other(request: Request[Any, Any, Any], url: str) -> Response[str]:
    """After a successful POST: 303 to `url`; for htmx, `HX-Redirect` (a real page load)."""
    if is_htmx(request):
        return Response(
            "", status_code=200, media_type=HTML, headers={"HX-Redirect": url, "Vary": VARY}
        )
    return Response("", status_code=303, media_type=HTML, headers={"Location": url, "Vary": VARY})


async def form_data(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A form's fields as strings (first value of each); malformed bodies give {}."""
    try:
        form = await request.form()
    except Exception:  # a malformed body is the sender's problem, not a crash
        return {}
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in out:
            out[key] = _without_nul(value)
    return out


def _without_nul(value: str) -> str:
    """Form text without NUL bytes: nobody types one, and PostgreSQL cannot store one
    (it would be a database error, not a message)."""
    return value.replace("\x00", "") if "\x00" in value else value


async def form_lists(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """A form's fields with every value (for checkboxes that repeat a name)."""
    try:
        form = await request.form()
    except Exception:
        return {}
    out: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out.setdefault(key, []).append(_without_nul(value))
    return out


class App(Litestar):
    """Litestar, without one start-up cost: its own set-up step imports OpenTelemetry's
    ASGI instrumentation whenever that is installed (the `otel` extra), switched on or
    not (57 modules, about 20 ms, at every start of every process). Here only when given
    Litestar's OpenTelemetry middleware (`portal.observability`); its module's name is
    read, nothing imported. The portal and its sync API are built on this."""

    @staticmethod
    def _patch_opentelemetry_middleware(config: AppConfig) -> AppConfig:
        for middleware in config.middleware:
            inner = getattr(middleware, "middleware", middleware)
            if getattr(inner, "__module__", "").startswith("litestar.plugins.opentelemetry"):
                return Litestar._patch_opentelemetry_middleware(config)
        return config
