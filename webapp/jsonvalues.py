"""JSON values every part of the server can hold: the one check the socket and HTTP share.

JSON allows values no column and no UTF-8 text can carry: integers of any size, lone
surrogates (`"\\ud800"` is a valid JSON escape but no valid UTF-8) and, in Python's reader,
`NaN`, `Infinity` and `1e999`. Left in, they fail deep inside SQL or an encoder; checked
here as the body or frame arrives, they are refused with a message naming where they were.
"""

from __future__ import annotations

import math
from typing import Any

INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # a BIGINT: the widest integer any column or cursor holds


class BadValue(Exception):
    """A value that cannot be held; `message` says which and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _where(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "the top level"


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:40]


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any) -> None:
    """Raise BadValue when `value` (parsed JSON) holds an integer outside 64 bits, a number
    that is not finite, or a string (value or key) that is not valid Unicode."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise BadValue(f"{_where(path)}: the number is too large (at most 64-bit integers).")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadValue(f"{_where(path)}: numbers must be finite.")
        elif isinstance(item, str):
            if not _text_ok(item):
                raise BadValue(f"{_where(path)}: the text is not valid Unicode (a lone surrogate).")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not _text_ok(key):
                    raise BadValue(f"{_where(path)}: a key is not valid Unicode (a lone surrogate).")
                stack.append((inner, [*path, _printable(key)]))
        elif isinstance(item, list):
            stack.extend((inner, [*path, i]) for i, inner in enumerate(item))
