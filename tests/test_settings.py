"""Settings come from environment variables, with safe development defaults."""

from __future__ import annotations

from pathlib import Path

from portal.config import Settings


def test_defaults_use_sqlite_file_in_var_dir(tmp_path: Path):
    settings = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    assert settings.is_sqlite
    assert settings.base_domain == "localhost"
    assert settings.port == 8000
    assert settings.smtp_url is None
    assert settings.mail_dir == tmp_path / "mail"


def test_dev_secret_is_generated_once_and_kept(tmp_path: Path):
    first = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)}).secret_key
    second = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0  # owner-only file


def test_environment_overrides(tmp_path: Path):
    settings = Settings.from_env(
        {
            "PORTAL_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "PORTAL_BASE_DOMAIN": "Portal.Example.COM",
            "PORTAL_SECRET_KEY": "from-env",
            "PORTAL_SMTP_URL": "smtp://127.0.0.1:2525",
            "PORT": "9000",
        }
    )
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert not settings.is_sqlite
    assert settings.base_domain == "portal.example.com"
    assert settings.secret_key == "from-env"
    assert settings.smtp_url == "smtp://127.0.0.1:2525"
    assert settings.port == 9000 and settings.public_port == 9000
    assert not (tmp_path / "secret_key").exists()  # no dev secret made when one is given


def test_var_dir_defaults_to_the_working_directory(tmp_path: Path, monkeypatch):
    """Not a folder inside the installed package (tests/test_packaging.py runs a wheel)."""
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"PORTAL_SECRET_KEY": "given"})
    assert settings.var_dir == tmp_path / "var"
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'portal.sqlite3'}"
