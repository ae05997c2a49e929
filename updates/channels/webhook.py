"""The webhook boundary: one signed JSON POST to a receiver's URL.

Signature (the same recipe as the agent's requests, SPEC §6):
`X-OpenTrace-Timestamp: <unix seconds>` and
`X-OpenTrace-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`.

Rules: https only (http only for a loopback host); TLS verified against the system's CAs;
a connect timeout, a read timeout and a deadline for the whole exchange; redirects are never
followed (a 3xx is a permanent failure that names where it pointed: enter the final URL);
at most MAX_RESPONSE_BYTES of the answer are read. No proxy, no connection reuse, and
nothing logged: the URL's path may be a credential (as in Slack's or Discord's webhook
URLs), so errors name the scheme and host only. Plain Python, no Django.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from contract.signing import request_signature
from opentrace.config import is_loopback_host
from updates.channels.errors import DeliveryError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
DEADLINE = 30.0
MAX_RESPONSE_BYTES = 64 * 1024
SNIPPET_CHARS = 200
# Answers worth trying again later; every other 4xx means the request itself is refused.
TRANSIENT_STATUSES = frozenset({408, 425, 429})

TIMESTAMP_HEADER = "X-OpenTrace-Timestamp"
SIGNATURE_HEADER = "X-OpenTrace-Signature"
EVENT_HEADER = "X-OpenTrace-Event"
DELIVERY_HEADER = "X-OpenTrace-Delivery"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    # One recipe for every signed request OpenTrace sends: the agent's (SPEC §6) and ours.
    return request_signature(secret, timestamp, body)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook URL, in one sentence; None when it can."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "This is not a valid URL."
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "The URL must not contain spaces or control characters."
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Enter an https:// URL, e.g. https://hooks.example.com/opentrace."
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return (
            "Enter an https:// URL: plain http:// is only allowed for this machine "
            "(localhost, 127.0.0.1, ::1)."
        )
    if parts.username or parts.password:
        return "Put no user name or password in the URL: the receiver checks the signature instead."
    if port == 0:
        return "The URL's port must be between 1 and 65535."
    return None


def where(url: str) -> str:
    """The scheme and host of `url`: what errors and pages may show of it."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT, context=context
        ), target
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT), target


def _snippet(raw: bytes) -> str:
    text = raw[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:SNIPPET_CHARS]


def post(url: str, body: bytes, secret: str, *, headers: dict[str, str] | None = None) -> int:
    """POST `body` (JSON) signed with `secret`; the receiver's 2xx status, or DeliveryError."""
    problem = url_problem(url)
    if problem:
        raise DeliveryError(problem, permanent=True)
    place = where(url)
    timestamp = str(int(time.time()))
    request_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **(headers or {}),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    connection, target = _connection(url)
    # A receiver that trickles its answer byte by byte stays within the read timeout of
    # every recv(); the deadline closes the socket under it.
    expired = threading.Event()
    watchdog = threading.Timer(DEADLINE, _abort, args=(connection, expired))
    watchdog.daemon = True
    try:
        try:
            connection.connect()
        except TimeoutError:
            raise DeliveryError(
                f"{place} did not accept a connection within {CONNECT_TIMEOUT:g} s", permanent=False
            ) from None
        watchdog.start()
        if connection.sock is not None:
            connection.sock.settimeout(READ_TIMEOUT)
        connection.request("POST", target, body=body, headers=request_headers)
        response = connection.getresponse()
        answer = response.read(MAX_RESPONSE_BYTES)
        status, reason, location = response.status, response.reason, response.getheader("Location", "")
    except DeliveryError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(
            f"{place} presented a certificate that cannot be trusted ({exc.verify_message})", permanent=True
        ) from None
    except TimeoutError:
        raise DeliveryError(f"{place} did not answer within {READ_TIMEOUT:g} s", permanent=False) from None
    except socket.gaierror:
        raise DeliveryError(f"the host name of {place} could not be resolved", permanent=False) from None
    except ConnectionRefusedError:
        raise DeliveryError(f"{place} refused the connection", permanent=False) from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeliveryError(
                f"{place} did not finish answering within {DEADLINE:g} s", permanent=False
            ) from None
        raise DeliveryError(
            f"the connection to {place} failed ({type(exc).__name__})", permanent=False
        ) from None
    finally:
        watchdog.cancel()
        connection.close()

    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        target_host = urlsplit(location).hostname if location else None
        pointed = f" to {target_host}" if target_host else ""
        raise DeliveryError(
            f"{place} answered {status} {reason} redirecting{pointed}; webhooks do not follow "
            "redirects, so enter the final URL",
            permanent=True,
            status=status,
        )
    said = _snippet(answer)
    detail = f": {said}" if said else ""
    transient = status >= 500 or status in TRANSIENT_STATUSES
    raise DeliveryError(f"{place} answered {status} {reason}{detail}", permanent=not transient, status=status)


def _abort(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
