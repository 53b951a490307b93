"""Connected idle devices one server process holds, and the memory each costs.

`outpost serve` (gunicorn, one gevent worker, SQLite) runs as a subprocess. N devices open a
WebSocket each, say hello (the server registers the device) and stay idle. The worker's
resident memory before and after gives KB per connection; a plain GET is timed while all N are
open (a thread-per-socket server hangs there once its threads are used up). The client is
asyncio in this process (deflate offered, as browsers do; OUTPOST_BENCH_NO_DEFLATE=1 to
offer none), far from being the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

from benchmarks import Report, median_ms, p95_ms
from benchmarks.serving import COMPRESSION, Device, progress, raise_open_file_limit, run_async, served

OPENING_AT_ONCE = 100  # handshakes in flight at a time
SETTLE_SECONDS = 2.0


def default_connections(records: int) -> int:
    """The suite's size: 20 for a smoke test, 500 by default, 2,000 at `--records 200000`."""
    return max(20, min(2000, records // 100))


def run(records: int, report: Report, connections: int | None = None) -> None:
    """Open `connections` idle authenticated sockets to one process and measure it."""
    from benchmarks.live import HttpSession

    n = connections or default_connections(records)
    limit = raise_open_file_limit()
    if n + 200 > limit:
        progress(f"open-file limit {limit}: capping at {limit - 200} connections")
        n = limit - 200
    with served("sqlite") as server:
        (worker,) = server.worker_pids()
        http = HttpSession(server.base, "east1")
        run_async(_measure(server.base, http.cookie, n, worker, report))


async def _measure(base: str, cookie: str, n: int, worker: int, report: Report) -> None:
    from benchmarks.served import rss_kb as measure_rss

    # Warm the worker (imports, pools, first sessions) so "before" is a steady state.
    warm = [await Device.connect(base, cookie) for _ in range(5)]
    for d in warm:
        await d.close()
    await asyncio.sleep(SETTLE_SECONDS)  # let the closed sockets' memory settle before measuring
    before = measure_rss(worker)
    progress(f"worker {worker}: {before / 1024:.1f} MB before; opening {n:,} sockets")
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    devices: list[Device] = []
    step = max(1, n // 10)

    async def open_one() -> None:
        async with gate:
            devices.append(await Device.connect(base, cookie))
            if len(devices) % step == 0:
                progress(f"{len(devices):,} / {n:,} open")

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(n)))
    opened = time.perf_counter() - t0
    await asyncio.sleep(SETTLE_SECONDS)
    after = measure_rss(worker)
    samples = []
    for _ in range(23):
        t1 = time.perf_counter()
        status = await asyncio.to_thread(_get, base + "/healthz")
        samples.append(time.perf_counter() - t1)
        assert status == 200
    samples = samples[3:]
    alive = await devices[-1].request({"type": "ping"})
    assert alive == {"type": "pong"}, alive
    per = (after - before) / n
    deflate = "deflate" if COMPRESSION else "no compression"
    report("idle sockets held, one process", n, "socks", f"gunicorn gevent worker, SQLite; hello, then idle; {deflate}")
    report("memory per connection", per, "KB", f"worker RSS {before / 1024:.0f} → {after / 1024:.0f} MB")
    report("open + hello rate", n / opened, "conn/s", f"{OPENING_AT_ONCE} handshakes in flight")
    report("GET /healthz with all open p50", median_ms(samples), "ms", f"{n:,} sockets open")
    report("GET /healthz with all open p95", p95_ms(samples), "ms", "")
    progress("closing")
    await asyncio.gather(*(d.close() for d in devices))


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
        return int(r.status)
