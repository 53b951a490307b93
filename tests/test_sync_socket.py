"""The sync channel over a real WebSocket, against a real server process."""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simple_websocket

from benchmarks.live import HttpSession, LiveServer, SyncClient
from tests.test_faults import change_numbers_in_seq_order
from webapp.sync import stream


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("sync")).start()
    yield live
    live.stop()


def upgrade_status(server: LiveServer, cookie: str | None, origin: str | None) -> int:
    """The status of a raw WebSocket upgrade request (101 = upgraded)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    if cookie:
        headers["Cookie"] = cookie
    if origin:
        headers["Origin"] = origin
    conn.request("GET", "/api/sync", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_the_handshake_is_refused_before_the_upgrade_without_a_session_or_from_a_foreign_origin(
    server: LiveServer,
) -> None:
    admin = HttpSession(server.base, "admin")
    assert upgrade_status(server, None, server.base) == 403
    assert upgrade_status(server, admin.cookie, "http://evil.example") == 403
    assert upgrade_status(server, admin.cookie, None) == 403
    assert upgrade_status(server, "outpost_session=forged", server.base) == 403
    assert upgrade_status(server, admin.cookie, server.base) == 101


def test_hello_push_ack_and_pull_over_a_real_socket(server: LiveServer) -> None:
    device = SyncClient(HttpSession(server.base, "east1"))
    welcome = device.hello()
    assert welcome["type"] == "welcome"
    assert welcome["next_seq"] == 1
    rid = str(uuid.uuid4())
    op = {
        "op_id": str(uuid.uuid4()),
        "seq": 1,
        "kind": "create",
        "entity": "account",
        "id": rid,
        "changes": {"name": "Socket Co"},
    }
    ack = device.request({"type": "push", "ops": [op]})
    assert ack["type"] == "ack"
    assert ack["results"][0]["status"] == "applied"
    assert ack["results"][0]["records"][0]["record"]["name"] == "Socket Co"
    page = device.request({"type": "download", "entity": "account", "after": None, "limit": 10})
    assert page["type"] == "page" and len(page["records"]) == 10 and page["total"] > 10
    device.close()


def test_a_streamed_download_keeps_its_window_in_flight_and_gives_exactly_the_pages_records(
    server: LiveServer,
) -> None:
    device = SyncClient(HttpSession(server.base, "east1"))
    device.hello()
    paged: list[dict[str, Any]] = []
    after = None
    while True:
        page = device.request({"type": "download", "entity": "account", "after": after, "limit": 7})
        paged += page["records"]
        after = page["next"]
        if after is None:
            break
    assert len(paged) > 4 * 7, "enough accounts for more pages than the window"
    device.send({"type": "stream", "entity": "account", "after": None, "limit": 7, "window": 3})
    first = [device.receive() for _ in range(3)]
    assert [f["type"] for f in first] == ["rows"] * 3 and [f["n"] for f in first] == [0, 1, 2]
    assert first[0]["total"] == len(paged) and first[0]["columns"].count("accountid") == 1
    # No fourth page before an ack: the server answers in order, so a page sent would come first.
    assert device.request({"type": "ping"}) == {"type": "pong"}
    assert device.request({"type": "stream_ack", "entity": "account", "n": 1})["code"] == "bad_request"
    streamed = [r for f in first for r in stream.decode(f)]
    frames = first
    acked = 0
    while frames[-1]["next"] is not None:
        nxt = device.request({"type": "stream_ack", "entity": "account", "n": acked})
        acked += 1
        assert nxt["type"] == "rows" and nxt["n"] == acked + 2, nxt
        streamed += stream.decode(nxt)
        frames.append(nxt)
    assert streamed == paged
    device.close()


def test_a_bad_frame_gets_an_error_and_the_session_goes_on(server: LiveServer) -> None:
    device = SyncClient(HttpSession(server.base, "east1"))
    device.hello()
    assert device.request({"type": "nope"})["code"] == "unknown_type"
    device.ws.send("{not json")
    assert device.receive()["code"] == "bad_message"
    assert device.request({"type": "ping"}, timeout=5) == {"type": "pong"}
    device.close()


def test_a_frame_over_one_mebibyte_closes_the_socket_with_1009(server: LiveServer) -> None:
    device = SyncClient(HttpSession(server.base, "east1"))
    device.hello()
    device.ws.send('{"type":"ping","pad":"' + "x" * (1 << 20) + '"}')
    with pytest.raises(simple_websocket.ConnectionClosed) as info:
        device.receive(timeout=10)
    assert info.value.reason == 1009
    # The server is fine: a well-behaved device still syncs.
    other = SyncClient(HttpSession(server.base, "east2"))
    assert other.hello()["type"] == "welcome"
    other.close()


def test_a_change_on_one_device_is_pushed_live_to_another(server: LiveServer) -> None:
    a = SyncClient(HttpSession(server.base, "manager"))
    b = SyncClient(HttpSession(server.base, "manager"))
    a.hello()
    b.hello()
    feed = b.request({"type": "pull", "cursor": 0}, timeout=30)
    while feed["more"]:
        feed = b.receive(timeout=30)
    rid = str(uuid.uuid4())
    op = {
        "op_id": str(uuid.uuid4()),
        "seq": 1,
        "kind": "create",
        "entity": "lead",
        "id": rid,
        "changes": {"subject": "Live", "lastname": "L"},
    }
    assert a.request({"type": "push", "ops": [op]})["type"] == "ack"
    pushed = b.receive(timeout=10)
    assert pushed["type"] == "changes"
    assert [u["record"]["leadid"] for u in pushed["upserts"]] == [rid]
    # A write through the Web API reaches the device live too.
    admin = HttpSession(server.base, "admin")
    status, _ = admin.call("PATCH", f"/api/data/leads({rid})", {"subject": "Edited on the web"})
    assert status == 200
    pushed = b.receive(timeout=10)
    assert pushed["upserts"][0]["record"]["subject"] == "Edited on the web"
    a.close()
    b.close()


def replay_with_kills(tmp: Path, ops_count: int, kills: int, seed: int) -> None:
    """Replay `ops_count` operations in batches while the server is SIGKILLed `kills` times.

    Each kill comes after a seeded batch, at a seeded moment: 0-100 ms after the push was sent
    (before, during or after its commit), or once the server has answered it (committed for
    sure) but before the device has read the ack. Like the app, the device keeps every
    operation until it has read its ack and re-sends the unacknowledged ones after the restart
    — so the ones the server committed just before dying must get their first result again.
    """
    rng = random.Random(seed)
    server = LiveServer(tmp).start()
    try:
        device_id = str(uuid.uuid4())
        ids = [str(uuid.uuid4()) for _ in range(ops_count // 2)]
        ops: list[dict[str, Any]] = []
        for i, rid in enumerate(ids):
            ops.append({"kind": "create", "entity": "account", "id": rid, "changes": {"name": f"Op {i:03d}"}})
        for i, rid in enumerate(ids):
            ops.append({"kind": "update", "entity": "account", "id": rid, "changes": {"name": f"Op {i:03d} updated"}})
        for seq, op in enumerate(ops, start=1):
            op.update(seq=seq, op_id=str(uuid.uuid4()), base_version=None)
        kill_after = sorted(rng.sample(range(1, ops_count // 10), kills))
        # None: after the answer is on its way; else seconds after the push was sent.
        delays = [None if rng.random() < 0.4 else rng.uniform(0, 0.1) for _ in kill_after]
        acked: dict[int, Any] = {}
        batches_sent = 0
        done = 0
        resent_committed = 0
        while done < len(ops):
            client = SyncClient(HttpSession(server.base, "admin"), device_id=device_id)
            start = client.hello()["next_seq"] - 1
            assert start >= done, f"the server forgot an acked operation (seed {seed})"
            resent_committed += start - done  # committed before the kill, never acked: re-sent below
            try:
                while done < len(ops):
                    batch = ops[done : done + 10]
                    client.send({"type": "push", "ops": batch})
                    batches_sent += 1
                    if kill_after and batches_sent == kill_after[0]:
                        kill_after.pop(0)
                        delay = delays.pop(0)
                        if delay is None:
                            client.receive(timeout=30)  # committed for sure; the device never takes this ack
                        else:
                            time.sleep(delay)  # a seeded moment, not a wait for anything
                        server.kill()  # mid-replay: the batch may or may not have committed
                        break
                    ack = client.receive(timeout=30)
                    assert ack["type"] == "ack", f"{ack} (seed {seed})"
                    assert [r["seq"] for r in ack["results"]] == [o["seq"] for o in batch], f"seed {seed}"
                    assert all(r["status"] == "applied" for r in ack["results"]), f"{ack} (seed {seed})"
                    acked.update((r["seq"], r) for r in ack["results"])
                    done += len(batch)
            finally:
                client.close()
            if server.proc is None:
                server.start()
        assert not kill_after, f"seed {seed}"
        print(f"seed {seed}: {kills} kills, {resent_committed} committed-but-unacked ops re-sent")
    finally:
        server.stop()
    db = sqlite3.connect(tmp / "outpost.db")
    try:
        ledger = db.execute("SELECT seq, result FROM opledger WHERE deviceid = ? ORDER BY seq", (device_id,)).fetchall()
        assert [s for s, _ in ledger] == list(range(1, ops_count + 1)), f"seed {seed}"
        first = {s: json.loads(r) for s, r in ledger}
        # A re-sent op gets its first status, with its records as they are now (webapp/sync/replay.py).
        for seq, result in first.items():
            again = acked[seq]
            assert (again["op_id"], again["status"], again.get("reason")) == (
                result["op_id"],
                result["status"],
                result.get("reason"),
            ), f"op {seq} got another answer than its first (seed {seed})"
            assert [r["record"]["accountid"] for r in again["records"]] == [
                r["record"]["accountid"] for r in result["records"]
            ], f"seed {seed}"
        marks = ",".join("?" * len(ids))
        per_record = dict(
            db.execute(
                "SELECT recordid, COUNT(*) FROM changelog"
                f" WHERE entity = 'account' AND recordid IN ({marks}) GROUP BY recordid",
                ids,
            ).fetchall()
        )
        assert per_record == {rid: 2 for rid in ids}, f"not exactly once (seed {seed})"  # one create, one update
        names = dict(db.execute(f"SELECT accountid, name FROM account WHERE accountid IN ({marks})", ids).fetchall())
        assert names == {rid: f"Op {i:03d} updated" for i, rid in enumerate(ids)}, f"seed {seed}"
        made = change_numbers_in_seq_order(db, device_id, ids)
        assert made == sorted(made), f"not applied in seq order (seed {seed})"
    finally:
        db.close()


def test_sigkill_during_a_replay_of_200_operations_applies_each_exactly_once_in_order(tmp_path: Path) -> None:
    replay_with_kills(tmp_path, ops_count=200, kills=3, seed=5)


@pytest.mark.slow
def test_twenty_sigkills_during_a_replay_of_500_operations_apply_each_exactly_once_in_order(tmp_path: Path) -> None:
    replay_with_kills(tmp_path, ops_count=500, kills=20, seed=20)


@pytest.mark.parametrize(
    ("offer", "narrowed"),
    [
        (  # what Chromium and Firefox send
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits; server_no_context_takeover; client_no_context_takeover",
        ),
        (  # already without takeover: unchanged
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (  # an extension the server does not implement goes; the deflate offer after it stays
            "x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        ("x-webkit-deflate-frame", ""),
    ],
)
def test_a_deflate_offer_is_narrowed_to_no_context_takeover(offer: str, narrowed: str) -> None:
    from webapp.sync.socket import deflate_without_context_takeover

    assert deflate_without_context_takeover(offer) == narrowed


def test_deflate_as_browsers_offer_it_is_agreed_without_context_takeover_and_frames_still_flow(
    server: LiveServer,
) -> None:
    """No zlib context outlives a message: an idle socket keeps no compressor (docs/protocol.md)."""
    from websockets.sync.client import connect

    http = HttpSession(server.base, "east1")
    url = server.base.replace("http://", "ws://") + "/api/sync"
    with connect(
        url,
        origin=server.base,
        additional_headers={"Cookie": http.cookie},
        compression="deflate",  # offers "permessage-deflate; client_max_window_bits", as browsers do
    ) as ws:
        assert ws.response is not None
        agreed = ws.response.headers["Sec-WebSocket-Extensions"]
        params = [p.strip() for p in agreed.split(";")]
        assert params[0] == "permessage-deflate"
        assert {"server_no_context_takeover", "client_no_context_takeover"} <= set(params), agreed
        ws.send(json.dumps({"type": "hello", "device_id": str(uuid.uuid4()), "app_version": "test"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        for _ in range(2):  # the second page is compressed afresh, with no context kept
            ws.send(json.dumps({"type": "download", "entity": "account", "after": None, "limit": 20}))
            page = json.loads(ws.recv(timeout=10))
            assert page["type"] == "page" and len(page["records"]) == 20
