"""Removing credentials from text that may be shown to admins, stored, or written to logs.

Two places a URL carries a credential: its userinfo (`https://user:password@host`, or a
token alone, `https://ghp_…@github.com`) and its query (`?access_token=…`, `&sig=…`). Both
are replaced by `***`; the rest of the URL stays, so the text still says where it went.
"""

from __future__ import annotations

import re

# scheme://user:password@host → scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")
# scheme://token@host → scheme://***@host (a user name alone is how git sends a token)
_URL_USER = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@*]+@")
# ?token=…, &access_token=…, &X-Amz-Signature=… (names compared without case)
_QUERY_SECRET = re.compile(
    r"(?P<prefix>[?&](?:[\w.-]*(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|signature|credential)"
    r"|key|sig|auth|code)=)[^&\s#\"'<>]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(r"\g<prefix>***@", text)
    text = _URL_USER.sub(r"\g<prefix>***@", text)
    return _QUERY_SECRET.sub(r"\g<prefix>***", text)
