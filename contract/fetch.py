"""The registry boundary: every request to the version registry goes through `fetch()`.

Both the backend's scheduled check (`updates.checking`, through `updates.registry`) and the
host agent (which, with no keys pinned, reads what the registry offers itself instead of
believing the trigger's copy, SPEC §5) fetch with it, so both follow the same rules.

HTTP rules (SPEC §4.3): https only (http for loopback hosts), TLS verified, connect timeout
5 s, read timeout 10 s, a 30 s deadline for the whole exchange, the body capped at 256 KiB
after decompression whatever Content-Length says, at most 3 redirects and never from https
to http, ETag / If-None-Match, `Retry-After` on 429 and 503. Parsing and verification are
`contract.registry`'s, shared with the host agent; failures here are its `RegistryError` too.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from contract.registry import MAX_DOCUMENT_BYTES, RegistryError

__all__ = ["FetchResult", "backoff_delay", "fetch", "is_loopback_host", "parse_retry_after"]

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
DEADLINE = 30.0
MAX_REDIRECTS = 3
MAX_RETRY_AFTER = 24 * 3600.0
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 16 * 1024
USER_AGENT = "OpenTrace-update-check"
UTC = timezone.utc


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
class FetchResult:
    status: int  # 200, or 304 when the server says our stored copy is current
    body: bytes | None  # None on 304
    etag: str | None
    url: str  # after redirects


def _check_url(url: str, previous: str | None) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        if previous is not None and urlsplit(previous).scheme == "https":
            raise RegistryError(f"refusing a redirect from https to http ({url[:200]})", permanent=True)
        return
    what = "redirect target" if previous else "registry URL"
    raise RegistryError(
        f"the {what} must be https:// (http:// only for loopback): {url[:200]}", permanent=True
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` (seconds or an HTTP-date) as seconds from now, capped at 24 h."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(failures: int, *, base: float = 60.0, cap: float = 21600.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(failures-1))]."""
    ceiling = min(cap, base * 2 ** min(max(failures - 1, 0), 30))
    return random.uniform(0, ceiling)


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


def _read_body(response: requests.Response, deadline_at: float, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if (
        declared.isdigit()
        and int(declared) > MAX_DOCUMENT_BYTES
        and not response.headers.get("Content-Encoding")
    ):
        raise RegistryError(
            f"the registry document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB", permanent=True
        )
    sock = _socket_of(response)

    def cut_off() -> None:
        # A server that drips bytes satisfies every per-read timeout; shutting the socket
        # down at the deadline unblocks the read whatever it is waiting for.
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    remaining = deadline_at - time.monotonic()
    watchdog = threading.Timer(max(remaining, 0.0), cut_off)
    watchdog.daemon = True
    watchdog.start()
    body = bytearray()
    try:
        while True:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                raise RegistryError(f"the registry took longer than {deadline:g} s", permanent=False)
            if sock is not None:
                sock.settimeout(min(READ_TIMEOUT, remaining))
            try:
                chunk = response.raw.read1(_CHUNK, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if time.monotonic() >= deadline_at:
                    raise RegistryError(
                        f"the registry took longer than {deadline:g} s", permanent=False
                    ) from None
                raise RegistryError(f"reading the registry failed: {exc}", permanent=False) from None
            if not chunk:
                if time.monotonic() >= deadline_at:
                    raise RegistryError(f"the registry took longer than {deadline:g} s", permanent=False)
                return bytes(body)
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise RegistryError(
                    f"the registry document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB", permanent=True
                )
    finally:
        watchdog.cancel()


def fetch(
    url: str,
    *,
    etag: str | None = None,
    deadline: float = DEADLINE,
) -> FetchResult:
    """GET the registry document. Raises `RegistryError` for every failure."""
    _check_url(url, None)
    with requests.Session() as session:
        return _fetch(session, url, etag=etag, deadline=deadline)


def _fetch(session: requests.Session, url: str, *, etag: str | None, deadline: float) -> FetchResult:
    deadline_at = time.monotonic() + deadline
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    current, previous = url, None
    for _hop in range(MAX_REDIRECTS + 1):
        if previous is not None:
            _check_url(current, previous)
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise RegistryError(f"the registry took longer than {deadline:g} s", permanent=False)
        try:
            response = session.get(
                current,
                headers=headers,
                stream=True,
                allow_redirects=False,
                verify=True,
                timeout=(min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining)),
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"TLS verification failed: {exc}", permanent=False) from None
        except requests.exceptions.Timeout:
            raise RegistryError("the registry did not answer in time", permanent=False) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise RegistryError(f"could not reach the registry: {exc}", permanent=False) from None
        try:
            if response.status_code in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise RegistryError("a redirect without Location", permanent=True)
                previous, current = current, urljoin(current, location)
                continue
            if response.status_code == 304:
                return FetchResult(304, None, response.headers.get("ETag") or etag, current)
            if response.status_code in (429, 503):
                raise RegistryError(
                    f"the registry answered HTTP {response.status_code}",
                    permanent=False,
                    http_status=response.status_code,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            if response.status_code != 200:
                raise RegistryError(
                    f"the registry answered HTTP {response.status_code}",
                    permanent=400 <= response.status_code < 500 and response.status_code != 408,
                    http_status=response.status_code,
                )
            body = _read_body(response, deadline_at, deadline)
            return FetchResult(200, body, response.headers.get("ETag"), current)
        finally:
            response.close()
    raise RegistryError(f"more than {MAX_REDIRECTS} redirects", permanent=True)
