"""Strict JSON for bytes that crossed a trust boundary: the one way `contract` parses them.

`json.loads` accepts more than one reading of some texts and fails in more ways than
`JSONDecodeError`: a repeated key silently keeps the last value (two parsers may disagree on
which one counts), `NaN` and `Infinity` are not JSON at all, nesting deeper than the
recursion limit raises `RecursionError`, and a `"\\ud800"` escape yields a lone surrogate that
parses fine but makes every later `.encode()` (an HMAC's canonical form, a reason written to
disk, a database row) raise. `loads()` refuses every one of these with `JSONRejected`.
"""

from __future__ import annotations

import json
from typing import NoReturn


class JSONRejected(ValueError):
    """The bytes are not JSON that can be used safely. The message names `what` and says why."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} is not JSON ({why})")
        self.what = what
        self.why = why


class _Refused(Exception):
    """Raised from inside the parser's hooks; turned into `JSONRejected` by `loads()`."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"it repeats the key {key[:64]!r}")
        result[key] = value
    return result


def _constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a JSON value")


def loads(data: bytes, what: str = "the document") -> object:
    """Parse UTF-8 JSON text; `JSONRejected` for anything that is not plain, unambiguous JSON."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONRejected(what, f"not UTF-8 text: invalid byte at offset {exc.start}") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except _Refused as exc:
        raise JSONRejected(what, exc.why) from None
    except RecursionError:
        raise JSONRejected(what, "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise JSONRejected(what, str(exc)[:160]) from None
    _refuse_lone_surrogates(value, what)
    return value


def _refuse_lone_surrogates(value: object, what: str) -> None:
    # Iterative: a document that only just fitted the parser's recursion limit cannot overflow here.
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
                raise JSONRejected(what, "a string holds a lone surrogate, which is not Unicode") from None
