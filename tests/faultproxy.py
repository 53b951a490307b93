"""A fault-injecting TCP relay for tests: the network between a device and the server, broken on purpose.

`FaultProxy(target_port)` listens on its own port and relays every connection to the server.
Point a device at `proxy.url` (a browser context's `base_url`, an `HttpSession`) and then:

    cut_all()            close every open connection at once (the radio drops), both ways
    block() / unblock()  refuse new connections too (accepted and closed at once: no network)
    hang() / unhang()    a network that never answers: connections are accepted and never
                         answered, and open ones go silent, both ways (no refusal, no reset);
                         what was sent into the hang is lost for good (a blackhole), so only a
                         device that gives up on those connections reaches the server again
                         through new ones after `unhang()`
    drop_next(match)     swallow the next server→client WebSocket frame that `match` accepts
                         (e.g. the first `ack`) and cut every connection instead of delivering it
    drop_every(match)    the same for every frame `match` accepts, until `clear_drops()`
    flap(times, rng, …)  cut every connection `times` times at random moments drawn from a
                         seeded `random.Random` (a background thread; `wait_flapped()`)

It understands just enough of WebSocket (RFC 6455, tests/wsframes.py) to see frames: in a connection whose first
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
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.wsframes import DOWN, HEAD_END, MAX_HEAD, UP, Frame, parse_frame, strip_extensions

__all__ = ["DOWN", "UP", "FaultProxy", "Frame", "wait_for"]


class _Link:
    """One relayed connection: the device's socket, the server's, and a pump thread each way."""

    def __init__(self, proxy: FaultProxy, number: int, device: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.number = number
        self.device = device
        self.server = server
        self.websocket = False
        self.closed = False
        self.silent = False  # caught in a hang: relays nothing ever again
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
        if self.silent:
            return True  # into the blackhole: swallowed, and the connection stays up
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
        self._hanging = False
        self._held: set[socket.socket] = set()  # accepted while hanging: read, never answered
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

    def hang(self) -> None:
        """The network goes silent: new connections are accepted and never answered, open ones
        relay nothing more either way; none is closed."""
        with self._lock:
            self._hanging = True
            for link in self._links:
                link.silent = True

    def unhang(self) -> None:
        """New connections are relayed again (those caught in the hang stay silent)."""
        with self._lock:
            self._hanging = False

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
        with self._lock:
            held = list(self._held)
        for device in held:
            with contextlib.suppress(OSError):
                device.shutdown(socket.SHUT_RDWR)  # wakes its reader
            with contextlib.suppress(OSError):
                device.close()

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
            with self._lock:
                hanging = self._hanging
                if hanging:
                    self._held.add(device)
            if hanging:
                threading.Thread(target=self._swallow, args=(device,), name="faultproxy-held", daemon=True).start()
                continue
            self._relay(device)

    def _swallow(self, device: socket.socket) -> None:
        """A connection made into the hang: read and drop whatever the device sends until it gives up."""
        with contextlib.suppress(OSError):
            while device.recv(65536):
                pass
        with contextlib.suppress(OSError):
            device.close()
        with self._lock:
            self._held.discard(device)

    def _relay(self, device: socket.socket) -> None:
        """Connect a device's connection to the server and start relaying it."""
        try:
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
        except OSError:  # the server is down: so is this connection
            with contextlib.suppress(OSError):
                device.close()
            return
        for s in (device, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            # Blocked while the server connection was being made: block() has already cut
            # the links it knew, so this one must not slip through.
            blocked = self._blocked
            if not blocked:
                self.connections += 1
                link = _Link(self, self.connections, device, server)
                link.silent = self._hanging  # a hang that began while it was being made
                self._links.add(link)
        if blocked:
            for s in (device, server):
                with contextlib.suppress(OSError):
                    s.close()
            return
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
