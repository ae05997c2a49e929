"""Removing credentials from text that may be shown to admins or written to logs."""

from __future__ import annotations

import re

# scheme://user:password@host → scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\g<prefix>***@", text)
