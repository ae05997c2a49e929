"""docker-compose.prod.yml, as Docker Compose itself reads it (`docker-compose config`).

`config` validates the file against the Compose schema, resolves `${VAR}` from `.env`,
merges the YAML anchors and `env_file`, and prints the result these tests inspect. It needs
no engine, so it runs everywhere Debian's `docker-compose` is installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opentrace.config import load_config
from tests.packaging.compose import (
    APP_SERVICES,
    BACKING_SERVICES,
    COMPOSE_FILE,
    COMPOSE_ONLY_NAMES,
    ENV_EXAMPLE,
    PROXY_SERVICES,
    compose_config,
    docker_compose,
    env_file_names,
    example_env_text,
    make_project,
    parse_env,
    rendered_config,
    settings_variable_names,
)

pytestmark = pytest.mark.skipif(
    docker_compose() is None,
    reason="needs Debian's docker-compose for `docker-compose config`: apt-get install -y docker-compose",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("compose-project"), example_env_text())


@pytest.fixture(scope="module")
def config(project: Path) -> dict:
    return rendered_config(project)


def test_it_defines_the_app_and_its_backing_services(config):
    assert set(config["services"]) == {*APP_SERVICES, *BACKING_SERVICES, *PROXY_SERVICES, "manage"}


def started_by_up(config: dict) -> dict:
    """The services `up` starts: all but those in a profile (`manage`, for one-off commands)."""
    return {name: service for name, service in config["services"].items() if not service.get("profiles")}


def test_the_one_off_service_is_the_web_image_in_a_profile_that_up_never_starts(config):
    manage, web = config["services"]["manage"], config["services"]["web"]
    assert manage["profiles"] == ["tools"]
    assert manage["restart"] == "no"
    assert manage["image"] == web["image"]
    assert manage["environment"] == web["environment"]
    assert manage["volumes"] == web["volumes"]
    assert "ports" not in manage
    assert "manage" not in started_by_up(config)


def test_the_app_services_run_one_image_built_from_this_checkout(config, project):
    for name in APP_SERVICES:
        service = config["services"][name]
        assert service["image"] == "opentrace/web:local", name
        assert Path(service["build"]["context"]) == project, name
        assert service["build"]["dockerfile"] == "Dockerfile", name
    assert config["services"]["worker"]["command"][:4] == ["celery", "-A", "opentrace", "worker"]
    assert config["services"]["beat"]["command"][:4] == ["celery", "-A", "opentrace", "beat"]
    assert "--schedule=/app/data/celerybeat-schedule" in config["services"]["beat"]["command"]


def test_the_image_tag_is_chosen_in_env_so_the_agent_can_keep_the_previous_one(tmp_path):
    env_text = example_env_text().replace("OPENTRACE_IMAGE_TAG=local", "OPENTRACE_IMAGE_TAG=1.1.5")
    config = rendered_config(make_project(tmp_path, env_text))
    assert {config["services"][name]["image"] for name in APP_SERVICES} == {"opentrace/web:1.1.5"}


def test_backing_services_use_pinned_official_images(config):
    images = {name: config["services"][name]["image"] for name in BACKING_SERVICES}
    assert re.fullmatch(r"postgres:16\.\d+-bookworm", images["postgres"]), images
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-bookworm)?", images["redis"]), images
    assert re.fullmatch(r"clickhouse/clickhouse-server:24\.\d+(\.\d+)*", images["clickhouse"]), images
    for name in BACKING_SERVICES:
        assert "build" not in config["services"][name], name


def test_every_service_has_a_health_check_and_a_restart_policy(config):
    for name, service in started_by_up(config).items():
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        for key in ("interval", "timeout", "retries"):
            assert check[key], (name, key)


def test_health_checks_survive_engines_that_split_arguments_at_spaces(config):
    # podman's Docker API splits exec-form health check arguments at spaces, which turns
    # `python -c "import a; b"` into a syntax error: exec-form arguments carry no spaces.
    for name, service in started_by_up(config).items():
        test = service["healthcheck"]["test"]
        if test[0] == "CMD":
            assert not any(" " in argument for argument in test[1:]), (name, test)
        else:
            assert len(test) == 2, (name, test)


def test_the_web_health_check_asks_healthz_without_curl(config):
    command = config["services"]["web"]["healthcheck"]["test"][1]
    assert "http://127.0.0.1:8000/healthz" in command
    assert "urllib" in command
    assert "curl" not in command
    assert "wget" not in command


def test_app_services_start_after_their_backing_services_are_healthy(config):
    for name in APP_SERVICES:
        depends = config["services"][name]["depends_on"]
        assert depends == {backing: {"condition": "service_healthy"} for backing in BACKING_SERVICES}, name


def test_service_data_lives_in_named_volumes(config):
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
        "clickhouse": "/var/lib/clickhouse",
    }
    for name, target in expected.items():
        mounts = {volume["target"]: volume for volume in _volumes(config["services"][name])}
        assert mounts[target]["type"] == "volume", name
        assert mounts[target]["source"] in config["volumes"], name


def test_app_containers_mount_only_the_data_dir(config, project):
    for name in APP_SERVICES:
        volumes = _volumes(config["services"][name])
        assert volumes == [
            {"type": "bind", "source": str(project / "data"), "target": "/app/data", "read_only": False}
        ], name


def test_no_service_gets_the_docker_socket_or_extra_privileges(config):
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "docker.sock" not in raw
    assert "/var/run" not in raw
    for name, service in config["services"].items():
        assert not service.get("privileged"), name
        assert "cap_add" not in service, name
        assert service.get("network_mode") != "host", name
        assert service.get("pid") != "host", name
        for volume in _volumes(service):
            assert "sock" not in str(volume.get("source", "")), (name, volume)


def test_app_containers_run_unprivileged_on_a_read_only_root(config):
    for name in APP_SERVICES:
        service = config["services"][name]
        uid, _, gid = service["user"].partition(":")
        assert uid == "10001", name
        assert gid == "10001", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_only_the_proxy_port_is_published_and_on_loopback_by_default(config):
    for name, service in config["services"].items():
        if name != "proxy":
            assert "ports" not in service, name
    (port,) = config["services"]["proxy"]["ports"]
    assert str(port) == "127.0.0.1:8000:8000/tcp" or port == {
        "host_ip": "127.0.0.1",
        "published": 8000,
        "target": 8000,
        "protocol": "tcp",
        "mode": "ingress",
    }


def test_the_settings_reads_every_spec_variable():
    # Guards the parser below: if it stopped finding names, the next test would pass vacuously.
    names = settings_variable_names()
    for spec_name in (
        "OPENTRACE_DATA_DIR",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_CLUSTER",
        "OPENTRACE_REGISTRY_URL",
        "OPENTRACE_REGISTRY_KEYS",
        "OPENTRACE_CHANNEL",
        "OPENTRACE_UPDATE_CHECK_INTERVAL",
        "OPENTRACE_AGENT_SECRET",
        "OPENTRACE_SECRETS_KEY",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
    ):
        assert spec_name in names


def test_app_environment_names_are_the_names_the_settings_read(config):
    known = settings_variable_names() | COMPOSE_ONLY_NAMES
    for name in APP_SERVICES:
        unknown = set(config["services"][name]["environment"]) - known
        assert not unknown, (name, unknown)


def test_env_example_names_are_the_names_the_settings_read():
    names = env_file_names(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert names, "no KEY= lines found in .env.example"
    unknown = set(names) - settings_variable_names() - COMPOSE_ONLY_NAMES
    assert not unknown


def test_every_variable_the_compose_file_uses_is_in_env_example():
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text(encoding="utf-8")))
    assert used >= {"POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD", "OPENTRACE_IMAGE_TAG"}
    assert used <= set(env_file_names(ENV_EXAMPLE.read_text(encoding="utf-8")))


def test_the_app_environment_is_a_valid_production_configuration(config, tmp_path):
    environment = {key: str(value) for key, value in config["services"]["web"]["environment"].items()}
    settings = load_config(environment, tmp_path)
    assert settings.debug is False
    assert settings.data_dir == Path("/app/data")
    assert settings.database["ENGINE"] == "django.db.backends.postgresql"
    assert (settings.database["HOST"], settings.database["NAME"]) == ("postgres", "opentrace")
    assert settings.database["PASSWORD"] == "pg-password-1"
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.clickhouse.embedded is False
    assert settings.clickhouse.dsn == "http://opentrace:ch-password-1@clickhouse:8123"
    assert settings.clickhouse.database == "opentrace"
    assert settings.secret_key == "s" * 50
    assert "127.0.0.1" in settings.allowed_hosts  # the container's own health check


def test_the_clickhouse_server_gets_the_password_the_app_uses(config):
    server = config["services"]["clickhouse"]["environment"]
    assert server["CLICKHOUSE_USER"] == "opentrace"
    assert server["CLICKHOUSE_PASSWORD"] == "ch-password-1"
    assert server["CLICKHOUSE_DB"] == "opentrace"
    postgres = config["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("opentrace", "opentrace")
    assert postgres["POSTGRES_PASSWORD"] == "pg-password-1"


def test_a_missing_service_password_is_a_clear_error(tmp_path):
    env = parse_env(example_env_text())
    del env["POSTGRES_PASSWORD"]
    project = make_project(tmp_path, "".join(f"{key}={value}\n" for key, value in env.items()))
    result = compose_config(project)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


def test_a_missing_env_file_is_a_clear_error(tmp_path):
    project = make_project(tmp_path, None)
    result = compose_config(project)
    assert result.returncode != 0
    assert ".env" in result.stderr


def test_the_container_test_override_swaps_only_what_the_test_engine_cannot_pull(project):
    from tests.packaging.compose import TEST_OVERRIDE

    prod = rendered_config(project)
    test = rendered_config(project, project / TEST_OVERRIDE.relative_to(TEST_OVERRIDE.parents[2]))
    assert set(test["services"]) == set(prod["services"])
    for name in ("postgres", "redis", "proxy"):
        assert test["services"][name]["image"].startswith("opentrace-test/"), name
        # The prod definition (variables, volumes, health check) runs unchanged.
        for key in ("environment", "volumes", "healthcheck", "restart", "ports"):
            assert test["services"][name].get(key) == prod["services"][name].get(key), (name, key)
    for name in APP_SERVICES:
        service = test["services"][name]
        assert service["image"] == "opentrace/web:local-embedded", name
        assert service["build"]["args"]["EXTRA_REQUIREMENTS"] == "requirements-embedded.txt"
        assert service["environment"]["CLICKHOUSE_URL"] == "chdb:///app/data/clickhouse"
        for key in ("volumes", "user", "read_only", "depends_on", "command"):
            assert service.get(key) == prod["services"][name].get(key), (name, key)


def _volumes(service: dict) -> list[dict]:
    """Mounts in one shape: compose v1 prints `source:target:mode`, v2 prints mappings."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {
                "type": "bind" if source.startswith(("/", ".")) else "volume",
                "source": source,
                "target": target,
                "read_only": mode == ["ro"],
            }
        mounts.append(
            {key: value for key, value in volume.items() if key in {"type", "source", "target", "read_only"}}
        )
    return mounts


