"""Reading OpenTrace's configuration from the environment.

Every variable of SPEC §3 (and the few the project adds) is read here, once, by
`load_config()`, which `opentrace/settings.py` calls with `os.environ`. A malformed value
raises `ConfigError` naming the variable: start-up stops instead of running on a silent
default. The function takes the environment as a mapping so tests can feed it any value.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import ipaddress
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from contract.keys import KeysError
from contract.keys import parse_registry_keys as parse_keys

DEV_SECRET_KEY = "opentrace-development-key-do-not-use-in-production"  # noqa: S105 - refused when DEBUG is off
DEFAULT_REGISTRY_URL = "https://version.429toomanyre.quest/version.json"
DEFAULT_CLICKHOUSE_DATABASE = "opentrace"

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_BROKER_SCHEMES = {"redis", "rediss", "amqp", "amqps", "pyamqp", "filesystem", "memory"}
_DATABASE_ENGINES = {"django.db.backends.sqlite3", "django.db.backends.postgresql"}


class ConfigError(ImproperlyConfigured):
    """A configuration variable is malformed; the message names it."""

    def __init__(self, name: str, problem: str) -> None:
        self.variable = name
        super().__init__(f"{name}: {problem}")


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where clickhouse-connect connects: a DSN without database, and the database name."""

    dsn: str
    database: str
    embedded: bool
    path: Path | None = None


@dataclass(frozen=True)
class HttpsSettings:
    """What Django's SecurityMiddleware and cookies do for an install served over https.

    The defaults follow OPENTRACE_BASE_URL: an https base URL gets secure cookies and HSTS
    for a year; each can be set on its own (docs/operations.md, "Serving over https").
    """

    secure_cookies: bool = False
    hsts_seconds: int = 0
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    ssl_redirect: bool = False
    proxy_ssl_header: tuple[str, str] | None = None


_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _proxy_ssl_header(name: str, value: str | None) -> tuple[str, str] | None:
    """`X-Forwarded-Proto` → Django's ("HTTP_X_FORWARDED_PROTO", "https"). Only for a proxy
    that always sets (and never passes on) that header: it decides what counts as https."""
    if value is None:
        return None
    if not _HEADER_NAME.match(value):
        raise ConfigError(name, f"{value!r} is not a header name like X-Forwarded-Proto")
    return ("HTTP_" + value.upper().replace("-", "_"), "https")


