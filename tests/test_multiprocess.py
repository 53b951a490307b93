"""Two server processes on one PostgreSQL database: the change feed crosses them (LISTEN/NOTIFY)."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator

import pytest
import simple_websocket
from sqlalchemy import create_engine, text

from benchmarks.live import HttpSession, SyncClient
from benchmarks.served import ServedServer, prepare_demo_database
from tests.conftest import PgSchema, _empty_pg

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def two_servers(
    pg_schema: PgSchema, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedServer, ServedServer]]:
    """Two `outpost serve` processes, each on its own port, sharing one fresh PostgreSQL schema."""
    tmp_path = tmp_path_factory.mktemp("multiprocess")
    _empty_pg(pg_schema)
    prepare_demo_database(pg_schema.url)
    first = ServedServer(tmp_path, pg_schema.url).start()
    try:
        second = ServedServer(tmp_path, pg_schema.url).start()
    except Exception:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


def caught_up(device: SyncClient) -> None:
    """hello, then pull the whole feed (from then on changes are pushed live)."""
    device.hello()
    feed = device.request({"type": "pull", "cursor": 0}, timeout=30)
    while feed["more"]:
        feed = device.receive(timeout=30)


def test_an_edit_through_one_process_reaches_a_device_on_another_live(
    two_servers: tuple[ServedServer, ServedServer],
) -> None:
    first, second = two_servers
    a = SyncClient(HttpSession(first.base, "manager"))
    b = SyncClient(HttpSession(second.base, "manager"))
    try:
        a.hello()
        caught_up(b)
        rid = str(uuid.uuid4())
        op = {
            "op_id": str(uuid.uuid4()),
            "seq": 1,
            "kind": "create",
            "entity": "lead",
            "id": rid,
            "changes": {"subject": "Across processes", "lastname": "L"},
        }
        assert a.request({"type": "push", "ops": [op]})["results"][0]["status"] == "applied"
        pushed = b.receive(timeout=10)
        assert pushed["type"] == "changes"
        assert [u["record"]["leadid"] for u in pushed["upserts"]] == [rid]
        # A Web API write on the second process reaches a device on the first.
        caught_up(a)
        status, _ = HttpSession(second.base, "admin").call("PATCH", f"/api/data/leads({rid})", {"subject": "Edited"})
        assert status == 200
        pushed = a.receive(timeout=10)
        assert pushed["upserts"][0]["record"]["subject"] == "Edited"
    finally:
        a.close()
        b.close()


def test_signing_out_on_one_process_closes_the_sessions_socket_on_another(
    two_servers: tuple[ServedServer, ServedServer],
) -> None:
    first, second = two_servers
    http = HttpSession(first.base, "east1")  # one session, valid on both processes
    on_second = copy.copy(http)
    on_second.base = second.base  # the cookie names the session on every process
    device = SyncClient(on_second)
    try:
        device.hello()
        status, _ = http.call("POST", "/api/auth/logout")
        assert status == 200
        frame = device.receive(timeout=10)
        assert frame["type"] == "error" and frame["code"] == "unauthenticated"
        with pytest.raises(simple_websocket.ConnectionClosed) as info:
            device.receive(timeout=10)
        assert info.value.reason == 1008
    finally:
        device.close()


def test_a_listener_whose_connection_drops_reconnects_and_changes_cross_again(
    two_servers: tuple[ServedServer, ServedServer], pg_schema: PgSchema
) -> None:
    first, second = two_servers
    a = SyncClient(HttpSession(first.base, "manager"))
    b = SyncClient(HttpSession(second.base, "manager"))
    engine = create_engine(pg_schema.admin_url)
    try:
        a.hello()
        caught_up(b)
        names = [f"outpost-listen {pid}" for pid in second.worker_pids()]
        query = text("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(:names)")
        with engine.begin() as conn:
            (old,) = conn.execute(query, {"names": names}).scalars().all()
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old})
        deadline = time.monotonic() + 30
        while True:  # the listener reconnects (with back-off) under a new backend
            with engine.begin() as conn:
                now = conn.execute(query, {"names": names}).scalars().all()
            if now and old not in now:
                break
            assert time.monotonic() < deadline, "the listener did not reconnect"
            time.sleep(0.1)  # polling a condition (a new LISTEN backend) with a deadline
        rid = str(uuid.uuid4())
        op = {
            "op_id": str(uuid.uuid4()),
            "seq": 1,
            "kind": "create",
            "entity": "lead",
            "id": rid,
            "changes": {"subject": "After the drop", "lastname": "L"},
        }
        assert a.request({"type": "push", "ops": [op]})["results"][0]["status"] == "applied"
        pushed = b.receive(timeout=10)
        assert [u["record"]["leadid"] for u in pushed["upserts"]] == [rid]
    finally:
        engine.dispose()
        a.close()
        b.close()
