"""The layer contract (`make lint` runs `lint-imports` with [tool.importlinter] from
pyproject.toml) holds for the portal, and it does catch what it is there to catch: the
same contract, run on a small throwaway package laid out like the portal, fails on an
import that goes up a layer, on an import cycle, and on a handler importing another."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint(project: Path, package_root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` in `project` (its pyproject.toml), finding `portal` in `package_root`."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _module(root: Path, dotted: str, source: str = "") -> None:
    """Write module `dotted` under `root` (its packages made as needed)."""
    parts = dotted.split(".")
    folder = root.joinpath(*parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(parts)):
        init = root.joinpath(*parts[:depth], "__init__.py")
        if not init.exists():
            init.write_text("")
    path = folder / f"{parts[-1]}.py"
    path.write_text((path.read_text() if path.exists() else "") + source)


@pytest.fixture
def throwaway(tmp_path: Path) -> tuple[Path, Path]:
    """A package `portal` with one module per layer of the real contract (and the imports
    the contract ignores, so every ignore still matches), plus the real pyproject.toml."""
    packages = tmp_path / "src"
    for layer in CONFIG["contracts"][0]["layers"]:
        for name in layer.replace("|", ":").split(":"):
            # Every layer a package, so a module can sit inside any of them.
            _module(packages, f"{name.strip()}.__init__")
    for rule in CONFIG["contracts"][0].get("ignore_imports", []):
        importer, imported = (part.strip() for part in rule.split("->"))
        _module(packages, imported)
        _module(packages, importer, f"import {imported}\n")
    _module(packages, "portal.handlers.invoices", "import portal.db\n")
    _module(packages, "portal.handlers.account", "import portal.pages\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return tmp_path, packages


def test_the_portal_keeps_its_layer_contract():
    result = _lint(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_throwaway_package_passes_as_laid_out(throwaway):
    project, packages = throwaway
    result = _lint(project, packages)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_import_up_a_layer_breaks_the_contract(throwaway):
    project, packages = throwaway
    _module(packages, "portal.db.payments", "import portal.payments\n")
    result = _lint(project, packages)
    assert result.returncode != 0
    assert "portal.db is not allowed to import portal.payments" in result.stdout
    assert "portal.db.payments -> portal.payments" in result.stdout


def test_an_import_cycle_breaks_the_contract(throwaway):
    project, packages = throwaway
    _module(packages, "portal.auth.sessions", "import portal.auth.tokens\n")
    _module(packages, "portal.auth.tokens", "import portal.auth.sessions\n")
    result = _lint(project, packages)
    assert result.returncode != 0
    assert "No import cycles between the modules of a package BROKEN" in result.stdout


def test_a_cycle_hidden_in_a_function_still_breaks_it(throwaway):
    project, packages = throwaway
    _module(packages, "portal.db.engine", "import portal.db.fast\n")
    _module(packages, "portal.db.fast", "def fetch():\n    import portal.db.engine\n")
    result = _lint(project, packages)
    assert result.returncode != 0
    assert "No import cycles between the modules of a package BROKEN" in result.stdout


def test_a_handler_importing_a_handler_breaks_the_contract(throwaway):
    project, packages = throwaway
    _module(packages, "portal.handlers.invoices", "import portal.handlers.account\n")
    result = _lint(project, packages)
    assert result.returncode != 0
    assert "No handler imports another handler" in result.stdout
    assert "BROKEN" in result.stdout


def test_the_data_layer_never_queues_an_email(throwaway):
    # Once two db -> mail imports were let through (the notification templates queued their
    # emails from db/); the contract ignores none now, so db/ importing mail/ is refused.
    assert not any(c.get("ignore_imports") for c in CONFIG["contracts"])
    project, packages = throwaway
    _module(packages, "portal.mail.outbox")
    _module(packages, "portal.db.office_notifications", "import portal.mail.outbox\n")
    result = _lint(project, packages)
    assert result.returncode != 0
    assert "portal.db is not allowed to import portal.mail" in result.stdout
    assert "portal.db.office_notifications -> portal.mail.outbox" in result.stdout
