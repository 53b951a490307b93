"""What the server benchmarks share: `outpost serve` on a throw-away database, and devices.

`served(kind)` prepares a database (a SQLite file, or a fresh schema on the PostgreSQL server
at OUTPOST_BENCH_PG_URL / OUTPOST_TEST_PG_URL) with the demo organisation, runs `outpost
serve` (gunicorn, one gevent worker) on it as a subprocess, and cleans up afterwards. Devices
are asyncio WebSocket clients (the `websockets` library): thousands fit in one thread of this
process, so the client is not what limits the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

COMPRESSION = None if os.environ.get("OUTPOST_BENCH_NO_DEFLATE") else "deflate"
PG_URL = os.environ.get(
    "OUTPOST_BENCH_PG_URL",
    os.environ.get("OUTPOST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on a thread of its own: the caller's thread may already run a loop
    (Playwright's sync API keeps one running in the test process), where `asyncio.run` refuses."""
    result: list[T] = []
    failure: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=main, name="bench-asyncio")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def progress(message: str) -> None:
    """A progress line on stderr (the table goes to stdout at the end)."""
    print(f"    {message}", file=sys.stderr, flush=True)


def raise_open_file_limit() -> int:
    """Every socket is a file descriptor: raise this process's soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str | None]:
    """A fresh schema on the PostgreSQL server (its URL), or None when none answers; dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(PG_URL)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    except Exception as exc:  # any connection failure means: no PostgreSQL here
        engine.dispose()
        progress(f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}): its figures are skipped")
        yield None
        return
    try:
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        engine.dispose()


@contextlib.contextmanager
def served(kind: str = "sqlite", records: int = 0, env: dict[str, str] | None = None) -> Iterator[Any]:
    """`outpost serve` (one gevent worker) on a new demo database; None if `kind` is unavailable.
    `env`: more settings for the server (the caps on sockets and devices are always lifted)."""
    from benchmarks.live import MANY
    from benchmarks.served import ServedServer, prepare_demo_database

    raise_open_file_limit()  # the server inherits it
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        if kind == "sqlite":
            url: str | None = f"sqlite:///{folder / 'outpost.db'}"
        else:
            url = stack.enter_context(pg_schema_url())
        if url is None:
            yield None
            return
        prepare_demo_database(url, records)
        server = ServedServer(folder, url, env={**MANY, **(env or {})}).start()
        try:
            yield server
        finally:
            server.stop()


class Device:
    """A device on an asyncio WebSocket: hello, pull, push, and frames in arrival order."""

    def __init__(self, ws: Any, device_id: str) -> None:
        self.ws = ws
        self.device_id = device_id
        self.seq = 0
        self.cursor = 0  # the server's change number at hello

    @classmethod
    async def connect(cls, base: str, cookie: str, device_id: str | None = None) -> Device:
        """Open the socket (with the session cookie and the app's origin) and say hello."""
        from websockets.asyncio.client import connect

        ws = await connect(
            base.replace("http://", "ws://") + "/api/sync",
            origin=base,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
            proxy=None,
            ping_interval=None,  # the protocol's own heartbeat is enough
            max_size=16 << 20,
            open_timeout=60,
            compression=COMPRESSION,
        )
        device = cls(ws, device_id or str(uuid.uuid4()))
        welcome = await device.request({"type": "hello", "device_id": device.device_id, "app_version": "bench"})
        assert welcome["type"] == "welcome", welcome
        device.seq = welcome["next_seq"] - 1
        device.cursor = welcome["cursor"]
        return device

    async def send(self, msg: dict[str, Any]) -> None:
        """Send one frame."""
        await self.ws.send(json.dumps(msg, separators=(",", ":")))

    async def receive(self, timeout: float = 60) -> dict[str, Any]:
        """The next frame other than a heartbeat."""
        while True:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("type") != "ping":
                return frame

    async def request(self, msg: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send a frame and return the next answer."""
        await self.send(msg)
        return await self.receive(timeout)

    async def catch_up(self, whole: bool = False) -> None:
        """Pull the feed from the cursor `hello` gave (a device already in sync), or from 0 when
        `whole`; from then on the server pushes changes live."""
        from webapp.sync.channel import MAX_FEED_FRAMES  # frames the server sends for one pull

        cursor = 0 if whole else self.cursor
        while True:
            await self.send({"type": "pull", "cursor": cursor})
            for _ in range(MAX_FEED_FRAMES):
                frame = await self.receive()
                assert frame["type"] == "changes", frame
                cursor = frame["cursor"]
                if not frame["more"]:
                    return

    def next_ops(self, changes: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Operations for (entity, id, changes) creates, numbered from this device's next seq."""
        ops = []
        for entity, rid, values in changes:
            self.seq += 1
            ops.append(
                {
                    "op_id": str(uuid.uuid4()),
                    "seq": self.seq,
                    "kind": "create",
                    "entity": entity,
                    "id": rid,
                    "base_version": None,
                    "changes": values,
                }
            )
        return ops

    async def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(Exception):  # a socket the server already closed
            await self.ws.close()


class Crowd:
    """`count` protocol-level devices on a background asyncio loop (for a benchmark that runs
    Playwright's sync API in this thread), noting when each record id reaches each device. `cookie`:
    one session for every device, or one per device (each signed in as its own user)."""

    def __init__(self, base: str, cookie: str | list[str], count: int) -> None:
        self.base = base
        self.cookies = [cookie] * count if isinstance(cookie, str) else list(cookie)
        if len(self.cookies) != count:
            raise ValueError(f"{len(self.cookies)} sessions for {count} devices")
        self.count = count
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="crowd", daemon=True)

    def __enter__(self) -> Crowd:
        self._thread.start()
        if not self._ready.wait(120) or self._failed is not None:
            raise RuntimeError(f"the crowd of {self.count} devices did not connect: {self._failed!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def arrivals(self, rid: str, timeout: float = 60) -> list[float]:
        """perf_counter times at which every device received record `rid` (waits for all of them)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = list(self._seen.get(rid, ()))
            if len(seen) >= self.count:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(seen)} of {self.count} devices received {rid}")
            time.sleep(0.01)  # polling a condition (every device has it) with a deadline

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            devices = [await Device.connect(self.base, cookie) for cookie in self.cookies]
            await asyncio.gather(*(d.catch_up() for d in devices))
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise
        readers = [asyncio.create_task(self._read(d)) for d in devices]
        self._ready.set()
        await self._stop.wait()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(d.close() for d in devices))

    async def _read(self, device: Device) -> None:
        while True:
            try:
                frame = await device.receive(timeout=3600)
            except TimeoutError:
                continue
            if frame.get("type") != "changes":
                continue
            now = time.perf_counter()
            with self._lock:
                for upsert in frame["upserts"]:
                    rid = upsert["record"].get(f"{upsert['entity']}id")  # a lead's or an account's
                    if rid:
                        self._seen.setdefault(rid, []).append(now)
