"""Settings parsing: every variable of SPEC §3 with a good and a malformed value."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from opentrace.config import DEV_SECRET_KEY, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
KEY_B64 = base64.b64encode(bytes(range(32))).decode()


def load(**env: str):
    return load_config(env, ROOT)


def test_it_runs_a_bare_checkout_on_embedded_defaults(tmp_path):
    config = load(OPENTRACE_DATA_DIR=str(tmp_path))
    assert config.data_dir == tmp_path
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == str(tmp_path / "opentrace.sqlite3")
    assert config.broker_url == "filesystem://"
    assert config.clickhouse.embedded
    assert config.clickhouse.dsn == f"chdb://{tmp_path / 'clickhouse'}"
    assert config.clickhouse.database == "opentrace"
    assert config.registry_url == "https://version.429toomanyre.quest/version.json"
    assert config.registry_keys == {}
    assert config.channel == "stable"
    assert config.update_check_interval == 21600
    assert config.trigger_timeout == 600
    assert config.agent_secret is None
    assert config.secrets_keys == []
    # Production's defaults: DEBUG off; no key in the environment, so one is generated.
    assert config.debug is False
    assert config.secret_key is None
    assert config.https.secure_cookies is False
    assert config.https.hsts_seconds == 0


def test_it_resolves_a_relative_data_dir_against_the_project():
    assert load(OPENTRACE_DATA_DIR="data").data_dir == ROOT / "data"


def test_it_refuses_a_data_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="OPENTRACE_DATA_DIR"):
        load(OPENTRACE_DATA_DIR=str(target))


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("DATABASE_URL", "postgres://u:p@db:5432/opentrace", lambda c: c.database["HOST"] == "db"),
        ("DATABASE_URL", "sqlite:////tmp/x.sqlite3", lambda c: c.database["NAME"] == "/tmp/x.sqlite3"),
        ("CELERY_BROKER_URL", "redis://redis:6379/0", lambda c: c.broker_url == "redis://redis:6379/0"),
        (
            "CLICKHOUSE_URL",
            "http://user:pass@clickhouse:8123/analytics",
            lambda c: (
                (c.clickhouse.dsn, c.clickhouse.database, c.clickhouse.embedded)
                == ("http://user:pass@clickhouse:8123", "analytics", False)
            ),
        ),
        ("CLICKHOUSE_URL", "chdb:///srv/ch?database=ot", lambda c: c.clickhouse.database == "ot"),
        ("CLICKHOUSE_CLUSTER", "main_cluster", lambda c: c.clickhouse_cluster == "main_cluster"),
        (
            "OPENTRACE_REGISTRY_URL",
            "https://mirror.example/v.json",
            lambda c: c.registry_url.startswith("https"),
        ),
        ("OPENTRACE_REGISTRY_URL", "http://127.0.0.1:9999/v.json", lambda c: "127.0.0.1" in c.registry_url),
        ("OPENTRACE_REGISTRY_URL", "http://[::1]:9999/v.json", lambda c: "::1" in c.registry_url),
        ("OPENTRACE_REGISTRY_KEYS", f"k1:{KEY_B64}", lambda c: c.registry_keys == {"k1": bytes(range(32))}),
        ("OPENTRACE_CHANNEL", "beta", lambda c: c.channel == "beta"),
        ("OPENTRACE_UPDATE_CHECK_INTERVAL", "3600", lambda c: c.update_check_interval == 3600),
        ("OPENTRACE_TRIGGER_TIMEOUT", "120", lambda c: c.trigger_timeout == 120),
        ("OPENTRACE_AGENT_SECRET", "s" * 40, lambda c: c.agent_secret == "s" * 40),
        ("DEBUG", "false", lambda c: c.debug is False),
        ("ALLOWED_HOSTS", "a.example, b.example", lambda c: c.allowed_hosts == ["a.example", "b.example"]),
        (
            "CSRF_TRUSTED_ORIGINS",
            "https://a.example",
            lambda c: c.csrf_trusted_origins == ["https://a.example"],
        ),
        ("EMAIL_URL", "smtp://u:p@mail.example:587", lambda c: c.email_url["EMAIL_HOST"] == "mail.example"),
        (
            "OPENTRACE_BASE_URL",
            "https://analytics.example/",
            lambda c: c.base_url == "https://analytics.example",
        ),
    ],
)
def test_it_accepts_good_values(name, value, check):
    env = {name: value}
    if name == "DEBUG":
        env["SECRET_KEY"] = "x" * 50
    assert check(load(**env))


def test_it_accepts_several_fernet_keys_newest_first():
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert load(OPENTRACE_SECRETS_KEY=f"{new},{old}").secrets_keys == [new, old]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://root@db/x", "only sqlite"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("DATABASE_URL", "postgres://db:5432/", "names no database"),
        ("CELERY_BROKER_URL", "kafka://broker:9092", "unsupported broker scheme"),
        ("CLICKHOUSE_URL", "tcp://clickhouse:9000", "use chdb"),
        ("CLICKHOUSE_URL", "chdb://", "needs a data path"),
        ("CLICKHOUSE_URL", "http://clickhouse:notaport/x", "port"),
        ("CLICKHOUSE_URL", "http://clickhouse:8123/bad;name", "not a plain identifier"),
        ("CLICKHOUSE_CLUSTER", "main cluster; DROP", "plain cluster name"),
        ("OPENTRACE_REGISTRY_URL", "http://registry.example/v.json", "must be an https"),
        ("OPENTRACE_REGISTRY_URL", "ftp://127.0.0.1/v.json", "must be an https"),
        ("OPENTRACE_REGISTRY_KEYS", "no-colon-here", "keyid:base64"),
        ("OPENTRACE_REGISTRY_KEYS", "k1:***", "not valid base64"),
        ("OPENTRACE_REGISTRY_KEYS", "k1:AAAA", "32-byte"),
        ("OPENTRACE_REGISTRY_KEYS", f"k1:{KEY_B64},k1:{KEY_B64}", "appears twice"),
        ("OPENTRACE_CHANNEL", "Stable Channel!", "channel name"),
        ("OPENTRACE_UPDATE_CHECK_INTERVAL", "six hours", "whole number"),
        ("OPENTRACE_UPDATE_CHECK_INTERVAL", "5", "between"),
        ("OPENTRACE_TRIGGER_TIMEOUT", "-1", "between"),
        ("OPENTRACE_AGENT_SECRET", "short", "at least 32"),
        ("OPENTRACE_SECRETS_KEY", "not-a-fernet-key", "not a Fernet key"),
        ("DEBUG", "maybe", "expected a boolean"),
        ("SECRET_KEY", "", "must not be empty"),
        ("CSRF_TRUSTED_ORIGINS", "analytics.example", "not an origin"),
        ("EMAIL_URL", "smtp://", "names no host"),
        ("OPENTRACE_BASE_URL", "analytics.example", "absolute"),
        ("OPENTRACE_LOG_LEVEL", "LOUD", "not a log level"),
    ],
)
def test_it_rejects_malformed_values_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load(**{name: value})
    assert info.value.variable == name
    assert str(info.value).startswith(f"{name}:")


def test_production_refuses_the_development_secret_key():
    with pytest.raises(ConfigError, match="development key") as info:
        load(DEBUG="false", SECRET_KEY=DEV_SECRET_KEY)
    assert info.value.variable == "SECRET_KEY"


def test_production_refuses_a_short_secret_key():
    with pytest.raises(ConfigError, match="at least 32"):
        load(DEBUG="0", SECRET_KEY="short-but-not-dev")


def test_production_has_no_default_allowed_hosts():
    assert load(DEBUG="false", SECRET_KEY="k" * 50).allowed_hosts == []


def _manage(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    full_env.update(OPENTRACE_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_stops_with_one_line_naming_the_variable(tmp_path):
    result = _manage(tmp_path, OPENTRACE_UPDATE_CHECK_INTERVAL="soon")
    assert result.returncode == 2
    assert "OPENTRACE_UPDATE_CHECK_INTERVAL" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_up_with_debug_off_and_dev_key_refuses(tmp_path):
    result = _manage(tmp_path, DEBUG="false", SECRET_KEY=DEV_SECRET_KEY)
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr
