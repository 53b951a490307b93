"""Reading a frame's text (PROTOCOL.md §5): JSON that every part of the server can hold.

JSON allows values no column and no UTF-8 text can carry: integers of any size (`2**70` in a
`seq`, a cursor or `pending_ops`), lone surrogates (`"\\ud800"` is a valid JSON escape but no
valid UTF-8), and, in Python's reader, `NaN`, `Infinity` and `1e999`. Left in, they reach
SQL or an encoder deep inside a handler and fail there. Here they are refused as the frame
arrives, with a `bad_message` that names where the value was; the session goes on.
"""

from __future__ import annotations

import json
from typing import Any

from webapp.jsonvalues import BadValue, check_value


class BadFrame(Exception):
    """The frame cannot be read; `message` says why (sent in a `bad_message` error frame)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_frame(text: Any) -> dict[str, Any]:
    """The frame as a JSON object with a string `type`, every value in it holdable; or BadFrame."""
    try:
        msg = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        raise BadFrame("The frame is not valid JSON.") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise BadFrame("A frame is a JSON object with a 'type'.")
    try:
        check_value(msg)
    except BadValue as exc:
        raise BadFrame(exc.message) from None
    return msg
