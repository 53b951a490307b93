"""Server replay throughput: the same N operations on SQLite and on PostgreSQL, four ways.

A fresh demo database of each kind (with `--records` bulk accounts); one device sends N
operations:
- server side: the sync channel driven in this process exactly as the socket handler drives it
  (JSON frame in, session check, replay, commit, ack frame out), frames of 100 account creates
  and then frames of 100 updates to distinct accounts, each frame committed before its ack;
  the median of ROUNDS rounds, and the SQL statements per operation (issue 13's target:
  ≥ 5,000 ops/s on SQLite, ≥ 3,000 on PostgreSQL);
- over the WebSocket of `outpost serve` (one gevent worker) in batches of 100 (as the app's
  queue does), each batch waiting for its ack;
- over the WebSocket one operation per frame (strict request/ack);
- one HTTP request per operation (`POST /api/sync/push`, keep-alive, session cookie + CSRF).
Figures are operations per second, and the batched socket against the HTTP way as a ratio
(target: at least 20 times).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from benchmarks import Report
from benchmarks.serving import Device, progress, run_async, served

BATCH = 100  # the app's PUSH_BATCH (webapp/static/js/sync.js)
ROUNDS = 5  # server-side rounds; the median is reported
SOCKET_ROUNDS = 3  # batched socket rounds; the median is reported
TARGET_SERVER = {"sqlite": 5000.0, "postgresql": 3000.0}  # ops/s, issue 13
TARGET_RATIO = 20.0  # batched socket vs one HTTP request per operation


def beside(value: float, target: float, unit: str) -> str:
    """`(target ≥ 5,000 ops/s: met)` — a figure's target and whether it is met."""
    return f"(target ≥ {target:,.0f} {unit}: {'met' if value >= target else 'MISSED'})"


