"""The chat-service boundary: one notice through an Apprise URL (`slack://`, `discord://`,
`matrix://`, `ntfy://`, `tgram://`, `json://`, ...).

The URL is a credential. While it is in use its pieces are masked in Apprise's and
urllib3's log records (`masking.hidden`), and every message this module returns or raises
has been masked too. Pages show `where()` only: the scheme.

Apprise says whether it understands a URL without sending anything (`url_problem`, used
when a channel is saved). Its result tells success or failure, and its captured warnings
say why; an HTTP status in them (`error=404`) decides whether the failure is permanent
(4xx but 408/425/429) or worth retrying (5xx, timeouts, connection errors).
"""

from __future__ import annotations

import logging
import re
import threading

import apprise
from apprise import Apprise, AppriseAsset, NotifyType, PersistentStoreMode

from updates.channels import masking
from updates.channels.errors import DeliveryError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# For the whole notify() call, retries of Apprise's own included (we leave those at 0).
DEADLINE = 30.0
TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_MESSAGE_CHARS = 300

NOTIFY_TYPES = {
    "info": NotifyType.INFO,
    "success": NotifyType.SUCCESS,
    "warning": NotifyType.WARNING,
    "failure": NotifyType.FAILURE,
}

_STATUS = re.compile(r"error=(\d{3})\b")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

masking.install()


def _asset() -> AppriseAsset:
    # Memory only: Apprise's persistent store would otherwise write under the home directory.
    return AppriseAsset(storage_mode=PersistentStoreMode.MEMORY, secure_logging=True)


def scheme_of(url: str) -> str | None:
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else None


def where(url: str) -> str:
    """All a page may show of an Apprise URL: its scheme (its host can be a bot token)."""
    scheme = scheme_of(url)
    return f"{scheme}://…" if scheme else "…"


def known_schemes() -> frozenset[str]:
    return frozenset(apprise.manager_plugins.NotificationManager().schemas())


class _ThreadCapture(logging.Handler):
    """Apprise's warnings raised by this thread (instantiate() runs in the caller's thread)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _one_sentence(text: str, pieces: tuple[str, ...]) -> str:
    text = " ".join(masking.mask(text, pieces).split())
    return text.rstrip(". ")[:MAX_MESSAGE_CHARS]


def _load(url: str, pieces: tuple[str, ...]) -> apprise.NotifyBase:
    """The Apprise service for `url`, or DeliveryError (permanent) saying what is wrong."""
    scheme = scheme_of(url)
    if scheme is None:
        raise DeliveryError(
            "This is not an Apprise URL: it must start with a service scheme, e.g. slack://, "
            "discord://, ntfy:// or json://",
            permanent=True,
        )
    if scheme not in known_schemes():
        raise DeliveryError(
            f"Apprise does not know the scheme {scheme}:// (known ones include slack://, discord://, "
            "matrix://, ntfy://, tgram://, json://; see the Apprise documentation)",
            permanent=True,
        )
    logger = logging.getLogger("apprise")
    capture = _ThreadCapture()
    logger.addHandler(capture)
    try:
        with masking.hidden(pieces):
            service = Apprise.instantiate(url, asset=_asset())
    finally:
        logger.removeHandler(capture)
    if service is None:
        # Apprise's own reason first ("An invalid Slack (first) Token () was specified.").
        reasons = [m for m in capture.messages if not m.startswith(("Could not load", "Unparseable"))]
        reason = _one_sentence(reasons[0], pieces) if reasons else ""
        detail = f": {reason}" if reason else ""
        raise DeliveryError(
            f"Apprise cannot use this {scheme}:// URL{detail}; check it against the service's "
            "page in the Apprise documentation",
            permanent=True,
        )
    return service


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, in one sentence with no secret in it; None when it can.
    Nothing is sent."""
    pieces = masking.pieces_of(url)
    try:
        _load(url, pieces)
    except DeliveryError as exc:
        return f"{exc}."
    return None


def send(url: str, *, title: str, body: str, notify_type: str = "info") -> str:
    """Notify through `url`; the service's name on success, else DeliveryError."""
    pieces = masking.pieces_of(url)
    service = _load(url, pieces)
    # Our limits, whatever the URL asks for (its ?cto= and ?rto= included).
    service.socket_connect_timeout = CONNECT_TIMEOUT
    service.socket_read_timeout = READ_TIMEOUT
    name = str(getattr(service, "service_name", "") or scheme_of(url))
    notifier = Apprise(asset=_asset())
    with masking.hidden(pieces):
        notifier.add(service)
        result = notifier.notify(
            body=body,
            title=title,
            notify_type=NOTIFY_TYPES.get(notify_type, NotifyType.INFO),
            timeout=DEADLINE,
        )
        warnings = [entry.message for entry in result.logs()] if not result else []
    if result:
        return name
    reason = _one_sentence(warnings[-1], pieces) if warnings else "Apprise reported a failure"
    if result.status.name == "TIMEOUT":
        raise DeliveryError(f"{name} did not answer within {DEADLINE:g} s", permanent=False)
    statuses = [int(code) for code in _STATUS.findall(" ".join(warnings))]
    status = statuses[-1] if statuses else None
    permanent = status is not None and 400 <= status < 500 and status not in TRANSIENT_STATUSES
    raise DeliveryError(f"{name}: {reason}", permanent=permanent, status=status)
