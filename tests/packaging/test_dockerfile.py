"""The Dockerfile's promises that can be read without building it.

The container tests (tests/containers/) build and run the image; these checks keep the
production recipe honest on every machine, engine or not.
"""

from __future__ import annotations

import re

from tests.packaging.compose import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
DOCKERIGNORE = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()


def stages() -> list[str]:
    """The Dockerfile cut at each FROM; stage 0 is what comes before the first FROM."""
    return re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)


def instructions(text: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.startswith("#")))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_the_base_image_defaults_to_the_official_slim_python_and_can_be_replaced():
    preamble = instructions(stages()[0])
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in preamble
    froms = re.findall(r"^FROM (\S+) AS (\w+)", DOCKERFILE, flags=re.MULTILINE)
    assert froms == [("${BASE_IMAGE}", "runtime")]


def test_requirements_are_installed_in_a_layer_that_only_the_requirement_files_invalidate():
    """The cache keeps the dependency layer across releases that leave requirements.txt alone:
    the install comes before the code is copied, and copies nothing but the requirement files."""
    runtime = instructions(stages()[-1])
    install = next(i for i, line in enumerate(runtime) if line.startswith("RUN") and "pip install" in line)
    copies = [(i, line) for i, line in enumerate(runtime) if line.startswith("COPY ")]
    assert [line for i, line in copies if i < install] == [
        "COPY requirements.txt requirements-embedded.txt /tmp/requirements/"
    ]
    assert [line for i, line in copies if i > install] == ["COPY . /app"]
    assert "rm -rf /tmp/requirements" in runtime[install]
    assert "pip uninstall --yes --quiet pip setuptools" in runtime[install]
    # No `COPY --from`: the engine hashes a copied tree on every build to find it in its cache.
    assert not [line for line in runtime if line.startswith("COPY --from")]


def test_the_app_runs_as_a_non_root_user():
    runtime = instructions(stages()[-1])
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users == ["opentrace:opentrace"]
    assert "useradd --system --uid 10001" in " ".join(runtime)


def test_no_compiler_or_dev_package_is_installed():
    for forbidden in ("gcc", "g++", "build-essential", "libpq-dev", "python3-dev", "apt-get install"):
        assert forbidden not in DOCKERFILE, forbidden
    assert "--only-binary=:all:" in DOCKERFILE


def test_only_production_requirements_are_installed_by_default():
    assert "requirements-dev.txt" not in DOCKERFILE
    runtime = instructions(stages()[-1])
    assert 'ARG EXTRA_REQUIREMENTS=""' in runtime
    (install,) = [line for line in runtime if "pip install" in line]
    assert "-r /tmp/requirements/requirements.txt" in install
    # requirements-embedded.txt is reachable only through the test-only, empty-by-default arg.
    assert "requirements-embedded.txt" not in install
    assert "${EXTRA_REQUIREMENTS:+" in install


def test_static_files_are_collected_at_build_time_with_a_throwaway_key():
    runtime = " ".join(instructions(stages()[-1]))
    assert "manage.py collectstatic --noinput" in runtime
    assert "SECRET_KEY=build-only-" in runtime
    assert "rm -rf /tmp/build-data" in runtime


def test_gunicorn_serves_the_wsgi_app_on_8000_with_a_healthz_check():
    runtime = instructions(stages()[-1])
    assert "EXPOSE 8000" in runtime
    assert 'VOLUME ["/app/data"]' in runtime
    (cmd,) = [line for line in runtime if line.startswith("CMD ")]
    assert '"gunicorn", "opentrace.wsgi:application", "--bind", "0.0.0.0:8000"' in cmd
    (check,) = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    assert "http://127.0.0.1:8000/healthz" in check
    assert "curl" not in check
    assert "wget" not in check


def test_secrets_and_local_state_never_enter_the_build_context():
    for pattern in (".env", "data/", ".git/", ".venv/", "staticfiles/"):
        assert pattern in DOCKERIGNORE, pattern
    assert "!.env.example" in DOCKERIGNORE
    # VERSION is the running version's one source: it must be in the image.
    assert "VERSION" not in DOCKERIGNORE
