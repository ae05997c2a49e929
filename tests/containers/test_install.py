"""install.sh on a real engine: the stack built, healthy, migrated, with its admin and agent.

Runs the real install.sh non-interactively against a copy of this checkout, with the
container-test override (tests/containers/docker-compose.test.yml: images from the local
Debian base, and ClickHouse through the embedded engine in web/worker/beat, the one
deviation from production). Then a second run must change nothing.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.containers.stack import BASE_IMAGE, ROOT, Stack

# Run inside the production image: who it runs as, what it carries and what it must not.
PROBE = """
id -u; cat /app/VERSION
test -f /app/staticfiles/staticfiles.json && echo static-ok
for m in django celery psycopg clickhouse_connect gunicorn whitenoise apprise; do
    python -c "import $m" && echo "has-$m"
done
for m in chdb pytest ruff hypothesis playwright; do
    python -c "import $m" 2>/dev/null && echo "LEAK-$m"
done
command -v gcc cc || echo no-compiler
"""
ADMIN_PASSWORD = "Container-test-pw 1$"  # a space and a $: must survive the trip to the container


@pytest.fixture(scope="module")
def installed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    password_file = tmp_path_factory.mktemp("secret") / "pw"
    password_file.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    started = time.monotonic()
    result = stack.install(
        "--admin-user", "ops", "--admin-email", "ops@example.com", "--admin-password-file", str(password_file)
    )
    stack.timings["first install (build 5 images + start + migrate)"] = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return stack


def test_the_stack_is_up_and_every_container_healthy(installed):
    states = installed.wait_all_healthy(timeout=240)
    assert states == dict.fromkeys(
        ("proxy", "web", "worker", "beat", "flusher", "postgres", "redis", "clickhouse"), "healthy"
    )


def test_healthz_reports_ok_with_the_checkout_version(installed):
    status, body = installed.settled_healthz()
    assert status == 200, body
    assert body["version"] == (ROOT / "VERSION").read_text(encoding="utf-8").strip()
    assert body["checks"] == {"database": "ok", "broker": "ok", "clickhouse": "ok", "migrations": "ok"}


def test_the_env_file_holds_fresh_secrets_readable_only_by_its_owner(installed):
    env_file = installed.project_dir / ".env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    text = env_file.read_text(encoding="utf-8")
    assert "CHANGE-ME" not in text
    assert re.search(r"^SECRET_KEY=\S{48,}$", text, flags=re.MULTILINE)
    assert re.search(r"^OPENTRACE_AGENT_SECRET=\S{48,}$", text, flags=re.MULTILINE)


def test_the_admin_created_by_install_can_log_in(installed):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(installed.base_url + "/admin/login/", timeout=10) as response:
        page = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": "ops", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"}
    ).encode()
    request = urllib.request.Request(
        installed.base_url + "/admin/login/",
        data=form,
        headers={"Referer": installed.base_url + "/admin/login/"},
    )
    with opener.open(request, timeout=10) as response:
        assert response.url.rstrip("/").endswith("/admin")
        assert "Log out" in response.read().decode()


def test_static_files_are_served_by_the_app(installed):
    status, body = installed.get("/static/admin/css/base.css")
    assert status == 200
    assert b"body" in body


# Prints "ro" or "rw": the first mount option of the container's root filesystem.
ROOT_MOUNT_OPTION = (
    "print([m.split()[3].split(',')[0] for m in open('/proc/mounts') if m.split()[1] == '/'][0])"
)


def test_the_app_runs_unprivileged_and_cannot_change_its_code(installed):
    script = (
        "id -u; "
        "touch /app/manage.py 2>/dev/null && echo code-writable || echo code-protected; "
        f'python -c "{ROOT_MOUNT_OPTION}"; '
        "touch /app/data/.probe && echo data-writable"
    )
    result = installed.compose("exec", "-T", "web", "sh", "-c", script)
    assert result.stdout.split() == ["10001", "code-protected", "ro", "data-writable"]


def test_the_agent_was_started(installed):
    pid_file = installed.agent_state / "agent.pid"
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # still running


def test_a_second_install_changes_nothing(installed):
    env_before = (installed.project_dir / ".env").read_bytes()
    containers_before = installed.container_ids()
    agent_before = (installed.agent_state / "agent.pid").read_text()

    started = time.monotonic()
    result = installed.install("--admin-user", "ops")
    installed.timings["second install (cached build, nothing to do)"] = time.monotonic() - started

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (installed.project_dir / ".env").read_bytes() == env_before
    assert installed.container_ids() == containers_before  # nothing recreated
    assert (installed.agent_state / "agent.pid").read_text() == agent_before
    assert "exists; its password is unchanged" in result.stdout
    assert installed.settled_healthz()[0] == 200


def test_the_stack_restarts_healthy_from_its_volumes(installed):
    installed.compose("stop", "--timeout", "20")
    started = time.monotonic()
    installed.compose("up", "-d")
    installed.wait_for_healthz(300)
    installed.timings["stack start (stopped containers → up -d → /healthz 200)"] = time.monotonic() - started
    status, body = installed.settled_healthz()
    assert status == 200, body
    # The admin account survived in the postgres volume.
    result = installed.compose(
        "exec",
        "-T",
        "web",
        "python",
        "manage.py",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; print(User.objects.filter(username='ops').exists())",
    )
    assert result.stdout.strip().endswith("True")


def test_the_production_image_carries_no_test_or_embedded_package(stack):
    tag = f"opentrace/web:{stack.project_name}-prod"
    started = time.monotonic()
    build = subprocess.run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag, "."],
        cwd=stack.project_dir,
        env={**stack.env(), "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    stack.timings["production image build (no embedded engine)"] = time.monotonic() - started
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        probe = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                tag,
                "sh",
                "-c",
                PROBE,
            ],
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], env=stack.env(), capture_output=True, check=False)
    lines = probe.stdout.split()
    assert lines[0] == "10001"
    assert lines[1] == (ROOT / "VERSION").read_text(encoding="utf-8").strip()
    assert "static-ok" in lines
    for module in ("django", "celery", "psycopg", "clickhouse_connect", "gunicorn", "whitenoise", "apprise"):
        assert f"has-{module}" in lines
    assert not [line for line in lines if line.startswith("LEAK-")]
    assert "no-compiler" in lines
