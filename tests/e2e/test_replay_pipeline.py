"""The phone pushes its queue pipelined (issue 14 item 5), in a real Chromium against the real server.

Up to four push frames of up to 100 ops are in flight at once, read from IndexedDB in chunks
after the last seq sent, their acks matched by seq. Each test queues hundreds of changes
offline and checks, through the fault proxy's record of the frames and the server's operation
ledger and change log, that every op was applied exactly once and in seq order, whatever broke
on the way: the server really stopped and started again, the socket cut mid-drain, a push frame
lost (the server answers `seq_gap`), and an op the server refuses in the middle of the queue.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page
from sqlalchemy import select

from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import CTX, call, database, sign_in, status, wait_for, wait_synced
from tests.e2e.test_faults import device_id, device_view, network_down, network_up
from tests.faultproxy import UP, FaultProxy
from tests.faultproxy import wait_for as proxy_wait_for
from webapp.crm.tables import changelog
from webapp.sync.tables import opledger

WINDOW = 4  # PUSH_WINDOW in webapp/static/js/sync.js
BATCH = 100  # PUSH_BATCH
DRAIN_MS = 240_000  # a loaded 2-core machine replaying 1,000 ops, reconnects included


# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


def queue_creates(page: Page, names: list[str]) -> list[str]:
    """Create accounts offline through the app's data layer, one op each; their ids in order."""
    return call(  # type: ignore[no-any-return]
        page,
        f"""async (names) => {{
            const ids = [];
            for (const name of names) ids.push(await {CTX}.data.create("account", {{ name }}));
            return ids;
        }}""",
        names,
        timeout=300_000,
    )


def come_back(page: Page, proxy: FaultProxy, context: BrowserContext) -> None:
    """The network is back; wake the loop rather than wait out its back-off."""
    network_up(proxy, context)
    call(page, f"() => {CTX}.sync.kick()")


def ledger_of(server: LiveServer, device: str) -> list[Any]:
    """The device's ledger rows in seq order, after checking each op changed its record exactly once."""
    with database(server) as engine, engine.connect() as conn:
        ledger = conn.execute(
            select(opledger.c.seq, opledger.c.op_id, opledger.c.kind, opledger.c.recordid, opledger.c.status)
            .where(opledger.c.deviceid == device)
            .order_by(opledger.c.seq)
        ).all()
        applied = [r for r in ledger if r.status == "applied"]
        changes = conn.execute(
            select(changelog.c.recordid, changelog.c.operation).where(
                changelog.c.recordid.in_(sorted({r.recordid for r in applied}))
            )
        ).all()
    assert [r.seq for r in ledger] == list(range(1, len(ledger) + 1)), "the ledger has a gap or a seq twice"
    assert len({r.op_id for r in ledger}) == len(ledger), "an op is in the ledger twice"
    made = Counter((r.recordid, r.operation) for r in changes)
    assert made == Counter((r.recordid, r.kind) for r in applied), "an op was applied twice or never"
    return ledger


def pipeline_shape(proxy: FaultProxy) -> tuple[int, list[int]]:
    """From the frames the proxy relayed on the (last) socket: the most push frames in flight at
    once, and every seq pushed in the order sent."""
    in_flight: list[set[int]] = []
    most = 0
    seqs: list[int] = []
    for frame in proxy.frames:
        kind = frame.message.get("type")
        if frame.direction == UP and kind == "push":
            ops = frame.message["ops"]
            assert len(ops) <= BATCH, f"a push frame of {len(ops)} ops"
            seqs += [op["seq"] for op in ops]
            in_flight.append({op["seq"] for op in ops})
            most = max(most, len(in_flight))
        elif frame.direction != UP and kind == "ack":
            for result in frame.message["results"]:
                for awaiting in in_flight:
                    awaiting.discard(result["seq"])
            in_flight = [s for s in in_flight if s]
        elif frame.direction != UP and kind == "error":
            in_flight = in_flight[1:]
    return most, seqs


