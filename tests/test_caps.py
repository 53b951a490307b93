"""Caps per user (issue 17, item 8): sync sockets, devices, and records read over the Web API.

One user opened 400 sockets and registered 1,118 devices in 6 s. Now a user holds at most
MAX_SOCKETS_PER_USER sockets in a process (the next one gets `error too_many_connections` and
close code 1013, Try Again Later) and registers at most MAX_DEVICES_PER_USER devices seen in the
last DEVICE_CAP_DAYS days (`error too_many_devices`, over HTTP 429); `$top=5000` in a tight loop
is told to wait (429 with Retry-After) once the user's bucket of records read is spent.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import simple_websocket
from flask import Flask
from sqlalchemy import update

from benchmarks.live import HttpSession, LiveServer, SyncClient
from tests.conftest import Api, Org
from tests.test_sync_replay import Device
from webapp.crm.changes import utcnow
from webapp.ratelimit import limits
from webapp.services import services
from webapp.sync.hub import Hub, TooManyConnections
from webapp.sync.tables import device


def hello(app: Flask, org: Org, user_id: str, device_id: str | None = None) -> dict[str, Any]:
    d = Device(app, org, user_id)
    if device_id:
        d.device_id = device_id
    return d.send({"type": "hello", "device_id": d.device_id, "app_version": "t"})[0]


def test_a_user_registers_at_most_the_cap_of_devices_and_the_next_is_refused_clearly(app: Flask, org: Org) -> None:
    app.config["MAX_DEVICES_PER_USER"] = 3
    ids = [str(uuid.uuid4()) for _ in range(3)]
    assert [hello(app, org, org.alice, i)["type"] for i in ids] == ["welcome"] * 3
    refused = hello(app, org, org.alice)
    assert refused["type"] == "error" and refused["code"] == "too_many_devices", refused
    assert "revoke" in refused["message"]
    assert hello(app, org, org.alice, ids[0])["type"] == "welcome"  # a known device still connects
    assert hello(app, org, org.bob)["type"] == "welcome"  # another user has a cap of their own
    with services(app).db.session(write=True) as s:  # a device unseen for the window stops counting
        s.execute(update(device).where(device.c.deviceid == ids[1]).values(last_seen=utcnow() - dt.timedelta(days=31)))
        s.commit()
    assert hello(app, org, org.alice)["type"] == "welcome"
    assert hello(app, org, org.alice)["code"] == "too_many_devices"


def test_the_device_cap_holds_for_the_http_push_too(app: Flask, org: Org, alice: Api) -> None:
    app.config["MAX_DEVICES_PER_USER"] = 2

    def op() -> dict[str, Any]:
        rid = str(uuid.uuid4())
        return {"op_id": rid, "seq": 1, "kind": "create", "entity": "account", "id": rid, "changes": {"name": "x"}}

    answers = [
        alice.post("/api/sync/push", json={"device_id": str(uuid.uuid4()), "app_version": "t", "ops": [op()]})
        for _ in range(3)
    ]
    assert [a.status_code for a in answers[:2]] == [200, 200], [a.json for a in answers]
    assert answers[2].status_code == 429
    assert answers[2].json["error"]["code"] == "too_many_devices"


def test_the_hub_refuses_a_socket_beyond_the_users_cap_and_counts_only_that_users() -> None:
    hub = Hub()
    held = [hub.subscribe("org", "u1", "t", cap=2) for _ in range(2)]
    with pytest.raises(TooManyConnections):
        hub.subscribe("org", "u1", "t", cap=2)
    hub.subscribe("org", "u2", "t", cap=2)  # another user
    hub.unsubscribe(held[0])
    hub.subscribe("org", "u1", "t", cap=2)  # a closed socket frees its place


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("caps"), env={"OUTPOST_MAX_SOCKETS_PER_USER": "3"}).start()
    yield live
    live.stop()


def connect_when_freed(http: HttpSession, seconds: float = 30) -> SyncClient:
    """A socket welcomed once the server has seen an earlier one close: until its receive loop
    ends, the place is still taken and a new socket meets the cap, as a phone would, which then
    comes back after its back-off (here 0.1 s)."""
    deadline = time.monotonic() + seconds
    while True:
        client = SyncClient(http)
        try:
            answer = client.hello()
        except simple_websocket.ConnectionClosed:
            answer = {"type": "closed"}
        if answer["type"] == "welcome":
            return client
        assert answer["type"] == "closed" or answer.get("code") == "too_many_connections", answer
        client.close()
        assert time.monotonic() < deadline, "the closed socket's place was never freed"
        time.sleep(0.1)


def test_a_socket_beyond_the_users_cap_is_told_why_and_closed_with_1013(server: LiveServer) -> None:
    http = HttpSession(server.base, "east1")
    held = [SyncClient(http) for _ in range(3)]
    for client in held:
        assert client.hello()["type"] == "welcome"
    extra = SyncClient(http)
    frame = extra.receive(timeout=30)
    assert frame["type"] == "error" and frame["code"] == "too_many_connections", frame
    assert "3" in frame["message"]
    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        extra.receive(timeout=30)
    assert closed.value.reason == 1013
    other = SyncClient(HttpSession(server.base, "east2"))  # another user is not held up
    assert other.hello()["type"] == "welcome"
    held[0].close()
    again = connect_when_freed(http)  # a closed socket frees its place
    for client in [*held[1:], again, other]:
        client.close()


def test_a_tight_loop_of_top_5000_reads_is_told_to_wait(app: Flask, org: Org, alice: Api) -> None:
    app.config.update(RATE_HTTP_READ_RECORDS_BURST=10.0, RATE_HTTP_READ_RECORDS_PER_SECOND=2.0)
    app.extensions.pop("outpost_limits", None)  # made by the writes above? made again with these settings
    for i in range(8):
        assert alice.post("/api/data/accounts", json={"name": f"Read {i}"}).status_code == 201

    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    limits(app).http_reads.clock = clock
    first = alice.get("/api/data/accounts?$top=5000&$select=name")
    assert first.status_code == 200 and len(first.json["value"]) == 8
    second = alice.get("/api/data/accounts?$top=5000&$select=name")
    assert second.status_code == 200  # 16 records read: the bucket of 10 is now in debt
    refused = alice.get("/api/data/accounts?$top=5000&$select=name")
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "3"  # 6 records of debt at 2 a second
    assert alice.get(f"/api/data/accounts({first.json['value'][0]['accountid']})").status_code == 200  # one record
    clock.now += 3
    assert alice.get("/api/data/accounts?$top=5000&$select=name").status_code == 200
