# OpenTrace production image: the Django web app (gunicorn), and with another command the
# Celery worker and beat (see docker-compose.prod.yml). One stage: requirements.txt is
# installed from wheels into a venv, in a layer of its own that the engine reuses from its
# cache until requirements.txt changes; then the code. The image runs as a non-root user and
# carries no compiler, no test tool and no embedded engine.
#
# Why not a builder stage that the runtime stage copies the venv from: with nothing to
# compile (every dependency ships wheels) it keeps nothing out of the image, and the engine
# checks a `COPY --from` against its cache by hashing the whole venv on every build (5.5 s
# of one core, at normal priority, beside the release that is serving: docs/performance.md).
#
# BASE_IMAGE defaults to the official slim Python image. Where no registry is reachable
# (the container tests) the same file builds from a local Debian base:
#   docker build --build-arg BASE_IMAGE=localhost/debian-python:bookworm .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS runtime
# Test-only hook, empty in production: the container tests set it to
# requirements-embedded.txt because no ClickHouse server image can be pulled there.
ARG EXTRA_REQUIREMENTS=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    OPENTRACE_DATA_DIR=/app/data \
    DEBUG=false \
    WEB_CONCURRENCY=3 \
    HOME=/tmp

# A fixed uid/gid so the bind-mounted ./data can be chowned to it by install.sh;
# docker-compose.prod.yml may run the containers as the installing user instead.
RUN groupadd --system --gid 10001 opentrace \
    && useradd --system --uid 10001 --gid opentrace --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin opentrace

COPY requirements.txt requirements-embedded.txt /tmp/requirements/
# --only-binary: every dependency ships wheels (psycopg[binary] included), so a missing
# wheel is a build error here instead of a silent attempt to compile without a compiler.
# pip and setuptools leave with the requirement files, in the same layer.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements/requirements.txt \
        ${EXTRA_REQUIREMENTS:+-r /tmp/requirements/${EXTRA_REQUIREMENTS}} \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /tmp/requirements

WORKDIR /app
# The code belongs to root and is read-only for the app user: the running app cannot
# rewrite itself. Only /app/data (a volume) is writable. The whole tree but what
# .dockerignore leaves out (tests, benchmarks, data, secrets): contract/ comes along, the
# backend imports it (tests/packaging/test_build_context.py checks what gets in).
COPY . /app

# Static files are collected at build time (whitenoise serves them with hashed names).
# Settings refuse DEBUG=false with the development key, so collectstatic gets a throwaway
# build-only key; the data dir it touches is a temporary folder removed in the same layer.
# The code is made readable by the app user whatever the umask of the checkout: the agent
# checks releases out under the unit's UMask=0027 (files 0640 root: the app could not read VERSION).
RUN SECRET_KEY=build-only-collectstatic-key-never-used-at-runtime \
    OPENTRACE_DATA_DIR=/tmp/build-data \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-data \
    && python -c "import pathlib; assert pathlib.Path('/app/VERSION').read_text().strip()" \
    && chmod -R u+rwX,go+rX,go-w /app \
    && mkdir -p /app/data \
    && chown opentrace:opentrace /app/data

VOLUME ["/app/data"]
USER opentrace:opentrace
EXPOSE 8000

# Shell form: no curl in the image, and podman's Docker API splits exec-form arguments.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=8).status == 200 else 1)"

# deploy/gunicorn.conf.py: gthread workers (a slow request body holds a thread, not a
# worker), a 30 s graceful timeout for the drain during an update; WEB_CONCURRENCY sets the
# number of workers, GUNICORN_THREADS the threads of each.
CMD ["gunicorn", "opentrace.wsgi:application", "--bind", "0.0.0.0:8000", \
     "--config", "/app/deploy/gunicorn.conf.py"]
