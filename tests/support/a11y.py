"""Accessibility checks with axe-core (shipped on disk by the axe-playwright-python package)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import axe_playwright_python
from playwright.sync_api import Page

AXE_JS = Path(axe_playwright_python.__file__).parent / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


@lru_cache(maxsize=1)
def axe_source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict]:
    """WCAG 2.2 A and AA violations on the page as it is now."""
    # Evaluated through the DevTools protocol, so the page's strict CSP does not block it.
    page.evaluate(axe_source())
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_TAGS,
    )
    return result["violations"]


def assert_accessible(page: Page) -> None:
    """Fail with a readable list when axe finds WCAG 2.2 A/AA problems."""
    violations = axe_violations(page)
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    assert not violations, f"{page.url}:\n" + "\n".join(lines)


def assert_no_horizontal_scroll(page: Page) -> None:
    """At the current viewport, nothing is wider than the screen."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 0:
        wide = page.evaluate(
            """() => { const w = document.documentElement.clientWidth;
              return [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 1).slice(-5)
                .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                     + (e.className ? '.' + String(e.className).replace(/ /g, '.') : '')); }"""
        )
        raise AssertionError(f"{page.url} scrolls sideways by {overflow}px: {', '.join(wide)}")
