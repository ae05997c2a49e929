"""The one way the agent parses JSON that crossed a trust boundary (trigger files, manifests).

`json.loads` has more ways to fail than `JSONDecodeError`: nesting deeper than the recursion
limit raises `RecursionError`, and a `"\\ud800"` escape yields a lone surrogate that parses
fine but makes every later `.encode()` (the HMAC's canonical form, the reason file) raise
`UnicodeEncodeError`. `loads()` turns all of these into one `UntrustedJSONError`.
"""

from __future__ import annotations

import json


class UntrustedJSONError(ValueError):
    """The bytes are not UTF-8 JSON the agent can safely use; the message says why."""


def loads(data: bytes) -> object:
    """Parse UTF-8 JSON, rejecting deep nesting and lone surrogates with `UntrustedJSONError`."""
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise UntrustedJSONError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise UntrustedJSONError(str(exc)[:200]) from None
    _reject_lone_surrogates(value)
    return value


def _reject_lone_surrogates(value: object) -> None:
    # Iterative, so a document that only just fit the parser's recursion limit cannot overflow here.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            strings = []
            stack.extend(item)
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UntrustedJSONError("a string holds a lone surrogate (not valid Unicode)") from None
