"""The deployment files agree with each other, with docs/deploy.md and with the app: the
systemd units are valid, everything that renders the nginx template sets exactly its
placeholders, and every setting the app reads or the environment file sets is documented.
(The files' behaviour is proven by the other tests/test_deploy_*.py modules.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.proxies import NGINX_SITE_TEMPLATE, PLACEHOLDER, PROJECT_ROOT, render

pytestmark = pytest.mark.deploy

DEPLOY = PROJECT_ROOT / "deploy"
DOCS = (PROJECT_ROOT / "docs" / "deploy.md").read_text()


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path):
    # verify wants every ExecStart program to exist: copies name this checkout's.
    programs = {
        "/opt/portal/venv/bin/portal": str(Path(sys.executable).with_name("portal")),
        "/usr/local/bin/portal-backup": str(DEPLOY / "backup" / "portal-backup"),
    }
    names = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text()
        for production, here in programs.items():
            text = text.replace(production, here)
        (tmp_path / unit.name).write_text(text)
        names.append(unit.name.replace("@.", "@8001."))
    done = subprocess.run(
        ["systemd-analyze", "verify", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_every_renderer_of_the_nginx_site_sets_exactly_its_placeholders():
    wanted = placeholders(NGINX_SITE_TEMPLATE.read_text())
    assert "PORTAL_UPSTREAM_SERVERS" in wanted
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    nginx = compose["services"]["nginx"]
    assert set(nginx["environment"]) == wanted
    assert any(v.startswith("./nginx/portal.conf.template:") for v in nginx["volumes"])
    # docs/deploy.md: envsubst names exactly them, and the export before it sets them all.
    (envsubst,) = re.findall(r"envsubst '([^']+)'", DOCS)
    assert placeholders(envsubst) == wanted
    (exported,) = re.findall(r"export (PORTAL_DOMAIN=.*?)\nenvsubst", DOCS, re.S)
    assert set(re.findall(r"\b(PORTAL_[A-Z_]+)=", exported)) == wanted


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="needs envsubst (gettext-base)")
def test_the_documented_envsubst_renders_what_the_tests_serve():
    """Production renders the site with envsubst, the tests with `render`: the same text,
    nginx's own `$host`, `$scheme`... untouched."""
    template = NGINX_SITE_TEMPLATE.read_text()
    values = {name: f"value-of-{name.lower()}" for name in placeholders(template)}
    (names,) = re.findall(r"envsubst '([^']+)'", DOCS)
    done = subprocess.run(
        ["envsubst", names],
        input=template,
        env={"PATH": "/usr/bin:/bin", **values, "host": "not-for-nginx"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout == render(template, values)
    assert "$host" in done.stdout


def test_compose_runs_two_app_processes_a_worker_and_migrations_first():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    upstreams = services["nginx"]["environment"]["PORTAL_UPSTREAM_SERVERS"]
    apps = re.findall(r"server (\w+):8000;", upstreams)
    assert len(apps) == 2 and all(services[a].get("command") is None for a in apps)  # serve
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]
    for name in [*apps, "worker"]:
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert (PROJECT_ROOT / services["migrate"]["build"]["dockerfile"]).exists()


def documented_settings() -> set[str]:
    """The variables in the first column of docs/deploy.md's settings table."""
    table = DOCS.split("\n## Settings\n", 1)[1]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M))


def test_every_setting_is_documented():
    read_by_app = set(
        re.findall(r'env\.get\("([A-Z_]+)"', (PROJECT_ROOT / "src/portal/config.py").read_text())
    )
    assert read_by_app, "config.py reads no settings?"
    missing = read_by_app - documented_settings()
    assert not missing, f"src/portal/config.py reads {sorted(missing)}: add them to docs/deploy.md"
    example = (DEPLOY / "portal.env.example").read_text()
    in_example = set(re.findall(r"^#?([A-Z_]+)=", example, re.M))
    assert in_example and in_example <= documented_settings(), in_example - documented_settings()
