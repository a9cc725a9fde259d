"""The installed package: a wheel built from this checkout, installed outside it, migrates,
loads the demo and serves pages and static files from the package alone."""

from __future__ import annotations

import contextlib
import shutil
import site
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from portal.demo import DEMO_HOST
from portal.testing import engine_kind, free_port

CHECKOUT = Path(__file__).resolve().parents[1]


def package_dirs() -> set[str]:
    """Every folder of the portal package in the checkout, as a dotted name."""
    root = CHECKOUT / "src"
    return {
        ".".join(path.relative_to(root).parts)
        for path in [root / "portal", *(root / "portal").rglob("*")]
        if path.is_dir() and path.name != "__pycache__"
    }


def test_every_folder_of_the_package_is_listed_for_the_wheel():
    """The wheel's packages are listed by hand (static/ is mapped in from the top level), so
    a new folder under src/portal must be listed too, or the installed package lacks it."""
    config = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == package_dirs() | {"portal.static"}
    assert config["package-dir"]["portal.static"] == "static"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET on the demo business's host."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": f"{DEMO_HOST}.localhost:{port}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["content-type"], response.read()


WHERE_IS_EVERYTHING = """
import importlib.resources, portal, portal.app, portal.auth.policy, portal.db.piccolo_app, portal.web
print(*portal.__path__, portal.app.__file__, portal.web.TEMPLATES_DIR, portal.auth.policy.COMMON_PASSWORDS,
      portal.db.piccolo_app.APP_CONFIG.migrations_folder_path, importlib.resources.files("portal.static"))
"""


@pytest.mark.slow
@pytest.mark.skipif(engine_kind() == "postgres", reason="the wheel test runs once, on SQLite")
def test_installed_wheel_migrates_and_serves_the_sign_in_page_and_its_stylesheet(tmp_path):
    # Build from a copy of what the wheel is made of, so no build/ folder left in the
    # checkout by an earlier build can add files the sources no longer have.
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(CHECKOUT / "pyproject.toml", source)
    for folder in ("src", "static"):
        shutil.copytree(
            CHECKOUT / folder,
            source / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "-q", "--no-deps", "-w", wheels, source, cwd=tmp_path)
    (wheel,) = wheels.glob("portal-*.whl")

    # A fresh environment with the portal from the wheel alone; its dependencies are read
    # from this checkout's environment (a path in a .pth file, added after the portal's own
    # site-packages, so they are found but the checkout's editable portal is not).
    env_dir = tmp_path / "env"
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "venv", "--without-pip", env_dir, cwd=tmp_path)
    run(*pip, "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    site_packages = "import site; print(site.getsitepackages()[0])"
    installed = Path(run(python, "-c", site_packages, cwd=tmp_path).strip())
    (installed / "checkout_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")

    workdir = tmp_path / "site"
    workdir.mkdir()
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORTAL_SECRET_KEY": "wheel-test-secret-not-for-production",
    }
    # Code, templates, migrations, data files and static files all come from the package.
    where = run(python, "-c", WHERE_IS_EVERYTHING, cwd=workdir, env=env).split()
    assert len(where) >= 6 and all(Path(p).is_relative_to(installed) for p in where), where

    run(env_dir / "bin" / "portal", "migrate", "--quiet", cwd=workdir, env=env)
    run(env_dir / "bin" / "portal", "demo", cwd=workdir, env=env)
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [env_dir / "bin" / "portal", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                status, kind, body = get(port, "/sign-in")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.1)
        page = body.decode()
        assert status == 200 and kind.startswith("text/html")
        assert "Sign in" in page
        sheet = (CHECKOUT / "static" / "app.css").read_bytes()
        assert f"<style>{sheet.decode()}</style>" in page  # inline on the sign-in page
        stylesheet = page.split('rel="prefetch" href="', 1)[1].split('"', 1)[0]
        status, kind, body = get(port, stylesheet)  # the file the signed-in pages link
        assert status == 200 and kind.startswith("text/css")
        assert body == sheet
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()

    # The database, the secret and the mail folder live in ./var of the working directory,
    # never inside the installed package.
    assert (workdir / "var" / "portal.sqlite3").exists()
    assert not [p for p in env_dir.rglob("var") if p.is_dir()]
    # Installed and run as an operator would, passwords are hashed at the production cost.
    with contextlib.closing(sqlite3.connect(workdir / "var" / "portal.sqlite3")) as db:
        hashes = [h for (h,) in db.execute("SELECT password_hash FROM staff_user")]
    assert hashes and all(h.startswith("$argon2id$v=19$m=65536,t=3,p=1$") for h in hashes)
