"""A real Outpost server process for benchmarks and tests, and a protocol-level sync client.

It lives here, not in tests/, because the benchmarks need it and must stand without tests/;
the tests import it from here.

"Offline" in a test means the server process is really stopped; "back online" means it is
really started again on the same port and database. The client speaks PROTOCOL.md §5 over a
real WebSocket, as a device would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import simple_websocket

from webapp.demo import DEMO_PASSWORD

# For servers that hold many sockets or devices of one user on purpose (serving tests, benchmarks):
# the caps per user (issue 17) lifted.
MANY = {"OUTPOST_MAX_SOCKETS_PER_USER": "100000", "OUTPOST_MAX_DEVICES_PER_USER": "100000"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`outpost demo` as a subprocess on a fixed port and database, stoppable and restartable."""

    def __init__(self, folder: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{folder / 'outpost.db'}"
        self.env = {**os.environ, "DATABASE_URL": self.database_url, **(env or {})}
        self.log_path = folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> LiveServer:
        """Start the process and wait until it answers /healthz."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "demo", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_healthy(self.proc, self.base, timeout, lambda: self.log_path.read_text(errors="replace"))
        return self

    def stop(self) -> None:
        """Stop the process (gracefully)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the process dies wherever it is."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class HttpSession:
    """A signed-in HTTP client (cookie jar + CSRF header)."""

    def __init__(self, base: str, username: str, password: str = DEMO_PASSWORD, org: str = "contoso") -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        status, body = self.call("POST", "/api/auth/login", {"org": org, "username": username, "password": password})
        if status != 200:
            raise RuntimeError(f"sign-in failed: {status} {body}")
        self.csrf = body["csrf_token"]
        self.user = body["user"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One JSON request; returns (status, body)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if getattr(self, "csrf", None):
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    @property
    def cookie(self) -> str:
        """The Cookie header value for this session."""
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


class SyncClient:
    """A device speaking the sync protocol over a real WebSocket."""

    def __init__(self, http: HttpSession, device_id: str | None = None, origin: str | None = None) -> None:
        self.http = http
        self.device_id = device_id or str(uuid.uuid4())
        url = http.base.replace("http://", "ws://") + "/api/sync"
        # simple-websocket sends `Host: 127.0.0.1` without the port (browsers send host:port),
        # so the app's own origin, as the server sees it here, has no port either.
        own = f"http://{urlsplit(http.base).hostname}"
        self.ws = simple_websocket.Client.connect(url, headers={"Cookie": http.cookie, "Origin": origin or own})

    def send(self, msg: dict[str, Any]) -> None:
        """Send one frame."""
        self.ws.send(json.dumps(msg))

    def receive(self, timeout: float = 10, skip: tuple[str, ...] = ("ping",)) -> dict[str, Any]:
        """The next frame (heartbeats skipped); raises TimeoutError when none arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame arrived in time")
            text = self.ws.receive(timeout=left)
            if text is None:
                continue
            frame = json.loads(text)
            if frame.get("type") not in skip:
                return frame

    def request(self, msg: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send a frame and return the next answer."""
        self.send(msg)
        return self.receive(timeout)

    def hello(self) -> dict[str, Any]:
        """hello → welcome."""
        return self.request({"type": "hello", "device_id": self.device_id, "app_version": "test"})

    def close(self) -> None:
        """Close the socket (ignoring a socket that is already gone)."""
        with contextlib.suppress(Exception):  # closing a dead socket may fail in many ways
            self.ws.close()


def wait_healthy(proc: subprocess.Popen[bytes], base: str, timeout: float, log: Callable[[], str]) -> None:
    """Return once `base`/healthz answers 200; raise with the end of `log()` if the process exits
    or the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not answer within {timeout} s:\n{log()[-3000:]}")
        time.sleep(0.05)  # polling a condition (the server answering) with a deadline