@dataclass(frozen=True)
class Config:
    data_dir: Path
    debug: bool
    secret_key: str | None  # None: generated into the data dir (opentrace.secrets)
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict[str, object]
    broker_url: str
    clickhouse: ClickHouseTarget
    clickhouse_cluster: str | None
    registry_url: str
    registry_keys: dict[str, bytes]
    channel: str
    update_check_interval: int
    trigger_timeout: int
    agent_offline_after: int
    agent_secret: str | None
    secrets_keys: list[str]
    instance_name: str
    base_url: str
    email_url: dict[str, object] | None
    log_level: str
    tracking_buffer: str = "spool"
    https: HttpsSettings = field(default_factory=HttpsSettings)
    # While this file exists the web process reports itself draining (/healthz/ready: 503).
    drain_file: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class _Reader:
    def __init__(self, environ_: Mapping[str, str]) -> None:
        self.env = environ.Env()
        # django-environ reads from `ENVIRON`; point it at the mapping we were given.
        self.env.ENVIRON = dict(environ_)
        self.raw = self.env.ENVIRON

    def str(self, name: str, default: str) -> str:
        value = self.raw.get(name)
        return default if value is None else value.strip()

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self.raw.get(name, "").strip()
        return value or None

    def bool(self, name: builtins.str, default: bool) -> bool:
        if name not in self.raw:
            return default
        value = self.raw[name].strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(name, f"expected a boolean (true/false/1/0), got {self.raw[name]!r}")

    def int(self, name: builtins.str, default: int, *, minimum: int, maximum: int) -> int:
        if name not in self.raw or not self.raw[name].strip():
            return default
        try:
            value = int(self.raw[name].strip())
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {self.raw[name]!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def list(self, name: builtins.str, default: list[builtins.str]) -> list[builtins.str]:
        if name not in self.raw:
            return default
        return [item.strip() for item in self.raw[name].split(",") if item.strip()]


def _database(name: str, url: str) -> dict[str, object]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # we report an unknown engine ourselves, below
            config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ConfigError(name, f"not a database URL ({exc})") from None
    if config.get("ENGINE") not in _DATABASE_ENGINES:
        raise ConfigError(name, "only sqlite:/// and postgres:// URLs are supported")
    if not config.get("NAME"):
        raise ConfigError(name, "the URL names no database")
    if config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("CONN_MAX_AGE", 60)
        config["CONN_HEALTH_CHECKS"] = True
    return config


def _broker(name: str, url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in _BROKER_SCHEMES:
        raise ConfigError(name, f"unsupported broker scheme {scheme!r} (use redis:// or filesystem://)")
    return url


def _clickhouse(name: str, url: str) -> ClickHouseTarget:
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        if not parts.path or parts.path == "/":
            raise ConfigError(name, "a chdb:// URL needs a data path, e.g. chdb:///srv/opentrace/clickhouse")
        database = parse_qs(parts.query).get("database", [DEFAULT_CLICKHOUSE_DATABASE])[0]
        target = ClickHouseTarget(
            dsn=f"chdb://{parts.path}", database=database, embedded=True, path=Path(parts.path)
        )
    elif parts.scheme in {"http", "https"}:
        if not parts.hostname:
            raise ConfigError(name, "the URL names no host")
        try:
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise ConfigError(name, "the URL's port is not a number") from None
        database = parts.path.strip("/") or DEFAULT_CLICKHOUSE_DATABASE
        dsn = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
        target = ClickHouseTarget(dsn=dsn, database=database, embedded=False)
    else:
        raise ConfigError(name, "use chdb:///path (embedded) or http(s)://user:pass@host:8123/db")
    if not _IDENTIFIER.match(target.database):
        raise ConfigError(name, f"database name {target.database!r} is not a plain identifier")
    return target


def _registry_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ConfigError(name, "must be an https:// URL (http:// only for 127.0.0.1, ::1 or localhost)")


def parse_registry_keys(name: str, value: str | None) -> dict[str, bytes]:
    """`keyid:base64,keyid:base64` → {keyid: 32-byte Ed25519 public key} (the rules of `contract.keys`)."""
    try:
        return parse_keys(value)
    except KeysError as exc:
        raise ConfigError(name, str(exc)) from None


def _fernet_keys(name: str, value: str | None) -> list[str]:
    keys = [item.strip() for item in (value or "").split(",") if item.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(name, f"key #{position} is not a Fernet key (32 url-safe base64 bytes)")
    return keys


def _origins(name: str, values: list[str]) -> list[str]:
    for origin in values:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(name, f"{origin!r} is not an origin like https://analytics.example.com")
    return values


def _tracking_buffer(name: str, value: str) -> str:
    """`spool` (files in the data dir) or a redis:// URL (docs/tracking.md)."""
    if value == "spool":
        return value
    parts = urlsplit(value)
    if parts.scheme in {"redis", "rediss"} and parts.hostname:
        try:
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise ConfigError(name, "the URL's port is not a number") from None
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ConfigError(
                name, "the Redis database in the URL must be a number, e.g. redis://redis:6379/1"
            )
        return value
    raise ConfigError(name, f"expected 'spool' or a redis:// URL, got {value!r}")


def _base_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(name, f"{value!r} is not an absolute http(s) URL")
    return value.rstrip("/")


def load_config(environ_: Mapping[str, str], base_dir: Path) -> Config:
    r = _Reader(environ_)

    data_dir = Path(r.str("OPENTRACE_DATA_DIR", "data"))
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError("OPENTRACE_DATA_DIR", f"{data_dir} exists and is not a directory")

    debug = r.bool("DEBUG", False)
    secret_key = r.raw.get("SECRET_KEY")
    if secret_key is not None:
        secret_key = secret_key.strip()
        if not secret_key:
            raise ConfigError("SECRET_KEY", "must not be empty (unset it to have one generated)")
        if not debug and secret_key == DEV_SECRET_KEY:
            raise ConfigError(
                "SECRET_KEY", "DEBUG is off but SECRET_KEY is the development key; set a long random one"
            )
        if not debug and len(secret_key) < 32:
            raise ConfigError("SECRET_KEY", "must be at least 32 characters when DEBUG is off")

    base_url = _base_url("OPENTRACE_BASE_URL", r.str("OPENTRACE_BASE_URL", "http://127.0.0.1:8000"))
    served_over_https = base_url.startswith("https://")
    https = HttpsSettings(
        secure_cookies=r.bool("OPENTRACE_SECURE_COOKIES", served_over_https),
        hsts_seconds=r.int(
            "OPENTRACE_HSTS_SECONDS", 31536000 if served_over_https else 0, minimum=0, maximum=2 * 31536000
        ),
        hsts_include_subdomains=r.bool("OPENTRACE_HSTS_INCLUDE_SUBDOMAINS", True),
        hsts_preload=r.bool("OPENTRACE_HSTS_PRELOAD", False),
        ssl_redirect=r.bool("OPENTRACE_SSL_REDIRECT", False),
        proxy_ssl_header=_proxy_ssl_header(
            "OPENTRACE_PROXY_SSL_HEADER", r.optional("OPENTRACE_PROXY_SSL_HEADER")
        ),
    )

    agent_secret = r.optional("OPENTRACE_AGENT_SECRET")
    if agent_secret is not None and len(agent_secret) < 32:
        raise ConfigError("OPENTRACE_AGENT_SECRET", "must be at least 32 characters")

    channel = r.str("OPENTRACE_CHANNEL", "stable")
    if not _CHANNEL.match(channel):
        raise ConfigError("OPENTRACE_CHANNEL", f"{channel!r} is not a channel name like 'stable'")

    cluster = r.optional("CLICKHOUSE_CLUSTER")
    if cluster is not None and not _IDENTIFIER.match(cluster):
        raise ConfigError("CLICKHOUSE_CLUSTER", f"{cluster!r} is not a plain cluster name")

    log_level = r.str("OPENTRACE_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError("OPENTRACE_LOG_LEVEL", f"{log_level!r} is not a log level")

    email_url = None
    if r.optional("EMAIL_URL"):
        try:
            email_url = environ.Env.email_url_config(r.str("EMAIL_URL", ""))
        except Exception as exc:
            raise ConfigError("EMAIL_URL", f"not an email URL ({exc})") from None
        if not email_url.get("EMAIL_HOST"):
            raise ConfigError("EMAIL_URL", "the URL names no host (smtp://user:pass@host:587)")

    return Config(
        data_dir=data_dir,
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=r.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if debug else []),
        csrf_trusted_origins=_origins("CSRF_TRUSTED_ORIGINS", r.list("CSRF_TRUSTED_ORIGINS", [])),
        database=_database(
            "DATABASE_URL", r.str("DATABASE_URL", f"sqlite:///{data_dir / 'opentrace.sqlite3'}")
        ),
        broker_url=_broker("CELERY_BROKER_URL", r.str("CELERY_BROKER_URL", "filesystem://")),
        clickhouse=_clickhouse(
            "CLICKHOUSE_URL", r.str("CLICKHOUSE_URL", f"chdb://{data_dir / 'clickhouse'}")
        ),
        clickhouse_cluster=cluster,
        registry_url=_registry_url(
            "OPENTRACE_REGISTRY_URL", r.str("OPENTRACE_REGISTRY_URL", DEFAULT_REGISTRY_URL)
        ),
        registry_keys=parse_registry_keys("OPENTRACE_REGISTRY_KEYS", r.optional("OPENTRACE_REGISTRY_KEYS")),
        channel=channel,
        update_check_interval=r.int("OPENTRACE_UPDATE_CHECK_INTERVAL", 21600, minimum=60, maximum=7 * 86400),
        trigger_timeout=r.int("OPENTRACE_TRIGGER_TIMEOUT", 600, minimum=10, maximum=86400),
        agent_offline_after=r.int("OPENTRACE_AGENT_OFFLINE_AFTER", 90, minimum=35, maximum=3600),
        agent_secret=agent_secret,
        secrets_keys=_fernet_keys("OPENTRACE_SECRETS_KEY", r.optional("OPENTRACE_SECRETS_KEY")),
        instance_name=r.str("OPENTRACE_INSTANCE_NAME", "OpenTrace") or "OpenTrace",
        base_url=base_url,
        https=https,
        email_url=email_url,
        log_level=log_level,
        tracking_buffer=_tracking_buffer(
            "OPENTRACE_TRACKING_BUFFER", r.str("OPENTRACE_TRACKING_BUFFER", "spool") or "spool"
        ),
        drain_file=r.str("OPENTRACE_DRAIN_FILE", ""),
    )
