"""Reconnect storm: N devices come back at once after a server restart, and catch up.

`outpost serve` (gunicorn, one gevent worker, SQLite) runs as a subprocess. Each device is a
salesperson of its own (made before the server starts, each with a session), so the feed's scope
applies per user. The devices connect and say hello; then a writer pushes a few changes, so every
device's cursor is a little behind. The server is stopped gracefully (SIGTERM: each socket is
closed with 1012) and started again, and every device comes back as the phone does
(`GET /api/auth/me`, the socket, hello → welcome, pull until the feed says no more): first all at
once, then (after another restart) each after the random wait the phone draws on 1012
(webapp/static/js/sync.js, read from there). A thread samples `GET /healthz` throughout. Figures:
the time from the new process answering until the last device is caught up, each device's own
reconnect → caught up, and /healthz latency during the storm, each beside its target (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from benchmarks import Report, median_ms, p95_ms
from benchmarks.serving import Device, progress, raise_open_file_limit, run_async

TARGET_CAUGHT_UP_S = 15.0
TARGET_HEALTHZ_P95_MS = 100.0
BEHIND = 20  # changes each device misses while it is connected without pulling
UNIT = "Sales East"
SYNC_JS = Path(__file__).resolve().parent.parent / "webapp" / "static" / "js" / "sync.js"


def default_devices(records: int) -> int:
    """20 for a smoke test, 2,000 from `--records 200000` (the issue's figure)."""
    return max(20, min(2000, records // 100))


def restart_wait() -> tuple[float, float]:
    """The phone's wait after 1012, as (least, spread) seconds, read from sync.js (one source)."""
    js = SYNC_JS.read_text()
    least = int(re.search(r"BACKOFF_MIN_MS = ([\d_]+)", js)[1].replace("_", "")) / 2  # type: ignore[index]
    spread = int(re.search(r"RESTART_SPREAD_MS = ([\d_]+)", js)[1].replace("_", ""))  # type: ignore[index]
    return least / 1000, spread / 1000


def machine_load() -> str:
    """The load average and cores, as `uptime` tells them."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} on {os.cpu_count()} cores"


def prepare(url: str, records: int, count: int) -> tuple[list[str], str]:
    """The demo organisation, `count` salespeople of UNIT each with a session (cookies), and a
    writer's session (east1, same unit)."""
    from benchmarks.served import prepare_demo_database
    from webapp import create_app
    from webapp.crm.orgs import find_id, org_id_by_name
    from webapp.demo import DEMO_ORG
    from webapp.security.accounts import start_session
    from webapp.security.setup import new_user
    from webapp.services import services

    prepare_demo_database(url, records)
    app = create_app({"DATABASE_URL": url, "FAST_PASSWORD_HASH": True})
    svc = services(app)
    name = app.config["SESSION_COOKIE_NAME"]
    cookies = []
    with svc.db.session(write=True) as dbs:
        org = org_id_by_name(dbs, DEMO_ORG)
        model = svc.registry.model(dbs, org)
        unit = find_id(dbs, model, "businessunit", UNIT)
        for i in range(count):
            user = new_user(
                dbs, model, svc.hasher, f"storm-{i:05d}", "storm-password", f"Storm {i}", unit, ["Salesperson"]
            )
            cookies.append(f"{name}={start_session(dbs, org, user)[0]}")
        writer = find_id(dbs, model, "systemuser", "east1")
        if writer is None:
            raise RuntimeError("no east1 in the demo organisation")
        writer_cookie = f"{name}={start_session(dbs, org, writer)[0]}"
        dbs.commit()
    svc.db.dispose()
    return cookies, writer_cookie


def run(records: int, report: Report, devices: int | None = None) -> None:
    """Restart the server under `devices` connected devices, twice, and time their return."""
    from benchmarks.live import MANY
    from benchmarks.served import ServedServer, rss_kb

    n = devices or default_devices(records)
    limit = raise_open_file_limit()
    if 2 * n + 200 > limit:  # this process holds the devices' sockets, the server its own
        progress(f"open-file limit {limit}: capping at {(limit - 200) // 2} devices")
        n = (limit - 200) // 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'outpost.db'}"
        progress(f"preparing {records:,} accounts and {n:,} salespeople with a session each")
        cookies, writer = prepare(url, records, n)
        server = ServedServer(folder, url, env=MANY).start()
        try:
            run_async(_storms(server, cookies, writer, report, rss_kb))
        finally:
            server.stop()


async def _storms(server: Any, cookies: list[str], writer: str, report: Report, rss_kb: Any) -> None:
    n = len(cookies)
    progress(f"{n:,} devices connecting (hello, no pull)")
    gate = asyncio.Semaphore(100)

    async def first(cookie: str) -> Device:
        async with gate:
            return await Device.connect(server.base, cookie)

    devices = await asyncio.gather(*(first(c) for c in cookies))
    (worker,) = server.worker_pids()
    report("devices, each its own salesperson", n, "devs", f"{UNIT}; worker RSS {rss_kb(worker) / 1024:.0f} MB")
    least, spread = restart_wait()
    for mode in ("at once", "phone's jitter"):
        behind = await _fall_behind(server.base, writer)
        if mode != "at once":  # caught up since the first restart, so live: the changes come pushed
            await asyncio.gather(*(_pushed(d, behind) for d in devices))
        codes = await _restart(server, devices)
        restarted = sum(1 for c in codes if c == 1012)
        progress(f"{restarted:,} of {n:,} sockets closed with 1012; {mode}: reconnecting")
        waits = [0.0] * n if mode == "at once" else [least + random.random() * spread for _ in range(n)]
        with sample_healthz(server.base) as healthz:
            t0 = time.perf_counter()
            retries: list[int] = []
            results = await asyncio.gather(
                *(
                    _come_back(server.base, d, cookie, t0 + w, retries)
                    for d, cookie, w in zip(devices, cookies, waits, strict=True)
                )
            )
            total = time.perf_counter() - t0
        devices = [d for d, _ in results]
        own = [s for _, s in results]
        note = f"{n:,} devices {behind} changes behind; {machine_load()}"
        report(f"storm {mode}: closed with 1012", restarted, "socks", "SIGTERM (graceful restart)")
        report(f"storm {mode}: attempts tried again", len(retries), "tries", "refused or dropped; the phone's back-off")
        report(
            f"storm {mode}: until the last is caught up",
            total,
            "s",
            f"target ≤ {TARGET_CAUGHT_UP_S:.0f} s: {'met' if total <= TARGET_CAUGHT_UP_S else 'MISSED'}; {note}",
        )
        report(
            f"storm {mode}: one device's reconnect → caught up p50",
            median_ms(own),
            "ms",
            "auth/me, socket, hello, pull",
        )
        report(f"storm {mode}: one device's reconnect → caught up p95", p95_ms(own), "ms", "")
        p95 = p95_ms(healthz)
        report(f"storm {mode}: GET /healthz p50", median_ms(healthz), "ms", f"{len(healthz)} samples during the storm")
        report(
            f"storm {mode}: GET /healthz p95",
            p95,
            "ms",
            f"target < {TARGET_HEALTHZ_P95_MS:.0f} ms: {'met' if p95 < TARGET_HEALTHZ_P95_MS else 'MISSED'}",
        )
    await asyncio.gather(*(d.close() for d in devices))


async def _fall_behind(base: str, cookie: str) -> int:
    """The writer (east1, the devices' unit) creates BEHIND accounts they may all see."""
    writer = await Device.connect(base, cookie)
    ops = writer.next_ops([("account", str(uuid.uuid4()), {"name": f"Storm {i}"}) for i in range(BEHIND)])
    ack = await writer.request({"type": "push", "ops": ops})
    assert ack["type"] == "ack" and all(r["status"] == "applied" for r in ack["results"]), ack
    await writer.close()
    return BEHIND


async def _pushed(device: Device, count: int) -> None:
    """Read the live `changes` until `count` records arrived (the device keeps its old cursor, as
    if it had not stored them yet: it pulls them again after the restart)."""
    seen = 0
    while seen < count:
        frame = await device.receive(timeout=300)
        if frame["type"] == "changes":
            seen += len(frame["upserts"])


async def _restart(server: Any, devices: list[Device]) -> list[int | None]:
    """Stop the server gracefully (SIGTERM), collect each socket's close code, start it again."""
    await asyncio.to_thread(server.stop)
    codes = await asyncio.gather(*(_closed_with(d) for d in devices))
    await asyncio.to_thread(server.start)
    return codes


async def _closed_with(device: Device) -> int | None:
    with contextlib.suppress(Exception):  # closed: its code is what we want
        await asyncio.wait_for(device.ws.wait_closed(), 30)
    code = device.ws.close_code
    return int(code) if code is not None else None


async def _come_back(base: str, old: Device, cookie: str, at: float, retries: list[int]) -> tuple[Device, float]:
    """What the phone does after 1012: wait, ask who it is, open the socket with the same device
    id, hello, and pull from its cursor until the feed says no more; an attempt that fails (the
    server refused or dropped it) is tried again after the phone's back-off, counted in `retries`.
    Returns the device and the seconds from its start to caught up."""
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    started = time.perf_counter()
    attempt = 0
    while True:
        try:
            device = await _attempt(base, old, cookie)
            return device, time.perf_counter() - started
        except (OSError, TimeoutError, ValueError, IndexError, AssertionError, ConnectionClosed, InvalidHandshake):
            retries.append(1)
            base_wait = min(30.0, 2.0**attempt)  # sync.js: BACKOFF_MIN_MS · 2^attempt, up to 30 s
            attempt += 1
            await asyncio.sleep(base_wait / 2 + random.random() * base_wait)


async def _attempt(base: str, old: Device, cookie: str) -> Device:
    status = await _get_status(base, "/api/auth/me", cookie)
    assert status == 200, status
    device = await Device.connect(base, cookie, device_id=old.device_id)
    target = device.cursor  # where the server stood at welcome
    cursor = old.cursor
    while cursor < target:
        await device.send({"type": "pull", "cursor": cursor})
        while True:
            frame = await device.receive()
            assert frame["type"] == "changes", frame
            cursor = frame["cursor"]
            if not frame["more"]:
                break
    device.cursor = cursor
    return device


async def _get_status(base: str, path: str, cookie: str) -> int:
    """One HTTP/1.1 GET on a fresh connection, as a browser might (status only)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 60)).split()[1])  # IndexError: closed unanswered
        await reader.read()
        return status
    finally:
        writer.close()


@contextlib.contextmanager
def sample_healthz(base: str, every: float = 0.05) -> Iterator[list[float]]:
    """`GET /healthz` timed every `every` s on a thread of its own while the block runs."""
    samples: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            # A timeout or a refusal counts as the time it took.
            with contextlib.suppress(OSError), urllib.request.urlopen(base + "/healthz", timeout=30) as r:
                r.read()
            samples.append(time.perf_counter() - t)
            stop.wait(every)

    thread = threading.Thread(target=loop, name="healthz", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(60)
