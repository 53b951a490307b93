"""A fault-injecting TCP relay for tests: the network between a device and the server, broken on purpose.

`FaultProxy(target_port)` listens on its own port and relays every connection to the server.
Point a device at `proxy.url` (a browser context's `base_url`, an `HttpSession`) and then:

    cut_all()            close every open connection at once (the radio drops), both ways
    block() / unblock()  refuse new connections too (accepted and closed at once: no network)
    drop_next(match)     swallow the next server→client WebSocket frame that `match` accepts
                         (e.g. the first `ack`) and cut every connection instead of delivering it
    drop_every(match)    the same for every frame `match` accepts, until `clear_drops()`
    flap(times, rng, …)  cut every connection `times` times at random moments drawn from a
                         seeded `random.Random` (a background thread; `wait_flapped()`)

It understands just enough of WebSocket (RFC 6455) to see frames: in a connection whose first
request is an upgrade it strips `Sec-WebSocket-Extensions`, so no permessage-deflate is agreed
and every text frame is readable JSON; it then parses frames both ways (unmasking the device's)
and records each JSON frame in `frames` as `Frame(direction, connection, message)` — which
frames the device sent (`download` `after` values, re-sent `push` op ids) and which ones the
server's answers were delivered or swallowed. Frames are relayed byte for byte otherwise.
Plain HTTP connections are relayed untouched (and cut like the rest).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
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


class _Link:
    """One relayed connection: the device's socket, the server's, and a pump thread each way."""

    def __init__(self, proxy: FaultProxy, number: int, device: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.number = number
        self.device = device
        self.server = server
        self.websocket = False
        self.closed = False
        self.lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._pump_up, name=f"faultproxy-up-{self.number}", daemon=True).start()
        threading.Thread(target=self._pump_down, name=f"faultproxy-down-{self.number}", daemon=True).start()

    def cut(self) -> None:
        """Close both sockets (the peers see the connection drop)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.device, self.server):
            with contextlib.suppress(OSError):  # the other side may have gone already
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        self.proxy._forget(self)

    def _recv(self, s: socket.socket) -> bytes:
        try:
            return s.recv(65536)
        except OSError:
            return b""

    def _send(self, s: socket.socket, data: bytes) -> bool:
        try:
            s.sendall(data)
            return True
        except OSError:
            return False

    def _read_head(self, source: socket.socket) -> tuple[bytes, bytes] | None:
        """An HTTP head (through the blank line) and what came after it, or None at the end."""
        buf = b""
        while HEAD_END not in buf:
            chunk = self._recv(source)
            if not chunk or len(buf) > MAX_HEAD:
                return None
            buf += chunk
        head, _, rest = buf.partition(HEAD_END)
        return head + HEAD_END, rest

    def _pump_up(self) -> None:
        read = self._read_head(self.device)
        if read is None:
            self.cut()
            return
        head, rest = read
        first_line = head.split(b"\r\n", 1)[0]
        if b"upgrade: websocket" in head.lower() and first_line.startswith(b"GET "):
            self.websocket = True
            head = strip_extensions(head)
        if not self._send(self.server, head):
            self.cut()
            return
        if self.websocket:
            self._frames(self.device, self.server, UP, bytearray(rest))
        else:
            self._raw(self.device, self.server, rest)

    def _pump_down(self) -> None:
        read = self._read_head(self.server)
        if read is None:
            self.cut()
            return
        head, rest = read
        upgraded = head.startswith(b"HTTP/1.1 101")
        if not self._send(self.device, head):
            self.cut()
            return
        if upgraded:
            self._frames(self.server, self.device, DOWN, bytearray(rest))
        else:
            self._raw(self.server, self.device, rest)

    def _raw(self, source: socket.socket, sink: socket.socket, pending: bytes) -> None:
        data = pending
        while True:
            if data and not self._send(sink, data):
                break
            data = self._recv(source)
            if not data:
                break
        self.cut()

    def _frames(self, source: socket.socket, sink: socket.socket, direction: str, buf: bytearray) -> None:
        parts: list[bytes] = []  # a fragmented message's payloads so far
        while True:
            while (parsed := parse_frame(buf)) is not None:
                opcode, size, payload = parsed
                raw = bytes(buf[:size])
                del buf[:size]
                deliver: bool | None = True
                if opcode in (0x0, 0x1):
                    parts.append(payload)
                    if raw[0] & 0x80:  # FIN: the message is whole
                        deliver = self.proxy._observe(self, direction, b"".join(parts))
                        parts = []
                if deliver is None:
                    continue  # lost on the way, the connection unharmed
                if not deliver:
                    self.proxy.cut_all()
                    return
                if not self._send(sink, raw):
                    self.cut()
                    return
            data = self._recv(source)
            if not data:
                self.cut()
                return
            buf += data