def test_the_flusher_is_the_one_writer_of_tracked_events_and_redis_fsyncs_before_answering(config, tmp_path):
    assert config["services"]["flusher"]["command"] == ["python", "manage.py", "flush_events"]
    assert "/app/data/tracking/flusher.json" in config["services"]["flusher"]["healthcheck"]["test"][1]
    redis = config["services"]["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--appendfsync") + 1] == "always"
    environment = {key: str(value) for key, value in config["services"]["web"]["environment"].items()}
    settings = load_config(environment, tmp_path)
    assert settings.tracking_buffer == "redis://redis:6379/1"
    assert settings.broker_url != settings.tracking_buffer  # the buffer has a database of its own


def test_the_proxy_is_a_pinned_official_haproxy_with_the_config_of_this_checkout(config, project):
    proxy = config["services"]["proxy"]
    assert re.fullmatch(r"haproxy:\d+\.\d+\.\d+-bookworm", proxy["image"]), proxy["image"]
    (mount,) = _volumes(proxy)
    assert Path(mount["source"]) == project / "deploy" / "proxy"
    assert (mount["target"], mount["read_only"]) == ("/usr/local/etc/haproxy", True)
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    # The proxy outlives the web containers: recreating web never recreates it.
    assert "depends_on" not in proxy


def test_web_containers_can_run_two_at_a_time_and_drain(config):
    web = config["services"]["web"]
    assert "ports" not in web
    assert "container_name" not in web
    assert str(web["environment"]["OPENTRACE_DRAIN_FILE"]).startswith("/tmp/")
    # Longer than gunicorn's graceful timeout (deploy/gunicorn.conf.py: 30 s).
    grace = str(web["stop_grace_period"])
    assert grace in {"40s", "40"} or grace.startswith("40"), grace


def test_the_serving_containers_outweigh_an_image_build(config):
    for name in ("proxy", "web", "flusher", "postgres", "redis", "clickhouse"):
        assert int(config["services"][name]["cpu_shares"]) > 1024, name
