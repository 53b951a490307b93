"""Live push to 50 devices: a change on one device, received by the 49 others.

`outpost serve` (one gevent worker, SQLite). 50 protocol-level devices connect and catch up;
one of them creates a lead, and the time from sending its push to each other device receiving
the `changes` frame that carries the lead is one sample. (The browser's own figure, a change
on device A reaching device B's IndexedDB, is in the `device` suite.)
"""

from __future__ import annotations

import asyncio
import time
import uuid

from benchmarks import Report, median_ms, p95_ms
from benchmarks.serving import Device, progress, run_async, served

DEVICES = 50


def default_rounds(records: int) -> int:
    """Changes sent: 3 for a smoke test, 30 by default."""
    return 3 if records < 10_000 else 30


def run(records: int, report: Report, devices: int = DEVICES, rounds: int | None = None) -> None:
    """Measure change → received on `devices - 1` devices, `rounds` times."""
    from benchmarks.live import HttpSession

    rounds = rounds or default_rounds(records)
    with served("sqlite") as server:
        cookie = HttpSession(server.base, "admin").cookie
        run_async(_measure(server.base, cookie, devices, rounds, report))


async def _measure(base: str, cookie: str, count: int, rounds: int, report: Report) -> None:
    progress(f"{count} devices connecting and catching up")
    devices = [await Device.connect(base, cookie) for _ in range(count)]
    await asyncio.gather(*(d.catch_up() for d in devices))
    writer, receivers = devices[0], devices[1:]
    samples: list[float] = []
    slowest: list[float] = []
    try:
        for i in range(rounds):
            rid = str(uuid.uuid4())
            ops = writer.next_ops([("lead", rid, {"subject": f"Push {i}", "lastname": "P"})])
            t0 = time.perf_counter()
            await writer.send({"type": "push", "ops": ops})
            arrivals = await asyncio.gather(*(_arrival(d, rid) for d in receivers), _ack(writer))
            latencies = [t - t0 for t in arrivals[:-1]]
            samples.extend(latencies)
            slowest.append(max(latencies))
            if (i + 1) % max(1, rounds // 5) == 0:
                progress(f"{i + 1} / {rounds} changes pushed")
    finally:
        await asyncio.gather(*(d.close() for d in devices))
    note = f"{len(receivers)} devices, {rounds} changes each"
    report(f"live push to {len(receivers)} devices p50", median_ms(samples), "ms", note)
    report(f"live push to {len(receivers)} devices p95", p95_ms(samples), "ms", "push sent → changes received")
    report("last of them p50", median_ms(slowest), "ms", "until every device has the change")


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
