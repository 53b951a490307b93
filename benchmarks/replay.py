"""Server replay throughput: the same N operations on SQLite and on PostgreSQL, three ways.

`outpost serve` (one gevent worker) on a fresh demo database of each kind; one device sends N
account creates:
- over the WebSocket in batches of 100 (as the app's queue does), each batch waiting for its ack;
- over the WebSocket one operation per frame (strict request/ack);
- one HTTP request per operation (`POST /api/sync/push`, keep-alive, session cookie + CSRF).
Figures are operations per second, and the HTTP way against the batched socket as a ratio.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from benchmarks import Report
from benchmarks.serving import Device, progress, run_async, served

BATCH = 100  # the app's PUSH_BATCH (webapp/static/js/sync.js)


def default_ops(records: int) -> int:
    """Operations per way: 100 for a smoke test, 2,000 by default, 5,000 at `--records 200000`."""
    return max(100, min(5000, records // 25))


def creates(n: int, label: str) -> list[tuple[str, str, dict[str, str]]]:
    """N account creates."""
    return [("account", str(uuid.uuid4()), {"name": f"{label} {i:05d}"}) for i in range(n)]


def run(records: int, report: Report, ops: int | None = None) -> None:
    """Replay N operations each way on SQLite and PostgreSQL (when one answers)."""
    from tests.live import HttpSession

    n = ops or default_ops(records)
    batched: dict[str, float] = {}
    for kind in ("sqlite", "postgresql"):
        with served(kind) as server:
            if server is None:
                continue
            http = HttpSession(server.base, "admin")
            progress(f"{kind}: {n:,} operations in batches of {BATCH} over the WebSocket")
            rate = run_async(_socket(server.base, http.cookie, creates(n, "Batched"), BATCH))
            batched[kind] = rate
            report(f"replay {kind}, socket, batches of {BATCH}", rate, "ops/s", f"{n:,} creates, acked per batch")
            progress(f"{kind}: {n:,} operations one frame each")
            single = run_async(_socket(server.base, http.cookie, creates(n, "Single"), 1))
            report(f"replay {kind}, socket, one op a frame", single, "ops/s", "strict request/ack")
            progress(f"{kind}: {n:,} operations one HTTP request each")
            per_request = _http(server.base, http, creates(n, "Http"))
            report(f"replay {kind}, HTTP, one op a request", per_request, "ops/s", "POST /api/sync/push, keep-alive")
            report(f"replay {kind}, socket batches vs HTTP", rate / per_request, "x", "batched socket / per-request")
    if len(batched) == 2:
        report("replay SQLite vs PostgreSQL", batched["sqlite"] / batched["postgresql"], "x", "batched socket")


async def _socket(base: str, cookie: str, todo: list[tuple[str, str, dict[str, str]]], batch: int) -> float:
    device = await Device.connect(base, cookie)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(todo), batch):
            ops = device.next_ops(todo[start : start + batch])
            ack = await device.request({"type": "push", "ops": ops})
            assert ack["type"] == "ack" and len(ack["results"]) == len(ops), ack
            assert all(r["status"] == "applied" for r in ack["results"]), ack["results"][0]
        return len(todo) / (time.perf_counter() - t0)
    finally:
        await device.close()


def _http(base: str, session: Any, todo: list[tuple[str, str, dict[str, str]]]) -> float:
    """One POST per operation on one keep-alive connection (`session`: a signed-in HttpSession)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    device_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Cookie": session.cookie, "X-CSRF-Token": session.csrf}
    try:
        t0 = time.perf_counter()
        for seq, (entity, rid, values) in enumerate(todo, start=1):
            op = {"op_id": str(uuid.uuid4()), "seq": seq, "kind": "create", "entity": entity, "id": rid}
            op.update(base_version=None, changes=values)
            body = json.dumps({"device_id": device_id, "app_version": "bench", "ops": [op]})
            conn.request("POST", "/api/sync/push", body=body, headers=headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            assert resp.status == 200 and answer["results"][0]["status"] == "applied", answer
        return len(todo) / (time.perf_counter() - t0)
    finally:
        conn.close()
