"""Live push: to 50 devices, to 1,000 on one process, and what a change costs per receiver.

`outpost serve` (one gevent worker, SQLite; rate limits off: a thousand devices of one user
would spend its frame budget). The time from a device sending its push to another receiving
the `changes` frame that carries the record is one sample. (The browser's own figure, a
change on device A reaching device B's IndexedDB, is in the `device` suite.)

1. 50 admin devices: one creates a lead, the 49 others receive it.
2. The crowd: an admin writer and one admin receiver; then 999 devices of west1 (a
   salesperson: leads at user depth) join. The server's CPU per change (the worker's user +
   system time over the rounds) is measured for a change seen by 2 devices with 2 connected,
   seen by 2 with 1,001 connected (an admin's lead: west1 may not see it), and seen by 1,000
   (west1's lead, created from one of its devices) — whose arrivals give the 1,000-device p95.
   Live fan-out (webapp/sync/fanout.py) reads each change once; the cost of one should grow
   with its receivers, not with the devices connected.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from benchmarks import Report, median_ms, p95_ms
from benchmarks.serving import Device, progress, run_async, served

DEVICES = 50
CROWD = 1000
NO_LIMITS = {"OUTPOST_RATE_LIMITS": "off"}
OPENING_AT_ONCE = 100


def default_rounds(records: int) -> int:
    """Changes sent: 3 for a smoke test, 30 by default."""
    return 3 if records < 10_000 else 30


def default_crowd(records: int) -> int:
    """Devices in the crowd: 100 for a smoke test, 1,000 by default."""
    return 100 if records < 10_000 else CROWD


def run(records: int, report: Report, devices: int = DEVICES, rounds: int | None = None) -> None:
    """Measure change → received on `devices - 1` devices, then the crowd, `rounds` times each."""
    from benchmarks.live import HttpSession

    rounds = rounds or default_rounds(records)
    with served("sqlite", env=NO_LIMITS) as server:
        (worker,) = server.worker_pids()
        admin = HttpSession(server.base, "admin").cookie
        west = HttpSession(server.base, "west1").cookie
        run_async(_measure(server.base, admin, devices, rounds, report))
        run_async(_crowd(server.base, admin, west, worker, default_crowd(records), rounds, report))


async def _measure(base: str, cookie: str, count: int, rounds: int, report: Report) -> None:
    progress(f"{count} devices connecting and catching up")
    devices = [await Device.connect(base, cookie) for _ in range(count)]
    await asyncio.gather(*(d.catch_up() for d in devices))
    writer, receivers = devices[0], devices[1:]
    try:
        samples, slowest = await _rounds(writer, receivers, rounds, "admin")
    finally:
        await asyncio.gather(*(d.close() for d in devices))
    note = f"{len(receivers)} devices, {rounds} changes each"
    report(f"live push to {len(receivers)} devices p50", median_ms(samples), "ms", note)
    report(
        f"live push to {len(receivers)} devices p95",
        p95_ms(samples),
        "ms",
        "push sent → changes received; target ≤ 100 ms",
    )
    report("last of them p50", median_ms(slowest), "ms", "until every device has the change")


async def _crowd(base: str, admin: str, west: str, worker: int, size: int, rounds: int, report: Report) -> None:
    writer, watcher = await Device.connect(base, admin), await Device.connect(base, admin)
    await asyncio.gather(writer.catch_up(), watcher.catch_up())
    crowd: list[Device] = []
    try:
        alone = await _cost(worker, writer, [watcher], rounds)
        progress(f"{size - 1} devices of west1 connecting and catching up")
        gate = asyncio.Semaphore(OPENING_AT_ONCE)

        async def join() -> None:
            async with gate:
                device = await Device.connect(base, west)
                await device.catch_up()
                crowd.append(device)

        await asyncio.gather(*(join() for _ in range(size - 1)))
        among = await _cost(worker, writer, [watcher], rounds)
        progress(f"a west1 change to {size} devices, {rounds} times")
        t0 = _cpu_ms(worker)
        samples, slowest = await _rounds(crowd[0], [*crowd[1:], watcher], rounds, "west1")
        shared = (_cpu_ms(worker) - t0) / rounds
    finally:
        await asyncio.gather(*(d.close() for d in [writer, watcher, *crowd]))
    connected = size + 1
    report(f"live push to {size} devices p50", median_ms(samples), "ms", f"{connected:,} connected, {rounds} changes")
    report(f"live push to {size} devices p95", p95_ms(samples), "ms", "one process; target ≤ 250 ms")
    report(f"last of the {size} p50", median_ms(slowest), "ms", "until every device has the change")
    report("server CPU per change, seen by 2 of 2", alone, "ms", "admin's lead: writer and one more admin device")
    report(
        f"server CPU per change, seen by 2 of {connected:,}",
        among,
        "ms",
        "the same change with west1's devices connected: target ≈ the line above",
    )
    report(f"server CPU per change, seen by {size:,} of {connected:,}", shared, "ms", "west1's lead")


async def _cost(worker: int, writer: Device, receivers: list[Device], rounds: int) -> float:
    """The worker's CPU milliseconds per change the admin writer makes (seen by admin devices)."""
    t0 = _cpu_ms(worker)
    await _rounds(writer, receivers, rounds, "admin")
    return (_cpu_ms(worker) - t0) / rounds


async def _rounds(writer: Device, receivers: list[Device], rounds: int, who: str) -> tuple[list[float], list[float]]:
    """`rounds` leads created by `writer`; each receiver's arrival times, and the slowest's."""
    samples: list[float] = []
    slowest: list[float] = []
    for i in range(rounds):
        rid = str(uuid.uuid4())
        ops = writer.next_ops([("lead", rid, {"subject": f"Push {who} {i}", "lastname": "P"})])
        t0 = time.perf_counter()
        await writer.send({"type": "push", "ops": ops})
        arrivals = await asyncio.gather(*(_arrival(d, rid) for d in receivers), _ack(writer))
        latencies = [t - t0 for t in arrivals[:-1]]
        samples.extend(latencies)
        slowest.append(max(latencies))
        if (i + 1) % max(1, rounds // 5) == 0:
            progress(f"{i + 1} / {rounds} changes pushed ({len(receivers)} receivers)")
    return samples, slowest


def _cpu_ms(pid: int) -> float:
    """A process's user + system CPU time so far, in milliseconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks: Any = int(fields[11]) + int(fields[12])  # utime, stime (after the state field)
    return float(ticks) * 1000 / os.sysconf("SC_CLK_TCK")


async def _arrival(device: Device, rid: str) -> float:
    """When `device` receives the `changes` frame carrying record `rid`."""
    while True:
        frame = await device.receive(timeout=60)
        if frame.get("type") == "changes" and any(u["record"].get("leadid") == rid for u in frame["upserts"]):
            return time.perf_counter()


async def _ack(device: Device) -> float:
    """The writer's ack (and its own change coming back, which it skips)."""
    while True:
        frame = await device.receive(timeout=60)
        if frame.get("type") == "ack":
            assert frame["results"][0]["status"] == "applied", frame
            return time.perf_counter()
