"""How the update pages write times and durations: one style everywhere.

Durations read like a person says them ("0.9 s", "47 s", "2 min 05 s", "1 h 03 min"), never
as a timedelta's "0:00:00.047461"; instants are ISO-like with their zone, "2026-12-01 19:01:38 UTC".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format_duration(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(seconds, 0.0)
    if seconds < 10:
        # A sub-second step is still worth a figure: "0:00:00" said it took no time at all.
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_instant(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# A failed check's error as stored is the client library's text, e.g.
# "could not reach the registry: HTTPSConnectionPool(host=…): Max retries exceeded … NameResolutionError(…)".
# The page says what it means in one sentence and keeps the text behind a "details" toggle.
_CHECK_ERRORS = (
    (
        ("NameResolutionError", "Name or service not known", "Failed to resolve", "nodename nor servname"),
        "the registry's host name does not resolve (DNS lookup failed); is the URL right,"
        " and can this server reach the internet?",
    ),
    (
        ("Connection refused", "ConnectionRefusedError", "[Errno 111]"),
        "the registry's server refused the connection.",
    ),
    (
        ("Network is unreachable", "No route to host", "[Errno 101]", "[Errno 113]"),
        "this server has no network route to the registry.",
    ),
    (
        ("CERTIFICATE_VERIFY_FAILED", "TLS verification failed", "SSLError"),
        "the registry's TLS certificate was not accepted.",
    ),
    (("timed out", "did not answer in time", "took longer than"), "the registry did not answer in time."),
)


def describe_check_error(error: str) -> str:
    """One human sentence for a failed registry check's stored error (the details stay available)."""
    text = (error or "").strip()
    if not text:
        return ""
    for needles, sentence in _CHECK_ERRORS:
        if any(needle in text for needle in needles):
            return f"{sentence[:1].upper()}{sentence[1:]}"
    first = text.splitlines()[0]
    if len(first) > 200:
        first = first[:199].rstrip() + "…"
    return f"{first[:1].upper()}{first[1:]}" + ("" if first.endswith((".", "…")) else ".")