def default_ops(records: int) -> int:
    """Operations per way: 100 for a smoke test, 2,000 by default, 5,000 at `--records 200000`."""
    return max(100, min(5000, records // 25))


def creates(n: int, label: str) -> list[tuple[str, str, dict[str, str]]]:
    """N account creates."""
    return [("account", str(uuid.uuid4()), {"name": f"{label} {i:05d}"}) for i in range(n)]


def run(records: int, report: Report, ops: int | None = None) -> None:
    """Replay N operations each way on SQLite and PostgreSQL (when one answers)."""
    from benchmarks.live import HttpSession

    n = ops or default_ops(records)
    batched: dict[str, float] = {}
    for kind in ("sqlite", "postgresql"):
        with served(kind, records) as server:
            if server is None:
                continue
            size = f"{n:,} ops, {records:,} accounts in the database"
            progress(f"{kind}: server side, {ROUNDS} rounds of {n:,} creates then {n:,} updates, frames of {BATCH}")
            side = server_side(server.database_url, n)
            target = TARGET_SERVER[kind]
            for what in ("creates", "updates"):
                rate = side[f"{what} ops/s"]
                report(
                    f"replay {kind}, server side, {what}",
                    rate,
                    "ops/s",
                    f"median of {ROUNDS}; {size} {beside(rate, target, 'ops/s')}",
                )
                report(
                    f"replay {kind}, SQL statements per op, {what}",
                    side[f"{what} statements/op"],
                    "stmts",
                    f"frames of {BATCH} (was ~9 per op one at a time)",
                )
            http = HttpSession(server.base, "admin")
            progress(f"{kind}: {SOCKET_ROUNDS} rounds of {n:,} operations in batches of {BATCH} over the WebSocket")
            rates = [
                run_async(_socket(server.base, http.cookie, creates(n, f"Batched {r}"), BATCH))
                for r in range(SOCKET_ROUNDS)
            ]
            rate = statistics.median(rates)
            batched[kind] = rate
            report(
                f"replay {kind}, socket, batches of {BATCH}",
                rate,
                "ops/s",
                f"median of {SOCKET_ROUNDS}; {n:,} creates, acked per batch",
            )
            progress(f"{kind}: {n:,} operations one frame each")
            single = run_async(_socket(server.base, http.cookie, creates(n, "Single"), 1))
            report(f"replay {kind}, socket, one op a frame", single, "ops/s", "strict request/ack")
            progress(f"{kind}: {n:,} operations one HTTP request each")
            per_request = _http(server.base, http, creates(n, "Http"))
            report(f"replay {kind}, HTTP, one op a request", per_request, "ops/s", "POST /api/sync/push, keep-alive")
            ratio = rate / per_request
            report(
                f"replay {kind}, socket batches vs HTTP",
                ratio,
                "x",
                f"batched socket / per-request {beside(ratio, TARGET_RATIO, 'x')}",
            )
    if len(batched) == 2:
        report("replay SQLite vs PostgreSQL", batched["sqlite"] / batched["postgresql"], "x", "batched socket")


def server_side(database_url: str, n: int) -> dict[str, float]:
    """The server's own work for N creates and then N updates to distinct records, in frames of
    BATCH: a `Channel` fed JSON text as the socket handler feeds it, in this process (no
    network, no client). Median ops/s of ROUNDS rounds, and SQL statements per operation."""
    from sqlalchemy import event, select

    from webapp import create_app
    from webapp.security.accounts import start_session
    from webapp.services import services
    from webapp.sync.channel import Channel

    app = create_app({"DATABASE_URL": database_url, "SCHEMA_SETUP": "none", "RATE_LIMITS": False})
    svc = services(app)
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    engines = {svc.db.read_engine, svc.db.write_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        with app.app_context():
            with svc.db.session(write=True) as s:
                users = svc.registry.model(s, _demo_org(s)).tables["systemuser"]
                org_id, user_id = s.execute(
                    select(users.c.organizationid, users.c.systemuserid).where(users.c.username == "admin")
                ).one()
                token, _ = start_session(s, org_id, user_id)
                s.commit()
            channel = Channel(app, token, org_id, user_id, services=svc)
            device = str(uuid.uuid4())
            assert channel.receive(json.dumps({"type": "hello", "device_id": device}))[0]["type"] == "welcome"
            seq = 0
            figures: dict[str, list[float]] = {"creates": [], "updates": []}
            statements: dict[str, list[float]] = {"creates": [], "updates": []}
            for r in range(ROUNDS):
                ids = [str(uuid.uuid4()) for _ in range(n)]
                for what in ("creates", "updates"):
                    frames = []
                    for start in range(0, n, BATCH):
                        ops = []
                        for i in ids[start : start + BATCH]:
                            seq += 1
                            op = {"op_id": str(uuid.uuid4()), "seq": seq, "entity": "account", "id": i}
                            if what == "creates":
                                op.update(kind="create", base_version=None, changes={"name": f"Server {r} {i[:8]}"})
                            else:
                                op.update(kind="update", base_version=None, changes={"telephone1": f"555-{r}"})
                            ops.append(op)
                        frames.append(json.dumps({"type": "push", "ops": ops}))
                    counted[0] = 0
                    t0 = time.perf_counter()
                    for text in frames:
                        ack = channel.receive(text)
                        assert ack[0]["type"] == "ack", ack
                        assert all(x["status"] == "applied" for x in ack[0]["results"]), ack[0]["results"][0]
                    figures[what].append(n / (time.perf_counter() - t0))
                    statements[what].append(counted[0] / n)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
        svc.db.dispose()
    out = {f"{w} ops/s": statistics.median(v) for w, v in figures.items()}
    out.update({f"{w} statements/op": statistics.median(v) for w, v in statements.items()})
    return out


def _demo_org(session: Any) -> str:
    from sqlalchemy import select

    from webapp.crm.tables import organization
    from webapp.demo import DEMO_ORG

    return str(
        session.execute(select(organization.c.organizationid).where(organization.c.name == DEMO_ORG)).scalar_one()
    )


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
