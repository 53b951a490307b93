"""Just enough of WebSocket (RFC 6455) for the fault proxy (tests/faultproxy.py) to read frames."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

UP = "device→server"
DOWN = "server→device"
HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Frame:
    """One JSON frame seen by the proxy; `delivered` is False for a frame it swallowed."""

    direction: str
    connection: int
    message: dict[str, Any]
    delivered: bool = True


def strip_extensions(head: bytes) -> bytes:
    """An HTTP request head without its Sec-WebSocket-Extensions line (no compression agreed)."""
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"sec-websocket-extensions:"))


def parse_frame(buf: bytes | bytearray) -> tuple[int, int, bytes] | None:
    """(opcode, total length in bytes, unmasked payload) of the first whole frame in `buf`, or None."""
    if len(buf) < 2:
        return None
    opcode = buf[0] & 0x0F
    masked = buf[1] & 0x80
    length = buf[1] & 0x7F
    pos = 2
    if length == 126:
        if len(buf) < 4:
            return None
        length = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    mask = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        mask = bytes(buf[pos : pos + 4])
        pos += 4
    end = pos + length
    if len(buf) < end:
        return None
    payload = bytes(buf[pos:end])
    if masked and length:
        key = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return opcode, end, payload
