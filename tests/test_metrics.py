"""`GET /metrics` (webapp/metrics.py): what a sync session, a replay and a reconciliation add, read
back through prometheus_client's own parser; the workers of `outpost serve` add up; who may read.

The served tests run `outpost serve` on SQLite (one worker) and on PostgreSQL (two workers, the
multiprocess mode summing them); the others run in process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from benchmarks.live import MANY, HttpSession, SyncClient
from benchmarks.served import ServedServer, prepare_demo_database
from tests.conftest import Api, Org, PgSchema, _empty_pg
from tests.scope_client import ScopePhone
from tests.test_sync_replay import Device
from webapp import metrics
from webapp.crm.orgs import create_team, set_team_members
from webapp.crm.records import Actor, Owner, insert_record
from webapp.security import accounts
from webapp.services import services

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(base: str) -> Samples:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(r.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    """A sample summed over all its label values."""
    return sum(v for (n, _), v in samples.items() if n == name)


def rise(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much one sample grew."""
    return value(after, name, **labels) - value(before, name, **labels)


def rises(before: Samples, after: Samples, name: str, label: str) -> dict[str, float]:
    """How much each value of `label` grew, those that did."""
    keys = {labels for n, labels in (*before, *after) if n == name}
    grown = {dict(k)[label]: after.get((name, k), 0.0) - before.get((name, k), 0.0) for k in keys}
    return {k: v for k, v in grown.items() if v}


