"""Faults on the sync channel at protocol level: a real server process, a real socket, a broken network.

A device (`SyncClient`) talks to the server through `tests.faultproxy.FaultProxy`, which swallows
an ack after the server committed, or cuts every connection at seeded random moments. The
device behaves like the app: it keeps every operation until its ack arrives and re-sends the
unacknowledged ones (same seq, same op_id) after reconnecting. The server's database then
shows each operation applied exactly once, in seq order, and every re-sent operation answered
with its first result.

Randomness is seeded (`OUTPOST_FAULT_SEED`, default below) and the seed is in every failure
message. CI runs the short profiles; the long ones are behind the `slow` marker:

    .venv/bin/pytest tests/test_faults.py -m slow
"""

from __future__ import annotations

import copy
import json
import os
import random
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import simple_websocket
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from benchmarks.live import HttpSession, LiveServer, SyncClient
from tests.faultproxy import FaultProxy

SEED = int(os.environ.get("OUTPOST_FAULT_SEED", "9"))
# Every way a cut shows on the device's side: mid-handshake (a half HTTP answer), mid-frame, or later.
BROKEN = (
    simple_websocket.ConnectionClosed,
    simple_websocket.ConnectionError,
    RemoteProtocolError,
    LocalProtocolError,
    OSError,
    TimeoutError,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server process for the module: every test has its own device and its own records."""
    live = LiveServer(tmp_path_factory.mktemp("faults")).start()
    yield live
    live.stop()


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.port) as relay:
        yield relay


def account_ops(count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """`count` operations on new accounts (each created, then renamed), numbered from seq 1."""
    ids = [str(uuid.uuid4()) for _ in range(count // 2)]
    ops: list[dict[str, Any]] = []
    for i, rid in enumerate(ids):
        ops.append({"kind": "create", "entity": "account", "id": rid, "changes": {"name": f"Fault {i:03d}"}})
    for i, rid in enumerate(ids):
        ops.append({"kind": "update", "entity": "account", "id": rid, "changes": {"name": f"Fault {i:03d} renamed"}})
    for seq, op in enumerate(ops, start=1):
        op.update(seq=seq, op_id=str(uuid.uuid4()), base_version=None)
    return ids, ops


class GuardedClient(simple_websocket.Client):
    """simple-websocket's client, closing its socket when the handshake is cut (it leaks it otherwise)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            sock = getattr(self, "sock", None)
            if sock is not None:
                sock.close()
            raise


def sync_client(http: HttpSession, device_id: str) -> SyncClient:
    """A `SyncClient` for `http` (its `base` may be the proxy's) whose handshake may be cut safely."""
    client = SyncClient.__new__(SyncClient)
    client.http = http
    client.device_id = device_id
    url = http.base.replace("http://", "ws://") + "/api/sync"
    client.ws = GuardedClient(url, headers={"Cookie": http.cookie, "Origin": "http://127.0.0.1"})
    return client


class Device:
    """A device through the proxy: keeps its operations until acked, re-sends the rest after a reconnect."""

    def __init__(self, server: LiveServer, proxy: FaultProxy, username: str = "admin") -> None:
        direct = HttpSession(server.base, username)  # signed in directly: the faults are on the sync channel
        self.http = copy.copy(direct)
        self.http.base = proxy.url
        self.device_id = str(uuid.uuid4())
        self.client: SyncClient | None = None
        self.acked: dict[int, dict[str, Any]] = {}  # seq -> the result the device took from an ack
        self.reconnects = 0

    def connect(self, attempts: int = 200) -> dict[str, Any]:
        """Open the socket and say hello, retrying while the network is broken; returns the welcome."""
        for _ in range(attempts):
            self.close()
            try:
                self.client = sync_client(self.http, self.device_id)
                welcome = self.client.hello()
                if welcome.get("type") == "welcome":
                    self.reconnects += 1
                    return welcome
            except BROKEN:
                continue
        raise AssertionError(f"could not connect through the proxy in {attempts} attempts (seed {SEED})")

    def replay(self, ops: list[dict[str, Any]], batch: int) -> None:
        """Push every operation not acked yet, in order, until all are acked (reconnecting as needed)."""
        done = 0
        while done < len(ops):
            welcome = self.connect()
            assert welcome["next_seq"] - 1 >= done, f"the server forgot an acked operation (seed {SEED})"
            assert self.client is not None
            try:
                while done < len(ops):
                    sent = ops[done : done + batch]  # from the last ack on, as the app's queue does
                    ack = self.client.request({"type": "push", "ops": sent}, timeout=30)
                    assert ack["type"] == "ack", f"{ack} (seed {SEED})"
                    assert [r["seq"] for r in ack["results"]] == [o["seq"] for o in sent], f"seed {SEED}"
                    for result in ack["results"]:
                        self.acked[result["seq"]] = result
                    done += len(sent)
            except BROKEN:
                continue

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def check_exactly_once(
    server: LiveServer, device_id: str, ids: list[str], ops: list[dict[str, Any]], acked: dict[int, dict[str, Any]]
) -> None:
    """The ledger holds every op once, in seq order, with the results the device got; each record changed twice."""
    db = sqlite3.connect(server.folder / "outpost.db")
    try:
        ledger = db.execute(
            "SELECT seq, op_id, result FROM opledger WHERE deviceid = ? ORDER BY seq", (device_id,)
        ).fetchall()
        assert [s for s, _, _ in ledger] == [o["seq"] for o in ops], f"seed {SEED}"
        assert [o for _, o, _ in ledger] == [o["op_id"] for o in ops], f"seed {SEED}"
        first = {s: json.loads(r) for s, _, r in ledger}
        assert all(r["status"] == "applied" for r in first.values()), f"seed {SEED}"
        for seq, result in acked.items():
            assert answer(result) == answer(first[seq]), f"op {seq} got another answer than its first (seed {SEED})"
        assert sorted(acked) == [o["seq"] for o in ops], f"some ops were never acked (seed {SEED})"
        marks = ",".join("?" * len(ids))
        per_record = dict(
            db.execute(
                "SELECT recordid, COUNT(*) FROM changelog"
                f" WHERE entity = 'account' AND recordid IN ({marks}) GROUP BY recordid",
                ids,
            ).fetchall()
        )
        assert per_record == {rid: 2 for rid in ids}, f"a change was applied twice or never (seed {SEED})"
        names = dict(db.execute(f"SELECT accountid, name FROM account WHERE accountid IN ({marks})", ids).fetchall())
        assert names == {rid: f"Fault {i:03d} renamed" for i, rid in enumerate(ids)}, f"seed {SEED}"
        made = change_numbers_in_seq_order(db, device_id, ids)
        assert made == sorted(made), f"not applied in seq order (seed {SEED})"
    finally:
        db.close()


def change_numbers_in_seq_order(db: sqlite3.Connection, device_id: str, ids: list[str]) -> list[int]:
    """The change each ledger op made, in seq order: the k-th op on a record made that record's
    k-th change. Applied in seq order means these numbers rise (the ledger keeps records by id
    only, so the order is read from the change log)."""
    marks = ",".join("?" * len(ids))
    numbers: dict[str, list[int]] = {}
    for rid, number in db.execute(
        f"SELECT recordid, changenum FROM changelog WHERE entity = 'account' AND recordid IN ({marks})"
        " ORDER BY changenum",
        ids,
    ):
        numbers.setdefault(rid, []).append(number)
    rows = db.execute("SELECT recordid FROM opledger WHERE deviceid = ? ORDER BY seq", (device_id,))
    return [numbers[rid].pop(0) for (rid,) in rows]


def answer(result: dict[str, Any]) -> dict[str, Any]:
    """What a re-sent op's result repeats from its first: op, status, reason and which records it touched.

    The records themselves come as the server has them when the op is re-sent (webapp/sync/replay.py
    `resent_result`), so a later change to them shows.
    """
    return {
        "op_id": result["op_id"],
        "seq": result["seq"],
        "status": result["status"],
        "reason": result.get("reason"),
        "records": sorted((r["entity"], r["record"][f"{r['entity']}id"]) for r in result.get("records") or []),
        "removed": sorted((r["entity"], r["id"]) for r in result.get("removed") or []),
    }


def is_ack(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "ack"


def test_an_ack_lost_after_the_commit_is_answered_again_from_the_ledger_and_nothing_applies_twice(
    server: LiveServer, proxy: FaultProxy
) -> None:
    ids, ops = account_ops(60)
    device = Device(server, proxy)
    assert device.connect()["next_seq"] == 1
    assert device.client is not None
    first_push = ops[:40]
    proxy.drop_next(is_ack)  # the server commits and answers; the answer never reaches the device
    device.client.send({"type": "push", "ops": first_push})
    with pytest.raises(BROKEN):
        device.client.receive(timeout=30)
    swallowed = proxy.received("ack", delivered=False)
    assert len(swallowed) == 1 and not proxy.received("ack")
    # The device knows nothing was acked: it reconnects and re-sends the same 40 ops, and 20 new ones.
    welcome = device.connect()
    assert welcome["next_seq"] == 41  # the server had committed the whole push before answering
    ack = device.client.request({"type": "push", "ops": ops}, timeout=30)
    assert ack["type"] == "ack"
    assert [answer(r) for r in ack["results"][:40]] == [answer(r) for r in swallowed[0]["results"]]
    # ... with the records as they are now: account 0 was created by seq 1 and renamed by seq 31.
    assert ack["results"][0]["records"][0]["record"]["name"] == "Fault 000 renamed"
    assert all(r["status"] == "applied" for r in ack["results"])
    for result in ack["results"]:
        device.acked[result["seq"]] = result
    # Re-sent a third time, nothing changes either.
    again = device.client.request({"type": "push", "ops": ops}, timeout=30)["results"]
    assert [answer(r) for r in again] == [answer(r) for r in ack["results"]]
    device.close()
    check_exactly_once(server, device.device_id, ids, ops, device.acked)


def test_every_ack_of_a_replay_lost_once_still_applies_each_operation_once_in_order(
    server: LiveServer, proxy: FaultProxy
) -> None:
    ids, ops = account_ops(100)
    device = Device(server, proxy)
    rng = random.Random(SEED)
    seen: set[int] = set()

    def first_time_ack(frame: dict[str, Any]) -> bool:
        """Every ack is swallowed the first time the server sends it (then it is delivered)."""
        if frame.get("type") != "ack" or not frame["results"]:
            return False
        seq = frame["results"][0]["seq"]
        if seq in seen:
            return False
        seen.add(seq)
        return True

    proxy.drop_every(first_time_ack)
    done = 0
    while done < len(ops):
        device.connect()
        assert device.client is not None
        size = rng.randint(1, 15)
        sent = ops[done : done + size]
        try:
            ack = device.client.request({"type": "push", "ops": sent}, timeout=30)
        except BROKEN:
            continue  # the ack was swallowed: reconnect and re-send the same ops
        for result in ack["results"]:
            device.acked[result["seq"]] = result
        done += len(sent)
    device.close()
    assert len(proxy.received("ack", delivered=False)) >= 7, f"seed {SEED}"
    check_exactly_once(server, device.device_id, ids, ops, device.acked)


def replay_through_flapping(server: LiveServer, proxy: FaultProxy, ops_count: int, flaps: int, seed: int) -> None:
    """Replay while the proxy cuts every connection `flaps` times at seeded random moments."""
    ids, ops = account_ops(ops_count)
    device = Device(server, proxy)
    proxy.flap(flaps, random.Random(seed), low=0.02, high=0.25)
    device.replay(ops, batch=10)
    proxy.wait_flapped(timeout=120)  # the rest of the cuts land on an idle device: harmless
    device.close()
    assert device.reconnects > 1, f"no connection was cut during the replay (seed {seed})"
    check_exactly_once(server, device.device_id, ids, ops, device.acked)


def test_connections_cut_at_random_moments_during_a_replay_apply_each_operation_once_in_order(
    server: LiveServer, proxy: FaultProxy
) -> None:
    replay_through_flapping(server, proxy, ops_count=200, flaps=8, seed=SEED)


@pytest.mark.slow
def test_fifty_cuts_during_a_replay_of_500_operations_apply_each_once_in_order(
    server: LiveServer, proxy: FaultProxy
) -> None:
    replay_through_flapping(server, proxy, ops_count=500, flaps=50, seed=SEED)
