"""Django settings. Every value comes from `opentrace.config.load_config(os.environ)`.

Defaults run a bare checkout with no servers: SQLite, the filesystem Celery broker and the
embedded ClickHouse engine, all under the data dir. Production sets the variables of
SPEC §3 (see `.env.example`).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

from opentrace import secrets as generated
from opentrace.config import load_config
from opentrace.version import running_version

BASE_DIR = Path(__file__).resolve().parent.parent
# The install's `.env` (install.sh writes it; compose reads the same file), so `manage.py`
# in a bare shell uses the install's settings rather than the defaults. What the real
# environment sets wins; OPENTRACE_ENV_FILE names another file, or "" for none.
_ENV_FILE = os.environ.get("OPENTRACE_ENV_FILE", str(BASE_DIR / ".env"))
if _ENV_FILE:
    environ.Env.read_env(_ENV_FILE)
CONFIG = load_config(os.environ, BASE_DIR)

DATA_DIR = CONFIG.data_dir
# The data dir holds the database (embedded), the secrets and the backups: its owner's only.
# (Created so; an existing one keeps its mode: install.sh and the compose volume set theirs.)
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
OPENTRACE_VERSION = running_version()
OPENTRACE_DRAIN_FILE = CONFIG.drain_file
# /healthz runs its checks at most this often per process while they pass, and again after
# HEALTH_RETRY_SECONDS once one failed (opentrace/health.py). The embedded engine admits one
# process at a time and holds Python's GIL while it opens: each run of the checks there
# keeps the engine from the agent's one-off commands and stalls the worker for a moment
# (0.1-0.3 s, seconds on a busy host), so passing results are kept longer.
HEALTH_CACHE_SECONDS = 5.0 if CONFIG.clickhouse.embedded else 1.0
HEALTH_RETRY_SECONDS = 1.0

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key or generated.secret_key(DATA_DIR)
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins

INSTALLED_APPS = [
    "opentrace.admin_config.OpenTraceAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "opentrace",
    "updates",
    "smtpconfig",
    "tracking",
    # `manage.py lintmigrations` (SPEC §9): the host agent refuses a release whose migrations
    # old code cannot live with, unless its registry entry declares downtime.
    "django_migration_linter",
]

# Only OpenTrace's own apps: a Django upgrade's migrations of contrib apps are Django's to
# keep compatible. No cache: the agent lints each release once, as root, in a fresh checkout.
MIGRATION_LINTER_OPTIONS = {
    "include_apps": ["opentrace", "updates", "smtpconfig", "tracking"],
    "no_cache": True,
}

MIDDLEWARE = [
    # First: a downtime release's migrations run behind it (local installs; opentrace/maintenance.py).
    "opentrace.maintenance.MaintenanceMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "opentrace.urls"
WSGI_APPLICATION = "opentrace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
_SQLITE_NAME = str(DATABASES["default"]["NAME"])
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and not _SQLITE_NAME.startswith(
    (":", "file:")
):
    # SQLite creates its file (and, with the file's mode, its journals) under the umask.
    generated.private_file(Path(_SQLITE_NAME))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG  # development serves app static files without collectstatic
if DEBUG:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing root on every start
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# Served over https (OPENTRACE_BASE_URL, or each variable on its own; docs/security.md).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = CONFIG.https.secure_cookies
SECURE_HSTS_SECONDS = CONFIG.https.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.https.hsts_include_subdomains
SECURE_HSTS_PRELOAD = CONFIG.https.hsts_preload
SECURE_PROXY_SSL_HEADER = CONFIG.https.proxy_ssl_header
SECURE_SSL_REDIRECT = CONFIG.https.ssl_redirect
# The host agent and its health check talk to the app over http on the loopback or the
# compose network, and do not follow redirects.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/updates/agent/"]
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload is a promise to the browsers' preload list: opt-in, OPENTRACE_HSTS_PRELOAD.
    "security.W021",
]
if not CONFIG.https.ssl_redirect:
    # TLS ends at the proxy in front (docs/security.md), which redirects http to https itself.
    SILENCED_SYSTEM_CHECKS.append("security.W008")

# --- OpenTrace update management -------------------------------------------------------
OPENTRACE_INSTANCE_NAME = CONFIG.instance_name
OPENTRACE_BASE_URL = CONFIG.base_url
OPENTRACE_REGISTRY_URL = CONFIG.registry_url
OPENTRACE_REGISTRY_KEYS = CONFIG.registry_keys
OPENTRACE_CHANNEL = CONFIG.channel
OPENTRACE_UPDATE_CHECK_INTERVAL = CONFIG.update_check_interval
OPENTRACE_TRIGGER_TIMEOUT = CONFIG.trigger_timeout
OPENTRACE_AGENT_OFFLINE_AFTER = CONFIG.agent_offline_after
OPENTRACE_AGENT_SECRET = CONFIG.agent_secret or generated.agent_secret(DATA_DIR)
OPENTRACE_SECRETS_KEY = CONFIG.secrets_keys or generated.secrets_keys(DATA_DIR)
OPENTRACE_UPDATES_DIR = DATA_DIR / "updates"

CLICKHOUSE = CONFIG.clickhouse
CLICKHOUSE_CLUSTER = CONFIG.clickhouse_cluster
# How long a caller waits for the embedded engine while another process holds it.
CLICKHOUSE_BUSY_TIMEOUT = 10.0

# --- Tracking (tracking/, docs/tracking.md) ------------------------------------------------
OPENTRACE_TRACKING_BUFFER = CONFIG.tracking_buffer  # "spool" or a redis:// URL
# Prepended to the Redis buffer's keys (installs or test workers sharing one Redis db).
OPENTRACE_TRACKING_REDIS_KEY_PREFIX = ""
OPENTRACE_TRACKING_DIR = DATA_DIR / "tracking"  # spool, flusher lock and status; not in backups
OPENTRACE_TRACKING_KEY_TTL = 5.0  # seconds a process trusts its cached write key answers
OPENTRACE_TRACKING_FLUSH_INTERVAL = 2.0  # seconds between the flusher's steps when idle

# --- Mail ----------------------------------------------------------------------------
EMAIL_BACKEND = "smtpconfig.backend.ConfiguredEmailBackend"
OPENTRACE_FALLBACK_EMAIL = CONFIG.email_url  # EMAIL_URL, used when no SMTP row is enabled
DEFAULT_FROM_EMAIL = "OpenTrace <opentrace@localhost>"

# --- Celery --------------------------------------------------------------------------
CELERY_BROKER_URL = CONFIG.broker_url
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue / "queue"),
        "data_folder_out": str(_queue / "queue"),
        "processed_folder": str(_queue / "processed"),
        "control_folder": str(_queue / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_queue / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Beat fires these every minute; each task decides cheaply whether it is due, so the
# registry check can follow the install's own jittered interval (see updates.tasks).
CELERY_BEAT_SCHEDULE = {
    "check-for-updates": {"task": "updates.tasks.check_for_updates_if_due", "schedule": 60.0},
    "expire-unclaimed-runs": {"task": "updates.tasks.expire_unclaimed_runs", "schedule": 60.0},
    "apply-update-policy": {"task": "updates.tasks.apply_update_policy", "schedule": 60.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
