"""Keeping channel credentials out of log lines and error messages.

An Apprise URL can hold a token anywhere: `tgram://<bot token>/<chat>`,
`slack://<a>/<b>/<c>`, `json://user:password@host/path`. Apprise and urllib3 log such
URLs and paths at DEBUG (some at WARNING), so while a URL is in use its pieces are
registered here, and a filter on those libraries' loggers masks them in every record
before any handler sees it. Text we store or show (an error, a log line) goes through
`mask()` with the same pieces.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote

MASK = "***"
# Shorter pieces are words like "json" or "POST", not credentials worth the noise of masking.
MIN_PIECE = 4
# Loggers of the libraries the transports use; ours never log a destination.
LIBRARY_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "requests")

_SPLIT = re.compile(r"[/:@?&#,;+\s]+")
_lock = threading.Lock()
_ids = itertools.count()
_live: dict[int, tuple[str, ...]] = {}


def pieces_of(url: str) -> tuple[str, ...]:
    """The URL and each piece of it after the scheme that could be a credential (query
    parameter names are left out: they are the service's documented words)."""
    _, _, rest = url.partition("://")
    found: set[str] = {url, unquote(url)}
    for piece in _SPLIT.split(rest):
        value = piece.split("=", 1)[1] if "=" in piece else piece
        for candidate in (value, unquote(value)):
            if len(candidate) >= MIN_PIECE:
                found.add(candidate)
    # Longest first, so a URL is masked whole before its pieces are.
    return tuple(sorted(found, key=len, reverse=True))


def mask(text: str, pieces: Iterable[str]) -> str:
    for piece in sorted(set(pieces), key=len, reverse=True):
        if piece:
            text = text.replace(piece, MASK)
    return text


def _all_live() -> tuple[str, ...]:
    with _lock:
        return tuple(piece for pieces in _live.values() for piece in pieces)


def mask_live(text: str) -> str:
    return mask(text, _all_live())


@contextmanager
def hidden(pieces: Iterable[str]) -> Iterator[None]:
    """Mask `pieces` in the library loggers' records until the block ends (other threads'
    records included: Apprise notifies from a thread pool)."""
    ident = next(_ids)
    with _lock:
        _live[ident] = tuple(pieces)
    try:
        yield
    finally:
        with _lock:
            del _live[ident]


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        pieces = _all_live()
        if not pieces:
            return True
        message = record.getMessage()
        masked = mask(message, pieces)
        if record.exc_info:
            masked = f"{masked}\n{mask(logging.Formatter().formatException(record.exc_info), pieces)}"
            record.exc_info = None
            record.exc_text = None
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


_FILTER = MaskingFilter()


def install() -> None:
    """Attach the filter to the library loggers (idempotent)."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
