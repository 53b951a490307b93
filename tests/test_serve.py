"""`outpost serve`: gunicorn's gevent worker, sockets per process, sign-out and expiry, session logs."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simple_websocket
from click.testing import CliRunner
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from benchmarks.live import MANY, HttpSession, SyncClient
from benchmarks.served import ServedServer, prepare_demo_database
from webapp.cli import main

SOCKETS = 60  # far more than a threaded worker with a few threads could hold


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedServer]:
    folder = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{folder / 'outpost.db'}"
    prepare_demo_database(url, records=2000)  # enough accounts for multi-megabyte pages
    server = ServedServer(folder, url, env=MANY).start()
    yield server
    server.stop()


def upgrade_status(server: ServedServer, cookie: str) -> int:
    """The status of a WebSocket upgrade request with this cookie (101 = upgraded)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Cookie": cookie,
        "Origin": server.base,
    }
    try:
        conn.request("GET", "/api/sync", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def new_lead(seq: int) -> tuple[str, dict[str, Any]]:
    """A create-lead operation."""
    rid = str(uuid.uuid4())
    op = {
        "op_id": str(uuid.uuid4()),
        "seq": seq,
        "kind": "create",
        "entity": "lead",
        "id": rid,
        "changes": {"subject": f"Lead {seq}", "lastname": "L"},
    }
    return rid, op


def caught_up(device: SyncClient) -> None:
    """hello, then pull the whole feed (from then on changes are pushed live)."""
    device.hello()
    feed = device.request({"type": "pull", "cursor": 0}, timeout=30)
    while feed["more"]:
        feed = device.receive(timeout=30)


def expect_closed_unauthenticated(device: SyncClient) -> None:
    """The next frame is `error unauthenticated`, then the socket closes with 1008."""
    frame = device.receive(timeout=15)
    assert frame["type"] == "error" and frame["code"] == "unauthenticated", frame
    with pytest.raises(simple_websocket.ConnectionClosed) as info:
        device.receive(timeout=15)
    assert info.value.reason == 1008


def test_one_gevent_process_holds_many_sockets_and_still_answers_pages_and_pushes_live(served: ServedServer) -> None:
    http = HttpSession(served.base, "manager")
    devices = [SyncClient(http) for _ in range(SOCKETS)]
    try:
        for d in devices:
            assert d.hello()["type"] == "welcome"
        # Plain pages answer while every socket is open (a 2-thread gthread worker hangs here).
        with urllib.request.urlopen(f"{served.base}/healthz", timeout=10) as r:
            assert r.status == 200
        status, me = http.call("GET", "/api/auth/me")
        assert status == 200 and me["user"]["username"] == "manager"
        # Each socket is a greenlet, not a thread: the worker's OS threads stay few.
        (worker,) = served.worker_pids()
        status_lines = Path(f"/proc/{worker}/status").read_text().splitlines()
        threads = int(next(x for x in status_lines if x.startswith("Threads:")).split()[1])
        assert threads < 10, threads
        # The hub's waits work under gevent: a change reaches the last device at once.
        last = devices[-1]
        feed = last.request({"type": "pull", "cursor": 0}, timeout=30)
        while feed["more"]:
            feed = last.receive(timeout=30)
        rid, op = new_lead(1)
        assert devices[0].request({"type": "push", "ops": [op]})["type"] == "ack"
        pushed = last.receive(timeout=10)
        assert pushed["type"] == "changes"
        assert [u["record"]["leadid"] for u in pushed["upserts"]] == [rid]
    finally:
        for d in devices:
            d.close()


def test_sign_out_closes_that_sessions_sockets_with_1008_and_no_others(served: ServedServer) -> None:
    leaving = HttpSession(served.base, "east1")
    staying = HttpSession(served.base, "east1")
    mine = [SyncClient(leaving) for _ in range(2)]
    other = SyncClient(staying)
    try:
        caught_up(mine[0])
        mine[1].hello()  # before its first pull: closed all the same
        other.hello()
        status, _ = leaving.call("POST", "/api/auth/logout")
        assert status == 200
        for device in mine:
            expect_closed_unauthenticated(device)
        assert other.request({"type": "ping"}) == {"type": "pong"}
        # The signed-out cookie no longer opens a socket.
        assert upgrade_status(served, leaving.cookie) == 403
        assert upgrade_status(served, staying.cookie) == 101
    finally:
        for d in [*mine, other]:
            d.close()


def test_a_session_that_expires_while_its_socket_is_open_is_closed_with_1008(served: ServedServer) -> None:
    http = HttpSession(served.base, "east2")
    db = sqlite3.connect(served.database_url[len("sqlite:///") :])
    try:
        soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).replace(tzinfo=None)
        with db:
            db.execute(
                "UPDATE usersession SET expireson = ? WHERE csrf_token = ?",
                (soon.isoformat(sep=" "), http.csrf),
            )
    finally:
        db.close()
    device = SyncClient(http)
    try:
        device.hello()
        expect_closed_unauthenticated(device)
    finally:
        device.close()


