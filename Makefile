# The README's two commands are `make run` and `make test`; everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-clock-shift lint format clean container-test bench

run: $(STAMP)
	$(PY) scripts/run_local.py

# In parallel (pytest-xdist): TEST_WORKERS processes, more than this 2-core machine's cores
# because most tests wait on subprocesses, sockets and sleeps; the groups in tests/conftest.py
# stay on one worker each. `make test TEST_WORKERS=0` runs it in this one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The time-sensitive tests (everything in-process under Django that deals in dates, and the
# agent's trigger, outbox, backup and heartbeat tests) with the clock a year ahead, so a test
# that depends on today's date fails the day it is written (tests/clock_shift.py; needs
# libfaketime: apt-get install faketime). `.ci/run` runs it after `make test`.
CLOCK_SHIFT ?= 365d
CLOCK_SHIFT_TESTS ?= tests/updates tests/smtp tests/test_secrets.py \
	host_agent/tests/test_trigger.py host_agent/tests/test_trigger_rules.py host_agent/tests/test_outbox.py \
	host_agent/tests/test_backup.py host_agent/tests/test_heartbeat.py
test-clock-shift: $(STAMP)
	$(PY) -m pytest -p tests.clock_shift --clock-shift=$(CLOCK_SHIFT) -n $(TEST_WORKERS) --dist loadgroup $(CLOCK_SHIFT_TESTS) $(PYTEST_ARGS)

# ruff, the architecture rules (import-linter, [tool.importlinter] in pyproject.toml) and the
# types (mypy with django-stubs, [tool.mypy]; the Django plugin reads the settings, so they
# get a data dir of their own and no .env). The suite runs the same: tests/test_lint.py,
# tests/test_architecture.py, tests/test_types.py.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	OPENTRACE_ENV_FILE= OPENTRACE_DATA_DIR=$(CURDIR)/.mypy_cache/django-data $(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The benchmarks and the fault-injection suite (not part of `make test`); figures: docs/performance.md.
bench: $(STAMP)
	$(PY) bench/all.py

# install.sh, the image, docker-compose.prod.yml and the agent's compose preset (update,
# rollback at migrate and at healthcheck) on a real engine: podman behind the Docker API,
# set up by the workplace's container-engine.sh (needs root). Not part of `make test`: it
# builds images and takes about 10-15 minutes. `.ci/run` runs it after `make test`.
CONTAINER_ENGINE ?= $(firstword $(wildcard ../shared/container-engine.sh /work/shared/container-engine.sh))
container-test: $(STAMP)
	@test -n "$(CONTAINER_ENGINE)" || { echo "container-test: no container-engine.sh (set CONTAINER_ENGINE=/path/to/it)"; exit 2; }
	eval "$$(bash $(CONTAINER_ENGINE))" && OPENTRACE_CONTAINER_TESTS=1 $(PY) -m pytest tests/containers $(PYTEST_ARGS)

$(STAMP): requirements.txt requirements-embedded.txt requirements-agent.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache staticfiles