def wait_for(base: str, ready: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    """The first scrape `ready` accepts (what a socket's end counts is written as its handler returns)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base)
        if ready(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics never reached the expected state"
        time.sleep(0.05)  # polling a condition (the server's counts) with a deadline


class CountingClient(SyncClient):
    """A device that counts every frame it receives by type, heartbeats included."""

    def __init__(self, http: HttpSession) -> None:
        super().__init__(http)
        self.seen: collections.Counter[str] = collections.Counter()

    def receive(self, timeout: float = 10, skip: tuple[str, ...] = ("ping",)) -> dict[str, Any]:
        while True:
            frame = super().receive(timeout, skip=())
            self.seen[frame["type"]] += 1
            if frame["type"] not in skip:
                return frame


def create_op(seq: int, entity: str = "lead") -> dict[str, Any]:
    rid = str(uuid.uuid4())
    return {
        "op_id": str(uuid.uuid4()),
        "seq": seq,
        "kind": "create",
        "entity": entity,
        "id": rid,
        "changes": {"subject": f"Metrics lead {rid[:8]}", "lastname": "Sample"},
    }


@pytest.fixture(scope="module")
def pg_two_workers(pg_schema: PgSchema, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedServer]:
    """`outpost serve --workers 2` on a fresh PostgreSQL schema."""
    _empty_pg(pg_schema)
    prepare_demo_database(pg_schema.url)
    server = ServedServer(tmp_path_factory.mktemp("metrics-pg"), pg_schema.url, workers=2, env=MANY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sqlite_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedServer]:
    folder = tmp_path_factory.mktemp("metrics-sqlite")
    url = f"sqlite:///{folder / 'outpost.db'}"
    prepare_demo_database(url)
    server = ServedServer(folder, url, env=MANY).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest) -> ServedServer:
    """`outpost serve` on SQLite (one worker) or PostgreSQL (two workers)."""
    name = "sqlite_served" if request.param == "sqlite" else "pg_two_workers"
    server: ServedServer = request.getfixturevalue(name)
    return server


def test_a_sync_session_over_the_socket_raises_each_count_by_exactly_what_happened(served: ServedServer) -> None:
    before = scrape(served.base)
    http = HttpSession(served.base, "east1")
    device = CountingClient(http)
    device.hello()
    feed = device.request({"type": "pull", "cursor": 0}, timeout=30)
    pulled = 1
    while feed["more"]:
        feed = device.receive(timeout=30)
        pulled += 1
    applied, refused = create_op(1), create_op(2, entity="nosuchentity")
    ack = device.request({"type": "push", "ops": [applied, refused]}, timeout=30)
    assert [r["status"] for r in ack["results"]] == ["applied", "rejected"], ack
    live = device.receive(timeout=30)  # the device's own change, pushed live after the commit
    assert live["type"] == "changes" and live["upserts"][0]["record"]["leadid"] == applied["id"], live
    assert device.request({"type": "nonsense"})["code"] == "unknown_type"
    device.ws.send("not json")
    assert device.receive()["code"] == "bad_message"
    gauge = "outpost_sync_connected_devices"
    assert rise(before, scrape(served.base), gauge) == 1  # counted once its hello was answered
    device.close()
    closed = "outpost_sync_sessions_closed_total"
    after = wait_for(served.base, lambda s: total(s, closed) > total(before, closed))

    assert rise(before, after, "outpost_sync_sessions_opened_total") == 1
    assert rises(before, after, closed, "code") == {"1000": 1}
    assert rise(before, after, gauge) == 0
    received = rises(before, after, "outpost_sync_frames_received_total", "type")
    assert received == {"hello": 1, "pull": 1, "push": 1, "other": 1, "invalid": 1}
    sent = rises(before, after, "outpost_sync_frames_sent_total", "type")
    assert sent == dict(device.seen), "every frame the device received, and nothing else"
    assert device.seen["changes"] == pulled + 1 and device.seen["error"] == 2
    assert rises(before, after, "outpost_sync_ops_total", "status") == {"applied": 1, "rejected": 1}
    assert rise(before, after, "outpost_sync_replay_seconds_count", way="socket") == 1
    assert rise(before, after, "outpost_sync_replay_seconds_sum", way="socket") > 0
    assert rise(before, after, "outpost_sync_live_push_seconds_count") == 1
    assert rise(before, after, "outpost_sync_live_push_seconds_sum") > 0
    with urllib.request.urlopen(f"{served.base}/metrics", timeout=10) as r:
        text = r.read().decode()
    for secret in (applied["id"], applied["changes"]["subject"], device.device_id, http.user["id"], "east1"):
        assert secret not in text, f"/metrics shows {secret!r}"


def holder(server: ServedServer, client: SyncClient) -> int:
    """The worker process that holds this client's socket (its inode, found in /proc)."""
    client_port = client.ws.sock.getsockname()[1]
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server.port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inode = fields[9]
    assert inode is not None, "the server's end of the socket is not in /proc/net/tcp"
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the socket")


@pytest.mark.postgres
def test_under_gunicorn_the_workers_counts_add_up_and_a_dead_workers_sockets_leave_the_gauge(
    pg_two_workers: ServedServer,
) -> None:
    server = pg_two_workers
    before = scrape(server.base)
    http = HttpSession(server.base, "manager")
    devices: list[SyncClient] = []
    held: dict[int, list[SyncClient]] = collections.defaultdict(list)
    try:
        while len(held) < 2 or len(devices) < 4:  # until both workers hold sockets
            assert len(devices) < 60, f"every socket went to one worker: {held.keys()}"
            device = SyncClient(http)
            assert device.hello()["type"] == "welcome"
            devices.append(device)
            held[holder(server, device)].append(device)
        for device in devices:
            ack = device.request({"type": "push", "ops": [create_op(1)]}, timeout=30)
            assert ack["results"][0]["status"] == "applied", ack
        n = len(devices)
        assert all(len(group) < n for group in held.values())  # no worker alone saw them all
        gauge, applied = "outpost_sync_connected_devices", "outpost_sync_ops_total"
        for _ in range(4):  # whichever worker answers, it reports both
            now = scrape(server.base)
            assert rise(before, now, gauge) == n
            assert rise(before, now, applied, status="applied") == n
            assert rise(before, now, "outpost_sync_frames_received_total", type="hello") == n
        victim, lost = next(iter(held.items()))
        os.kill(victim, signal.SIGKILL)
        after = wait_for(server.base, lambda s: rise(before, s, gauge) == n - len(lost))
        assert rise(before, after, applied, status="applied") == n, "a dead worker's counts stay in the totals"
    finally:
        for device in devices:
            device.close()
    wait_for(server.base, lambda s: rise(before, s, gauge) == 0)


def _lead(s: Any, m: Any, owner: tuple[str, str, str], n: int) -> None:
    entity = m.entity("lead")
    insert_record(s, m, Actor(m.org_id, None, None), entity, {"subject": f"L{n}", "lastname": "L"}, None, Owner(*owner))


def test_a_scope_reconciliation_counts_once_with_the_records_it_removed(app: Flask, org: Org) -> None:
    svc = services(app)
    with svc.db.session(write=True) as s:
        m = svc.registry.model(s, org.org_id)
        team = create_team(s, m, "Tigers", org.root_bu, [org.bob])
        for n in range(20):  # bob's own leads and his team's share the id buckets
            _lead(s, m, (org.bob, "systemuser", org.root_bu), n)
            _lead(s, m, (team, "team", org.root_bu), n)
        token, _ = accounts.start_session(s, org.org_id, org.bob)
        s.commit()
    phone = ScopePhone(app, token, org.org_id, org.bob)
    client = app.test_client()
    with app.app_context():
        phone.connect()
        phone.pull()
        before, checks, removes = parse(client.get("/metrics").text), phone.checks, len(phone.removes)
        with svc.db.session(write=True) as s:
            set_team_members(s, svc.registry.model(s, org.org_id), team, [org.alice])  # bob leaves the team
            s.commit()
        phone.pull()
    removed = phone.removes[removes:]  # the reconciliation's answers: the feed had no writes to send
    assert phone.checks == checks + 1 and 0 < len(removed) <= 20
    assert {r["reason"] for r in removed} == {"out_of_scope"}
    after = parse(client.get("/metrics").text)
    assert rise(before, after, "outpost_sync_reconciliations_total") == 1
    assert rise(before, after, "outpost_sync_reconcile_removed_records_count") == 1
    assert rise(before, after, "outpost_sync_reconcile_removed_records_sum") == len(removed)


def test_ops_rolled_back_are_not_counted(app: Flask, org: Org) -> None:
    device = Device(app, org, org.alice)
    device.hello()
    client = app.test_client()
    before = parse(client.get("/metrics").text)
    with services(app).db.session(write=True) as s:
        s.execute(text("SELECT 1"))
        metrics.ops_replayed(s, ["applied", "applied"])
        s.rollback()
        s.execute(text("SELECT 1"))
        metrics.ops_replayed(s, ["rejected"])
        s.commit()
    frames = device.send({"type": "push", "ops": [device.op("create", "account", str(uuid.uuid4()), {"name": "X"})]})
    assert frames[0]["results"][0]["status"] == "applied"
    after = parse(client.get("/metrics").text)
    assert rises(before, after, "outpost_sync_ops_total", "status") == {"applied": 1, "rejected": 1}


def test_an_http_push_is_timed_as_such_and_a_resent_one_counts_no_operation_again(app: Flask, alice: Api) -> None:
    rid = str(uuid.uuid4())
    op = {"op_id": rid, "seq": 1, "kind": "create", "entity": "account", "id": rid, "changes": {"name": "HTTP Co"}}
    body = {"device_id": str(uuid.uuid4()), "app_version": "t", "ops": [op]}
    client = app.test_client()
    before = parse(client.get("/metrics").text)
    for _ in range(2):  # the second answer comes from the ledger
        resp = alice.post("/api/sync/push", json=body)
        assert resp.status_code == 200 and resp.json["results"][0]["status"] == "applied", resp.json
    after = parse(client.get("/metrics").text)
    assert rise(before, after, "outpost_sync_replay_seconds_count", way="http") == 2
    assert rise(before, after, "outpost_sync_replay_seconds_count", way="socket") == 0
    assert rises(before, after, "outpost_sync_ops_total", "status") == {"applied": 1}


@pytest.mark.parametrize(
    ("remote", "headers", "token", "status"),
    [
        ("127.0.0.1", {}, None, 200),
        ("::1", {}, None, 200),
        ("10.1.2.3", {}, None, 403),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, None, 403),
        ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, None, 403),
        ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}, None, 403),
        ("127.0.0.1", {}, "s3cret-token", 403),
        ("10.1.2.3", {"Authorization": "Bearer wrong"}, "s3cret-token", 403),
        ("10.1.2.3", {"Authorization": "Bearer s3cret-token"}, "s3cret-token", 200),
    ],
    ids=[
        "loopback",
        "loopback-v6",
        "another-host",
        "through-a-proxy",
        "forwarded",
        "real-ip",
        "token-set-none-given",
        "wrong-token",
        "right-token-from-anywhere",
    ],
)
def test_who_may_read_the_metrics(
    app: Flask, remote: str, headers: dict[str, str], token: str | None, status: int
) -> None:
    app.config["METRICS_TOKEN"] = token
    resp = app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert resp.status_code == status, resp.text
    if status == 200:
        assert "outpost_sync_sessions_opened_total" in {n for n, _ in parse(resp.text)}
        assert resp.headers["Cache-Control"] == "no-store"
    else:
        error = json.loads(resp.text)["error"]
        assert error["code"] == "forbidden" and "OUTPOST_METRICS_TOKEN" in error["message"]


def test_serve_gives_the_workers_a_fresh_metrics_folder_and_removes_it_when_it_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outpost.db'}"
    prepare_demo_database(url)
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = ServedServer(tmp_path, url, env={"TMPDIR": str(temp)}).start()  # where the folder is made
    try:
        (folder,) = temp.iterdir()
        scrape(server.base)
        assert any(f.name.startswith("counter_") for f in folder.iterdir())
    finally:
        server.stop()
    assert not folder.exists()


def test_a_metrics_folder_given_is_emptied_of_earlier_values_only(tmp_path: Path) -> None:
    for name in ("counter_12.db", "histogram_12.db", "gauge_livesum_12.db", "outpost.db", "counter_notes.txt"):
        (tmp_path / name).write_text("x")
    os.environ[metrics.MULTIPROC_ENV] = str(tmp_path)
    try:
        assert metrics.prepare_multiprocess_dir() == str(tmp_path)
        assert metrics.OWNED_ENV not in os.environ  # not ours: left in place when the server stops
    finally:
        os.environ.pop(metrics.MULTIPROC_ENV, None)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["counter_notes.txt", "outpost.db"]
