"""Rate limits (webapp/ratelimit.py): a flood is told to wait and nothing in the refused call is applied."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.conftest import Api, Org
from tests.test_sync_replay import Device
from webapp.ratelimit import Limiter, limits
from webapp.services import services
from webapp.sync.tables import opledger


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ledger_rows(app: Flask) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).select_from(opledger)).scalar_one())


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait_and_refills() -> None:
    clock = Clock()
    limiter = Limiter(rate=10, burst=3, clock=clock)
    assert [limiter.take(("a",)) for _ in range(3)] == [None, None, None]
    assert limiter.take(("a",)) == pytest.approx(0.1)  # one token comes back in a tenth of a second
    assert limiter.take(("b",)) is None  # another user has their own bucket
    clock.now += 0.1
    assert limiter.take(("a",)) is None
    assert limiter.take(("a",), cost=5) == pytest.approx(0.5)  # more than the burst: the wait says how long
    clock.now += 60
    assert limiter.take(("a",), cost=3) is None  # refilled, but never beyond the burst
    assert limiter.take(("a",)) is not None


def test_a_flood_of_frames_is_answered_rate_limited_and_the_channel_goes_on(app: Flask, org: Org) -> None:
    app.config.update(RATE_FRAMES_BURST=5.0, RATE_FRAMES_PER_SECOND=1.0)
    clock = Clock()
    limits(app).frames.clock = clock
    device = Device(app, org, org.alice)
    device.hello()  # hello is a frame too
    answers = [device.send({"type": "pull", "cursor": 0})[0]["type"] for _ in range(6)]
    assert answers[:4] == ["changes"] * 4
    assert answers[4:] == ["error", "error"]
    refused = device.push(device.op("create", "account", str(uuid.uuid4()), {"name": "Flood"}))
    assert refused[0]["code"] == "rate_limited"
    assert refused[0]["retry_after_ms"] >= 1
    assert ledger_rows(app) == 0  # nothing in the refused push was applied
    clock.now += 10
    device.seq -= 1  # the device re-sends the same operation (same seq)
    acked = device.push(device.op("create", "account", str(uuid.uuid4()), {"name": "Later"}))
    assert acked[0]["type"] == "ack"
    assert acked[0]["results"][0]["status"] == "applied"


def test_too_many_operations_are_refused_whole(app: Flask, org: Org) -> None:
    app.config.update(RATE_OPS_BURST=3.0, RATE_OPS_PER_SECOND=1.0)
    limits(app).operations.clock = Clock()
    device = Device(app, org, org.alice)
    device.hello()
    ops = [device.op("create", "account", str(uuid.uuid4()), {"name": f"A{i}"}) for i in range(4)]
    frames = device.push(*ops)
    assert [f["code"] for f in frames] == ["rate_limited"]
    assert ledger_rows(app) == 0
    device.seq = 0
    assert device.push(*[device.op("create", "account", str(uuid.uuid4()), {"name": "B"})])[0]["type"] == "ack"


def test_http_writes_over_the_rate_get_429_with_retry_after_and_change_nothing(app: Flask, alice: Api) -> None:
    app.config.update(RATE_HTTP_WRITES_BURST=2.0, RATE_HTTP_WRITES_PER_SECOND=0.5)
    limits(app).http_writes.clock = Clock()
    assert alice.post("/api/data/accounts", json={"name": "One"}).status_code == 201
    assert alice.post("/api/data/accounts", json={"name": "Two"}).status_code == 201
    refused = alice.post("/api/data/accounts", json={"name": "Three"})
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "2"
    names = sorted(a["name"] for a in alice.get("/api/data/accounts").json["value"])
    assert names == ["One", "Two"]  # reads are not limited; the refused write wrote nothing
    assert alice.post("/api/auth/logout").status_code == 200  # signing out always works


def test_the_http_push_counts_operations_like_the_socket(app: Flask, org: Org, alice: Api) -> None:
    app.config.update(RATE_OPS_BURST=2.0, RATE_OPS_PER_SECOND=1.0)
    limits(app).operations.clock = Clock()
    ops = [
        {
            "op_id": str(uuid.uuid4()),
            "seq": i + 1,
            "kind": "create",
            "entity": "account",
            "id": str(uuid.uuid4()),
            "base_version": None,
            "changes": {"name": f"P{i}"},
        }
        for i in range(3)
    ]
    resp = alice.post("/api/sync/push", json={"device_id": str(uuid.uuid4()), "ops": ops})
    assert resp.status_code == 429
    assert ledger_rows(app) == 0


def test_limits_can_be_lifted_for_benchmarks(app: Flask, alice: Api) -> None:
    app.config.update(RATE_LIMITS=False, RATE_HTTP_WRITES_BURST=1.0, RATE_HTTP_WRITES_PER_SECOND=0.001)
    assert [alice.post("/api/data/accounts", json={"name": f"N{i}"}).status_code for i in range(3)] == [201] * 3