def test_a_thousand_ops_queued_while_the_server_was_stopped_replay_pipelined_once_in_order_past_a_refused_one(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    page = phone.new_page()
    sign_in(page, "east1")
    gone = next(iter(device_view(page)["account"]))
    network_down(proxy, phone)
    # While the phone is offline, someone else deletes an account it holds: its update is refused.
    assert live_server.client("admin").delete(f"/api/data/accounts({gone})").status == 204
    first = queue_creates(page, [f"Replay {i:04d}" for i in range(500)])
    call(page, f"([i]) => {CTX}.data.update('account', i, {{ name: 'Edited offline' }})", [gone])
    rest = queue_creates(page, [f"Replay {i:04d}" for i in range(500, 999)])
    assert call(page, f"() => {CTX}.store.pendingCount()") == 1000
    live_server.stop()  # the server really stops, and only then does the network come back
    network_up(proxy, phone)
    wait_for(page, f"() => {CTX}.sync.status.connection !== 'online'", what="the app knows the server is down")
    live_server.start()
    call(page, f"() => {CTX}.sync.kick()")
    wait_synced(page, timeout=DRAIN_MS)

    ledger = ledger_of(live_server, device_id(page))
    assert len(ledger) == 1000
    assert [r.recordid for r in ledger] == [*first, gone, *rest], "not applied in the order queued"
    refused = [r for r in ledger if r.status != "applied"]
    assert [(r.seq, r.recordid, r.status) for r in refused] == [(501, gone, "rejected")]
    errors = call(page, f"() => {CTX}.store.errors()")
    assert [(e["seq"], e["status"]) for e in errors] == [(501, "rejected")], errors
    most, seqs = pipeline_shape(proxy)
    assert seqs == list(range(1, 1001)), "an op was pushed twice, or out of order, with nothing broken"
    assert 2 <= most <= WINDOW, f"{most} push frames in flight at most"


def test_the_socket_cut_mid_drain_leaves_every_op_applied_once_in_order(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    page = phone.new_page()
    sign_in(page, "east1")
    network_down(proxy, phone)
    ids = queue_creates(page, [f"Cut {i:04d}" for i in range(1000)])
    come_back(page, proxy, phone)
    proxy_wait_for(lambda: len(proxy.received("ack")) >= 2, DRAIN_MS / 1000, "two acks")
    assert proxy.cut_all() >= 1
    assert status(page)["pending"] > 0 or call(page, f"() => {CTX}.store.pendingCount()") > 0, "cut after the drain"
    wait_synced(page, timeout=DRAIN_MS)

    ledger = ledger_of(live_server, device_id(page))
    assert [r.recordid for r in ledger] == ids, "not applied once each, in the order queued"
    assert all(r.status == "applied" for r in ledger)
    seqs = [op["seq"] for push in proxy.sent("push") for op in push["ops"]]
    assert set(seqs) == set(range(1, 1001))
    assert len(seqs) > len(set(seqs)), "nothing in flight was re-sent after the cut"


def test_a_lost_push_frame_gets_seq_gap_and_the_queue_is_re_sent_from_there_once_in_order(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    page = phone.new_page()
    sign_in(page, "east1")
    network_down(proxy, phone)
    ids = queue_creates(page, [f"Gap {i:04d}" for i in range(400)])
    # The second frame never reaches the server; the frames after it arrive, over a gap.
    proxy.lose_next_sent(lambda m: m.get("type") == "push" and m["ops"][0]["seq"] == BATCH + 1)
    come_back(page, proxy, phone)
    wait_synced(page, timeout=DRAIN_MS)

    gaps = [e for e in proxy.received("error") if e.get("code") == "seq_gap"]
    assert gaps and all(e["expected_seq"] == BATCH + 1 for e in gaps), proxy.received("error")
    ledger = ledger_of(live_server, device_id(page))
    assert [r.recordid for r in ledger] == ids, "not applied once each, in the order queued"
    assert all(r.status == "applied" for r in ledger)
    assert call(page, f"() => {CTX}.store.errors()") == []