def test_each_sync_session_ends_with_one_json_log_line(served: ServedServer) -> None:
    http = HttpSession(served.base, "east1")
    opened = time.monotonic()  # before the handshake: the session cannot have started earlier
    device = SyncClient(http)
    device.hello()
    welcomed = time.monotonic()  # the server had the hello (its session had started) before this
    _, op = new_lead(1)
    bad = {**new_lead(2)[1], "entity": "nosuchentity"}
    ack = device.request({"type": "push", "ops": [op, bad]})
    assert [r["status"] for r in ack["results"]] == ["applied", "rejected"]
    closing = time.monotonic()  # the server sees the close after this
    device.close()
    line = served.wait_for_log_line(lambda x: x.startswith("{") and device.device_id in x)
    logged = time.monotonic()  # the session had ended before its line was written
    entry = json.loads(line)
    assert entry["event"] == "sync_session"
    assert entry["device"] == device.device_id
    assert entry["user"] == device.http.user["id"]
    assert {k: entry[k] for k in ("ops", "applied", "conflicts", "rejected", "frames_received")} == {
        "ops": 2,
        "applied": 1,
        "conflicts": 0,
        "rejected": 1,
        "frames_received": 2,
    }
    assert entry["frames_sent"] >= 2 and entry["org"] == http.call("GET", "/api/auth/me")[1]["org"]["id"]
    # The server's clock and ours are the same monotonic clock: its duration lies between the
    # part of the session we saw whole (welcome to close) and all of it (connect to log line).
    at_least, at_most = (closing - welcomed) * 1000, (logged - opened) * 1000
    assert at_least - 1 <= entry["duration_ms"] <= at_most + 1, (at_least, entry["duration_ms"], at_most)


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'outpost.db'}")
    result = CliRunner().invoke(main, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "needs PostgreSQL" in result.output


def test_large_frames_to_a_slow_reader_arrive_whole(served: ServedServer) -> None:
    """Pages of megabytes to a device that reads late: every frame arrives whole and in order
    (simple-websocket alone writes a frame with one socket.send and loses what did not fit)."""
    cookie = HttpSession(served.base, "admin").cookie
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow phone: a small window
    raw.connect(("127.0.0.1", served.port))
    raw.settimeout(30)
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(b"cookie", cookie.encode()), (b"origin", served.base.encode())]
    raw.sendall(ws.send(Request(host=f"127.0.0.1:{served.port}", target="/api/sync", extra_headers=headers)))

    def events() -> Iterator[Any]:
        while data := raw.recv(65536):
            ws.receive_data(data)
            yield from ws.events()

    stream = events()
    try:
        assert isinstance(next(stream), AcceptConnection)
        hello = {"type": "hello", "device_id": str(uuid.uuid4())}
        raw.sendall(ws.send(TextMessage(json.dumps(hello))))
        download = {"type": "download", "entity": "account", "after": None, "limit": 2000}
        for _ in range(4):
            raw.sendall(ws.send(TextMessage(json.dumps(download))))
        time.sleep(2)  # the device is busy: the server's writes fill the socket buffers
        frames: list[dict[str, Any]] = []
        text = ""
        for event in stream:
            assert not isinstance(event, CloseConnection), event
            if isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    frames.append(json.loads(text))
                    text = ""
                    if len(frames) == 5:
                        break
        assert [f["type"] for f in frames] == ["welcome", "page", "page", "page", "page"]
        assert all(len(f["records"]) == 2000 for f in frames[1:])
    finally:
        raw.close()


def test_a_graceful_stop_closes_every_socket_with_1012_service_restart(tmp_path: Path) -> None:
    """SIGTERM (a deploy): each socket is closed with 1012, which tells the phone to come back
    after a random wait (docs/protocol.md), and the server exits well before its graceful timeout
    would have cut the sockets."""
    url = f"sqlite:///{tmp_path / 'outpost.db'}"
    prepare_demo_database(url)
    server = ServedServer(tmp_path, url).start()
    devices: list[SyncClient] = []
    try:
        devices = [SyncClient(HttpSession(server.base, name)) for name in ("east1", "west1")]
        caught_up(devices[0])
        devices[1].hello()  # before its first pull: closed the same way
        assert server.proc is not None
        server.proc.terminate()
        for device in devices:
            with pytest.raises(simple_websocket.ConnectionClosed) as info:
                device.receive(timeout=15)
            assert info.value.reason == 1012
        assert server.proc.wait(timeout=15) == 0
    finally:
        for d in devices:
            d.close()
        server.stop()
