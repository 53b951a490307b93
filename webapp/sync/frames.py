"""Reading a frame's text (PROTOCOL.md §5): JSON that every part of the server can hold.

JSON allows values no column and no UTF-8 text can carry: integers of any size (`2**70` in a
`seq`, a cursor or `pending_ops`), lone surrogates (`"\\ud800"` is a valid JSON escape but no
valid UTF-8), and, in Python's reader, `NaN`, `Infinity` and `1e999`. Left in, they reach
SQL or an encoder deep inside a handler and fail there. Here they are refused as the frame
arrives, with a `bad_message` that names where the value was; the session goes on.
"""

from __future__ import annotations

import json
import math
from typing import Any

INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # a BIGINT: the widest integer any column or cursor holds


class BadFrame(Exception):
    """The frame cannot be read; `message` says why (sent in a `bad_message` error frame)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _where(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "the frame"


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:40]


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any) -> None:
    """Raise BadFrame when `value` (parsed JSON) holds an integer outside 64 bits, a number
    that is not finite, or a string (value or key) that is not valid Unicode."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise BadFrame(f"{_where(path)}: the number is too large (at most 64-bit integers).")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadFrame(f"{_where(path)}: numbers must be finite.")
        elif isinstance(item, str):
            if not _text_ok(item):
                raise BadFrame(f"{_where(path)}: the text is not valid Unicode (a lone surrogate).")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not _text_ok(key):
                    raise BadFrame(f"{_where(path)}: a key is not valid Unicode (a lone surrogate).")
                stack.append((inner, [*path, _printable(key)]))
        elif isinstance(item, list):
            stack.extend((inner, [*path, i]) for i, inner in enumerate(item))


def parse_frame(text: Any) -> dict[str, Any]:
    """The frame as a JSON object with a string `type`, every value in it holdable; or BadFrame."""
    try:
        msg = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        raise BadFrame("The frame is not valid JSON.") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise BadFrame("A frame is a JSON object with a 'type'.")
    check_value(msg)
    return msg