class FaultProxy:
    """A TCP relay to `127.0.0.1:target_port` that breaks connections on command (see the module)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(128)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self.frames: list[Frame] = []
        self.cuts = 0
        self.connections = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._blocked = False
        self._closing = False
        self._drops: list[tuple[Callable[[dict[str, Any]], bool], bool]] = []  # (match, only once)
        self._losses: list[Callable[[dict[str, Any]], bool]] = []  # device→server, once each, no cut
        self._flapper: threading.Thread | None = None
        self._stop_flapping = threading.Event()
        self._accepter = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)
        self._accepter.start()

    # --- faults ------------------------------------------------------------------------------

    def cut_all(self) -> int:
        """Cut every open connection; returns how many were open."""
        with self._lock:
            links = list(self._links)
            self.cuts += 1
        for link in links:
            link.cut()
        return len(links)

    def block(self) -> None:
        """No network: cut every connection and refuse new ones until `unblock()`."""
        with self._lock:
            self._blocked = True
        self.cut_all()

    def unblock(self) -> None:
        """The network is back: connections are relayed again."""
        with self._lock:
            self._blocked = False

    def drop_next(self, match: Callable[[dict[str, Any]], bool]) -> None:
        """Swallow the next server→device frame `match` accepts, and cut every connection instead."""
        with self._lock:
            self._drops.append((match, True))

    def drop_every(self, match: Callable[[dict[str, Any]], bool]) -> None:
        """Swallow every server→device frame `match` accepts (cutting every connection each time)."""
        with self._lock:
            self._drops.append((match, False))

    def lose_next_sent(self, match: Callable[[dict[str, Any]], bool]) -> None:
        """Swallow the next device→server frame `match` accepts and relay the rest as if it had
        never been sent (the connection stays up): the server sees a gap."""
        with self._lock:
            self._losses.append(match)

    def clear_drops(self) -> None:
        """Deliver every frame again."""
        with self._lock:
            self._drops.clear()

    def flap(self, times: int, rng: random.Random, low: float = 0.05, high: float = 1.0) -> None:
        """Cut every connection `times` times, each after a delay drawn uniformly from [low, high] s."""
        delays = [rng.uniform(low, high) for _ in range(times)]  # drawn now: the same seed, the same schedule
        self._stop_flapping.clear()

        def run() -> None:
            for delay in delays:
                if self._stop_flapping.wait(delay):
                    return
                self.cut_all()

        self._flapper = threading.Thread(target=run, name="faultproxy-flap", daemon=True)
        self._flapper.start()

    def wait_flapped(self, timeout: float) -> None:
        """Wait until the flapping thread has made all its cuts."""
        if self._flapper is not None:
            self._flapper.join(timeout)
            if self._flapper.is_alive():
                raise TimeoutError(f"the proxy was still flapping after {timeout} s")

    # --- what went through -------------------------------------------------------------------

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """Every frame of type `kind` the device sent, in order."""
        with self._lock:
            return [f.message for f in self.frames if f.direction == UP and f.message.get("type") == kind]

    def received(self, kind: str, delivered: bool | None = True) -> list[dict[str, Any]]:
        """Frames of type `kind` the server sent (delivered ones by default; None: all)."""
        with self._lock:
            return [
                f.message
                for f in self.frames
                if f.direction == DOWN
                and f.message.get("type") == kind
                and (delivered is None or f.delivered == delivered)
            ]

    def close(self) -> None:
        """Stop listening and cut everything."""
        self._stop_flapping.set()
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut_all()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inside ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing:
            try:
                device, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                blocked = self._blocked
            if blocked:
                with contextlib.suppress(OSError):
                    device.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:  # the server is down: so is this connection
                with contextlib.suppress(OSError):
                    device.close()
                continue
            for s in (device, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                # Blocked while the server connection was being made: block() has already cut
                # the links it knew, so this one must not slip through.
                blocked = self._blocked
                if not blocked:
                    self.connections += 1
                    link = _Link(self, self.connections, device, server)
                    self._links.add(link)
            if blocked:
                for s in (device, server):
                    with contextlib.suppress(OSError):
                        s.close()
                continue
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _observe(self, link: _Link, direction: str, payload: bytes) -> bool | None:
        """Record a whole message; False when it is to be swallowed (and the connections cut),
        None when it is to be lost with the connection left up."""
        try:
            message = json.loads(payload)
        except ValueError:
            return True
        if not isinstance(message, dict):
            return True
        with self._lock:
            deliver = True
            if direction == DOWN:
                for i, (match, once) in enumerate(self._drops):
                    if match(message):
                        if once:
                            del self._drops[i]
                        deliver = False
                        break
            lost = False
            if direction == UP:
                for i, match in enumerate(self._losses):
                    if match(message):
                        del self._losses[i]
                        deliver = lost = True
                        break
            self.frames.append(Frame(direction, link.number, message, deliver and not lost))
        return None if lost else deliver


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true, failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)  # polling a condition with a deadline
