"""One push pipeline: the socket's `push` frame and `POST /api/sync/push` give the same answers.

The same operations (each path on records of its own) are pushed by one device over the socket
(`Channel`) and by another over HTTP: applied, rejected, re-sent and stopped by a seq gap. The
acks, the ledger rows, the sync errors and the hub's wake-ups must be the same, record ids
aside; and a device revoked after it registered gets nothing applied on either path.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.conftest import Api, Org
from webapp.crm.changes import current_change
from webapp.security.accounts import start_session
from webapp.services import services
from webapp.sync import devices
from webapp.sync.channel import Channel, Closing
from webapp.sync.tables import device, opledger, syncerror

NAMES = ("alpha", "beta", "gamma", "ghost")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT")  # times differ between the two runs


def frames(ids: dict[str, str]) -> list[list[dict[str, Any]]]:
    """Three pushes: mixed results, a re-send with one new op, then a gap."""

    def op(seq: int, kind: str, entity: str, name: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "op_id": f"op-{seq}",
            "seq": seq,
            "kind": kind,
            "entity": entity,
            "id": ids[name],
            "base_version": None,
            "changes": changes or {},
        }

    first = [
        op(1, "create", "account", "alpha", {"name": "Alpha"}),
        op(2, "update", "account", "alpha", {"name": "Alpha 2"}),
        op(3, "create", "contact", "beta", {"lastname": "Beta"}),
        op(4, "create", "account", "gamma", {"name": "G" * 5000}),  # too long: rejected
        op(5, "update", "account", "gamma", {"name": "Gamma"}),  # depends on a rejected create
        op(6, "update", "account", "ghost", {"name": "Nobody"}),  # no such record
        op(7, "delete", "contact", "beta"),
    ]
    return [
        first,
        [*first[:2], op(8, "update", "account", "alpha", {"telephone1": "555"})],
        [op(10, "delete", "account", "alpha")],
    ]


def plain(value: Any, ids: dict[str, str], base: int) -> Any:
    """`value` with this path's record ids named, its times blanked and its version numbers
    counted from `base` (the change number before this path's first push)."""
    back = {v: k for k, v in ids.items()}
    text = json.dumps(value, sort_keys=True, default=str)
    for rid, name in back.items():
        text = text.replace(rid, name)
    out = json.loads(text)

    def blank(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: x - base if k == "versionnumber" else blank(x) for k, x in v.items()}
        if isinstance(v, list):
            return [blank(x) for x in v]
        return "<time>" if isinstance(v, str) and STAMP.match(v) else v

    return blank(out)


class Wakes:
    """The hub's publish and notify calls, in order."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        hub = services(app).hub
        publish, notify = hub.publish, hub.notify

        def spy_publish(s: Any, kind: str, key: str) -> None:
            self.calls.append(["publish", kind, key])
            publish(s, kind, key)

        def spy_notify(org_id: str) -> None:
            self.calls.append(["notify", org_id])
            notify(org_id)

        monkeypatch.setattr(hub, "publish", spy_publish)
        monkeypatch.setattr(hub, "notify", spy_notify)

    def take(self) -> list[list[str]]:
        out, self.calls = self.calls, []
        return out


def over_socket(app: Flask, org: Org, device_id: str, pushes: list[list[dict[str, Any]]], wakes: Wakes) -> list[Any]:
    svc = services(app)
    with svc.db.session(write=True) as s:
        token, _ = start_session(s, org.org_id, org.alice)
        s.commit()
    channel = Channel(app, token, org.org_id, org.alice, services=svc)
    out = []
    with app.app_context():
        assert channel.receive(json.dumps({"type": "hello", "device_id": device_id}))[0]["type"] == "welcome"
        for ops in pushes:
            answer = channel.receive(json.dumps({"type": "push", "ops": ops}))
            results = [f["results"] for f in answer if f["type"] == "ack"]
            errors = [f for f in answer if f["type"] == "error"]
            out.append(
                ({"results": results[0] if results else [], **({"error": errors[0]} if errors else {})}, wakes.take())
            )
    return out


def over_http(alice: Api, device_id: str, pushes: list[list[dict[str, Any]]], wakes: Wakes) -> list[Any]:
    out = []
    for ops in pushes:
        resp = alice.post("/api/sync/push", json={"device_id": device_id, "app_version": "t", "ops": ops})
        assert resp.status_code == 200, resp.json
        out.append((resp.json, wakes.take()))
    return out


def change_number(app: Flask) -> int:
    with services(app).db.session() as s:
        return current_change(s)


def stored(app: Flask, device_id: str, ids: dict[str, str], base: int) -> Any:
    """What the push left in the database for this device: its ledger, sync errors and row."""
    with services(app).db.session() as s:
        ledger = s.execute(
            select(
                opledger.c.seq,
                opledger.c.op_id,
                opledger.c.kind,
                opledger.c.recordid,
                opledger.c.status,
                opledger.c.result,
            )
            .where(opledger.c.deviceid == device_id)
            .order_by(opledger.c.seq)
        ).all()
        errors = s.execute(
            select(syncerror.c.seq, syncerror.c.status, syncerror.c.code, syncerror.c.message)
            .where(syncerror.c.deviceid == device_id)
            .order_by(syncerror.c.seq)
        ).all()
        row = s.execute(select(device.c.status, device.c.last_sync).where(device.c.deviceid == device_id)).one()
    assert row.last_sync is not None
    return plain(
        {"ledger": [list(r) for r in ledger], "errors": [list(r) for r in errors], "status": row.status}, ids, base
    )


def test_the_socket_and_http_give_the_same_acks_ledger_errors_and_wakes(
    app: Flask, org: Org, alice: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    wakes = Wakes(app, monkeypatch)
    ids_socket = {name: str(uuid.uuid4()) for name in NAMES}
    ids_http = {name: str(uuid.uuid4()) for name in NAMES}
    socket_device, http_device = str(uuid.uuid4()), str(uuid.uuid4())
    base_socket = change_number(app)
    by_socket = over_socket(app, org, socket_device, frames(ids_socket), wakes)
    base_http = change_number(app)
    by_http = over_http(alice, http_device, frames(ids_http), wakes)
    assert base_http > base_socket
    assert plain(by_socket, ids_socket, base_socket) == plain(by_http, ids_http, base_http)
    # ...and they say what they should (so two equally wrong paths do not pass).
    (first, first_wakes), (again, _), (gap, gap_wakes) = plain(by_socket, ids_socket, base_socket)
    assert [r["status"] for r in first["results"]] == ["applied", "applied", "applied"] + ["rejected"] * 3 + ["applied"]
    assert [r["reason"]["code"] for r in first["results"][3:6]] == [
        "validation_failed",
        "depends_on_rejected",
        "not_found",
    ]
    assert [r["seq"] for r in again["results"]] == [1, 2, 8] and again["results"][2]["status"] == "applied"
    assert first_wakes == [["publish", "changed", org.org_id], ["notify", org.org_id]]
    assert gap == {
        "results": [],
        "error": {"type": "error", "code": "seq_gap", "message": gap["error"]["message"], "expected_seq": 9},
    }
    assert gap_wakes == []  # nothing applied, nobody woken
    ledger = stored(app, socket_device, ids_socket, base_socket)
    assert ledger == stored(app, http_device, ids_http, base_http)
    assert [row[0] for row in ledger["ledger"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [row[:3] for row in ledger["errors"]] == [
        [4, "rejected", "validation_failed"],
        [5, "rejected", "depends_on_rejected"],
        [6, "rejected", "not_found"],
    ]


def test_a_device_revoked_after_it_registered_gets_nothing_applied_on_either_path(
    app: Flask, org: Org, alice: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    wakes = Wakes(app, monkeypatch)
    svc = services(app)
    socket_device, http_device = str(uuid.uuid4()), str(uuid.uuid4())
    with svc.db.session(write=True) as s:
        token, _ = start_session(s, org.org_id, org.alice)
        s.commit()
    channel = Channel(app, token, org.org_id, org.alice, services=svc)
    first = frames({name: str(uuid.uuid4()) for name in NAMES})[0][:1]
    with app.app_context():
        assert channel.receive(json.dumps({"type": "hello", "device_id": socket_device}))[0]["type"] == "welcome"
    ok = alice.post("/api/sync/push", json={"device_id": http_device, "ops": first})
    assert ok.status_code == 200 and ok.json["results"][0]["status"] == "applied"
    wakes.take()
    with svc.db.session(write=True) as s:
        devices.revoke(s, socket_device)
        devices.revoke(s, http_device)
        s.commit()
    with app.app_context(), pytest.raises(Closing) as closed:
        channel.receive(json.dumps({"type": "push", "ops": first}))
    assert closed.value.code == 1000
    assert closed.value.frames == [{"type": "wipe", "reason": "This device was revoked by an administrator."}]
    again = frames({name: str(uuid.uuid4()) for name in NAMES})[0][1:2]  # seq 2, a new record
    refused = alice.post("/api/sync/push", json={"device_id": http_device, "ops": again})
    assert refused.status_code == 403
    assert refused.json["error"] == {"code": "revoked", "message": "This device was revoked by an administrator."}
    assert wakes.take() == []
    with svc.db.session() as s:
        counts = {
            d: len(s.execute(select(opledger.c.seq).where(opledger.c.deviceid == d)).all())
            for d in (socket_device, http_device)
        }
    assert counts == {socket_device: 0, http_device: 1}
