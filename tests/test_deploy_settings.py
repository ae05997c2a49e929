"""Production settings (issue 16): DEBUG off by default with a generated secret key, a private
data dir and SQLite file, and https settings that make `manage.py check --deploy` clean."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from opentrace.config import load_config
from testing.helpers import ROOT, clean_env


def production_env(data_dir, **overrides: str) -> dict[str, str]:
    env = clean_env(OPENTRACE_ENV_FILE="", OPENTRACE_DATA_DIR=str(data_dir), **overrides)
    env.pop("DEBUG", None)  # the suite's own processes run with DEBUG on (tests/bootstrap.py)
    env.pop("SECRET_KEY", None)
    return {**env, **overrides}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def setting(name: str, env: dict[str, str]) -> str:
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_check_deploy_is_clean_with_an_https_base_url(tmp_path):
    env = production_env(
        tmp_path / "data",
        OPENTRACE_BASE_URL="https://analytics.example.com",
        ALLOWED_HOSTS="analytics.example.com",
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_an_http_base_url_gets_no_secure_cookies_and_check_deploy_says_so(tmp_path):
    env = production_env(
        tmp_path / "data", OPENTRACE_BASE_URL="http://10.0.0.5:8000", ALLOWED_HOSTS="10.0.0.5"
    )
    result = manage("check", "--deploy", env=env)
    said = result.stdout + result.stderr
    for warning in ("security.W004", "security.W012", "security.W016"):  # HSTS, both cookies
        assert warning in said


def test_debug_is_off_by_default_and_the_key_is_generated_into_the_data_dir(tmp_path):
    data = tmp_path / "data"
    env = production_env(data)
    assert setting("DEBUG", env) == "False"
    key = setting("SECRET_KEY", env)
    stored = data / "secrets" / "django_secret_key"
    assert key.strip("'") == stored.read_text().strip()
    assert len(key.strip("'")) >= 50
    assert mode(stored) == 0o600
    assert setting("SECRET_KEY", env) == key  # the next process reads the same one


def test_the_data_dir_and_the_sqlite_file_are_the_owners_only(tmp_path):
    data = tmp_path / "data"
    result = manage("migrate", "-v0", env=production_env(data))
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700
    assert mode(data / "opentrace.sqlite3") == 0o600
    assert (data / "opentrace.sqlite3").stat().st_size > 0  # it is the database Django migrated


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (False, 0, None)),
        ({"OPENTRACE_BASE_URL": "https://a.example.com"}, (True, 31536000, None)),
        (
            {
                "OPENTRACE_BASE_URL": "https://a.example.com",
                "OPENTRACE_HSTS_SECONDS": "300",
                "OPENTRACE_SECURE_COOKIES": "false",
                "OPENTRACE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            },
            (False, 300, ("HTTP_X_FORWARDED_PROTO", "https")),
        ),
        ({"OPENTRACE_SECURE_COOKIES": "true"}, (True, 0, None)),
    ],
)
def test_https_settings_follow_the_base_url_and_each_can_be_set(env, expected):
    https = load_config(env, ROOT).https
    assert (https.secure_cookies, https.hsts_seconds, https.proxy_ssl_header) == expected


@pytest.mark.parametrize("value", ["X Forwarded", "X-Forwarded-Proto: https", "é"])
def test_a_malformed_proxy_header_names_the_variable(value):
    from opentrace.config import ConfigError

    with pytest.raises(ConfigError, match="OPENTRACE_PROXY_SSL_HEADER"):
        load_config({"OPENTRACE_PROXY_SSL_HEADER": value}, ROOT)
