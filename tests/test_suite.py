"""The test suites' own layout: shared helpers live in tests/support/, and no test module or
conftest imports another one (each can be read, run and changed on its own)."""

from __future__ import annotations

import ast
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, by its dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_test_modules_import_only_shared_helpers():
    files = sorted([*(CHECKOUT / "tests").glob("*.py"), *(CHECKOUT / "e2e").glob("*.py")])
    assert len(files) > 20
    wrong = {
        f"{path.relative_to(CHECKOUT)}: {name}"
        for path in files
        for name in imported_modules(path)
        if name.split(".")[0] in ("tests", "e2e") and not name.startswith("tests.support")
    }
    assert not wrong, f"import helpers from tests/support/ instead: {sorted(wrong)}"
