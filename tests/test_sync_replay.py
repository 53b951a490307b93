"""The sync engine without sockets: replay, conflicts, download and the change feed.

A `Device` drives a `Channel` exactly as the socket handler does (text in, frames out), on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.conftest import Org
from webapp.crm.tables import changelog
from webapp.security.accounts import start_session
from webapp.services import services
from webapp.sync.channel import Channel, Closing
from webapp.sync.profile import set_offline
from webapp.sync.tables import syncerror


class Device:
    """A protocol-level device: its own id, seq counter and cursor."""

    def __init__(self, app: Flask, org: Org, user_id: str, org_id: str | None = None) -> None:
        svc = services(app)
        with svc.db.session(write=True) as s:
            token, _ = start_session(s, org_id or org.org_id, user_id)
            s.commit()
        self.app = app
        self.channel = Channel(app, token, org_id or org.org_id, user_id, services=svc)
        self.device_id = str(uuid.uuid4())
        self.seq = 0

    def send(self, msg: Any) -> list[dict[str, Any]]:
        with self.app.app_context():
            return self.channel.receive(json.dumps(msg) if not isinstance(msg, str) else msg)

    def hello(self) -> dict[str, Any]:
        frames = self.send({"type": "hello", "device_id": self.device_id, "app_version": "test"})
        assert frames[0]["type"] == "welcome", frames
        return frames[0]

    def op(
        self,
        kind: str,
        entity: str,
        rid: str,
        changes: dict[str, Any] | None = None,
        base: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        self.seq += 1
        return {
            "op_id": str(uuid.uuid4()),
            "seq": self.seq,
            "kind": kind,
            "entity": entity,
            "id": rid,
            "base_version": base,
            "changes": changes or {},
            **kw,
        }

    def push(self, *ops: dict[str, Any]) -> list[dict[str, Any]]:
        return self.send({"type": "push", "ops": list(ops)})


def new_id() -> str:
    return str(uuid.uuid4())


def count_changes(app: Flask, record_id: str) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).where(changelog.c.recordid == record_id)).scalar_one())


def settings(app: Flask, org: Org, **kw: Any) -> None:
    svc = services(app)
    with svc.db.session(write=True) as s:
        set_offline(s, svc.registry.model(s, org.org_id), **kw)
        s.commit()


@pytest.fixture
def device(app: Flask, org: Org) -> Device:
    d = Device(app, org, org.alice)
    d.hello()
    return d


def test_welcome_tells_the_device_the_next_seq_and_registers_it(app: Flask, org: Org) -> None:
    d = Device(app, org, org.alice)
    welcome = d.hello()
    assert welcome["device_id"] == d.device_id
    assert welcome["next_seq"] == 1
    assert welcome["user"] == {"id": org.alice, "username": "alice"}
    assert welcome["metadata_version"]
    d.push(d.op("create", "account", new_id(), {"name": "A"}))
    again = Device(app, org, org.alice)
    again.device_id = d.device_id
    assert again.hello()["next_seq"] == 2


def test_operations_apply_in_order_and_the_ack_carries_every_touched_record(device: Device) -> None:
    acc, con = new_id(), new_id()
    frames = device.push(
        device.op("create", "account", acc, {"name": "Made offline"}),
        device.op(
            "create", "contact", con, {"lastname": "Lee", "parentcustomerid_account@odata.bind": f"/accounts({acc})"}
        ),
        device.op("update", "account", acc, {"telephone1": "555"}, base=None),
        device.op("delete", "contact", con),
    )
    assert [f["type"] for f in frames] == ["ack"]
    results = frames[0]["results"]
    assert [(r["seq"], r["status"]) for r in results] == [
        (1, "applied"),
        (2, "applied"),
        (3, "applied"),
        (4, "applied"),
    ]
    assert results[1]["records"][0]["record"]["_parentcustomerid_value"] == acc
    assert results[2]["records"][0]["record"]["telephone1"] == "555"
    assert results[3]["removed"] == [{"entity": "contact", "id": con}]


def test_a_re_sent_operation_gets_its_first_result_and_is_not_applied_twice(app: Flask, device: Device) -> None:
    acc = new_id()
    op = device.op("create", "account", acc, {"name": "Once"})
    first = device.push(op)[0]["results"][0]
    again = device.push(op)[0]["results"][0]
    assert again == first
    assert count_changes(app, acc) == 1
    update = device.op("update", "account", acc, {"name": "Twice?"})
    device.push(update)
    device.push(update)
    assert count_changes(app, acc) == 2


def test_a_re_sent_operation_carries_its_records_as_they_are_now(app: Flask, org: Org, device: Device) -> None:
    """Found by the sync model: a device whose ack was lost pulls (the record is removed), pushes
    again, and took the stale record of the first answer back, keeping a deleted record for good."""
    acc = new_id()
    create = device.op("create", "account", acc, {"name": "Soon gone"})
    first = device.push(create)[0]["results"][0]  # ... and the connection drops before the ack arrives
    assert [r["record"]["accountid"] for r in first["records"]] == [acc]
    other = Device(app, org, org.alice)
    other.hello()
    other.push(other.op("delete", "account", acc))
    again = device.push(create)[0]["results"][0]
    assert (again["op_id"], again["status"]) == (first["op_id"], "applied")
    assert again["records"] == []
    assert again["removed"] == [{"entity": "account", "id": acc}]
    assert count_changes(app, acc) == 2  # the create and the delete: nothing applied twice


def test_a_re_sent_operation_carries_nothing_the_user_may_no_longer_read(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in

    bob = Device(app, org, org.bob)
    bob.hello()
    lead = new_id()
    create = bob.op("create", "lead", lead, {"subject": "Bob's", "lastname": "L"})
    assert bob.push(create)[0]["results"][0]["records"][0]["record"]["leadid"] == lead
    admin = sign_in(app, "contoso", "alice")
    admin.post(f"/api/data/leads({lead})/assign", json={"ownerid@odata.bind": f"/systemusers({org.alice})"})
    again = bob.push(create)[0]["results"][0]
    assert again["status"] == "applied"
    assert again["records"] == []
    assert again["removed"] == [{"entity": "lead", "id": lead}]


def test_a_gap_is_refused_and_nothing_from_the_gap_on_is_applied(app: Flask, device: Device) -> None:
    acc = new_id()
    ok = device.op("create", "account", acc, {"name": "First"})
    device.seq += 1  # seq 2 goes missing
    late = device.op("update", "account", acc, {"name": "Third"})
    frames = device.push(ok, late)
    assert frames[0]["results"][0]["status"] == "applied"
    assert frames[1] == {"type": "error", "code": "seq_gap", "message": frames[1]["message"], "expected_seq": 2}
    assert count_changes(app, acc) == 1


def test_a_used_seq_with_a_new_op_id_is_refused(device: Device) -> None:
    op = device.op("create", "account", new_id(), {"name": "A"})
    device.push(op)
    other = {**op, "op_id": str(uuid.uuid4()), "id": new_id()}
    frames = device.push(other)
    assert frames == [{"type": "error", "code": "seq_reused", "message": frames[0]["message"], "seq": 1}]


def test_a_rejected_operation_never_blocks_the_queue_and_its_dependants_are_rejected(
    app: Flask, device: Device
) -> None:
    bad, good, child = new_id(), new_id(), new_id()
    frames = device.push(
        device.op("create", "account", bad, {"name": "x" * 500}),
        device.op(
            "create", "contact", child, {"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({bad})"}
        ),
        device.op("update", "account", bad, {"name": "fixed"}),
        device.op("create", "account", good, {"name": "Fine"}),
    )
    results = frames[0]["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "applied"]
    assert results[0]["reason"]["code"] == "validation_failed"
    assert results[0]["reason"]["field"] == "name"
    assert list(results[0]["reason"]["details"]) == ["name"]  # each field's message (issue 15)
    assert results[0]["removed"] == [{"entity": "account", "id": bad}]
    assert results[1]["reason"]["message"] == "This operation depends on a rejected operation."
    assert results[2]["reason"]["code"] == "depends_on_rejected"
    # The rule holds across pushes too.
    later = device.push(device.op("update", "account", bad, {"name": "still no"}))[0]["results"][0]
    assert later["reason"]["code"] == "depends_on_rejected"
    with services(app).db.session() as s:
        logged = s.execute(select(syncerror.c.seq, syncerror.c.code).order_by(syncerror.c.seq)).all()
    assert [tuple(r) for r in logged] == [
        (1, "validation_failed"),
        (2, "depends_on_rejected"),
        (3, "depends_on_rejected"),
        (5, "depends_on_rejected"),
    ]


def test_a_create_whose_record_id_differs_from_the_operations_id_is_rejected(app: Flask, device: Device) -> None:
    """The operation's id names the record: a body naming another is refused, and neither exists."""
    op_id, other = new_id(), new_id()
    result = device.push(device.op("create", "account", op_id, {"name": "Two ids", "accountid": other}))[0]["results"]
    assert result[0]["status"] == "rejected"
    assert result[0]["reason"] == {
        "code": "bad_request",
        "message": "The record's id differs from the operation's id.",
    }
    assert count_changes(app, op_id) == 0 and count_changes(app, other) == 0


def test_a_rejected_create_sent_again_fixed_under_a_new_seq_applies(app: Flask, device: Device) -> None:
    """Only the ops that depend on a rejected create are refused, not a new create of the same id."""
    acc = new_id()
    first = device.push(device.op("create", "account", acc, {"name": "x" * 500}))[0]["results"][0]
    assert first["reason"]["code"] == "validation_failed"
    again = device.push(device.op("create", "account", acc, {"name": "Fixed"}))[0]["results"][0]
    assert again["status"] == "applied", again.get("reason")
    assert count_changes(app, acc) == 1


def test_a_malformed_batch_is_refused_whole(app: Flask, device: Device) -> None:
    acc = new_id()
    good = device.op("create", "account", acc, {"name": "A"})
    frames = device.push(good, {"seq": 2, "kind": "create"})
    assert frames[0]["code"] == "bad_message"
    assert count_changes(app, acc) == 0


def test_operations_outside_the_offline_command_set_are_rejected(device: Device) -> None:
    results = device.push(
        device.op("create", "email", new_id(), {"subject": "s"}),
        device.op("create", "activitypointer", new_id(), {"subject": "s"}),
        device.op("create", "nothing", new_id(), {}),
        device.op("command", "lead", new_id(), command="close_opportunity", args={}),
    )[0]["results"]
    assert [r["reason"]["code"] for r in results] == [
        "not_allowed_offline",
        "not_allowed_offline",
        "unknown_entity",
        "not_allowed_offline",
    ]


def test_an_entity_switched_off_the_offline_profile_is_refused(app: Flask, org: Org, device: Device) -> None:
    settings(app, org, entity="competitor", entity_enabled=False)
    result = device.push(device.op("create", "competitor", new_id(), {"name": "C"}))[0]["results"][0]
    assert result["reason"]["code"] == "not_allowed_offline"


def test_replay_runs_as_the_user_under_the_security_model(app: Flask, org: Org, device: Device) -> None:
    lead = new_id()
    device.push(device.op("create", "lead", lead, {"subject": "Alice's", "lastname": "L"}))
    bob = Device(app, org, org.bob)
    bob.hello()
    results = bob.push(
        bob.op("update", "lead", lead, {"subject": "Bob was here"}),
        bob.op("create", "product", new_id(), {"name": "P", "productnumber": "1"}),
        bob.op("create", "account", new_id(), {"name": "Mine", "ownerid": org.alice}),
    )[0]["results"]
    assert [r["reason"]["code"] for r in results] == ["not_found", "forbidden", "validation_failed"]
    assert results[0]["removed"] == [{"entity": "lead", "id": lead}]


@pytest.mark.parametrize("detection", [False, True])
def test_a_stale_update_follows_the_conflict_setting_field_by_field(
    app: Flask, org: Org, device: Device, detection: bool
) -> None:
    settings(app, org, conflict_detection=detection)
    acc = new_id()
    created = device.push(device.op("create", "account", acc, {"name": "Base", "telephone1": "1"}))[0]["results"][0]
    base = created["records"][0]["record"]["versionnumber"]
    other = Device(app, org, org.alice)
    other.hello()
    other.push(other.op("update", "account", acc, {"telephone1": "server"}, base=base))
    result = device.push(
        device.op("update", "account", acc, {"telephone1": "device", "name": "Device name"}, base=base)
    )[0]["results"][0]
    record = result["records"][0]["record"]
    assert record["name"] == "Device name"  # a field the server did not change always applies
    if detection:
        assert result["status"] == "conflict"
        assert record["telephone1"] == "server"
        assert result["reason"]["message"].startswith("Automatically resolved")
        assert result["reason"]["fields"] == ["telephone1"]
    else:
        assert result["status"] == "applied"
        assert record["telephone1"] == "device"


@pytest.mark.parametrize("detection", [False, True])
def test_update_after_delete_is_rejected_under_both_settings(
    app: Flask, org: Org, device: Device, detection: bool
) -> None:
    settings(app, org, conflict_detection=detection)
    acc = new_id()
    base = device.push(device.op("create", "account", acc, {"name": "Doomed"}))[0]["results"][0]["records"][0][
        "record"
    ]["versionnumber"]
    other = Device(app, org, org.alice)
    other.hello()
    other.push(other.op("delete", "account", acc, base=base))
    result = device.push(device.op("update", "account", acc, {"name": "Too late"}, base=base))[0]["results"][0]
    assert result["status"] == "rejected"
    assert "deleted on the server" in result["reason"]["message"]
    assert result["removed"] == [{"entity": "account", "id": acc}]


@pytest.mark.parametrize("detection", [False, True])
def test_delete_after_update_follows_the_conflict_setting(
    app: Flask, org: Org, device: Device, detection: bool
) -> None:
    settings(app, org, conflict_detection=detection)
    acc = new_id()
    base = device.push(device.op("create", "account", acc, {"name": "Kept?"}))[0]["results"][0]["records"][0]["record"][
        "versionnumber"
    ]
    other = Device(app, org, org.alice)
    other.hello()
    other.push(other.op("update", "account", acc, {"name": "Changed on the server"}, base=base))
    result = device.push(device.op("delete", "account", acc, base=base))[0]["results"][0]
    if detection:
        assert result["status"] == "conflict"
        assert result["records"][0]["record"]["name"] == "Changed on the server"
    else:
        assert result["status"] == "applied"
        assert result["removed"] == [{"entity": "account", "id": acc}]


def test_deleting_a_record_that_is_already_gone_is_applied(device: Device) -> None:
    result = device.push(device.op("delete", "account", new_id()))[0]["results"][0]
    assert result["status"] == "applied"


def test_download_pages_resume_after_the_last_id_and_hold_filter_and_scope(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in

    admin = sign_in(app, "contoso", "alice")
    names = [f"Acc {i:02d}" for i in range(12)]
    for n in names:
        admin.post("/api/data/accounts", json={"name": n})
    d = Device(app, org, org.alice)
    d.hello()
    first = d.send({"type": "download", "entity": "account", "after": None, "limit": 5})[0]
    assert first["type"] == "page"
    assert first["total"] == 12
    assert len(first["records"]) == 5
    got = [r["accountid"] for r in first["records"]]
    after = first["next"]
    while after:
        page = d.send({"type": "download", "entity": "account", "after": after, "limit": 5})[0]
        got += [r["accountid"] for r in page["records"]]
        after = page["next"]
    assert len(got) == len(set(got)) == 12
    assert got == sorted(got)
    # bob, a salesperson at the root, holds none of alice's East accounts.
    bob = Device(app, org, org.bob)
    bob.hello()
    assert bob.send({"type": "download", "entity": "account", "after": None, "limit": 50})[0]["total"] == 0
    # The profile filter narrows further: 'mine' for alice, who owns them all.
    settings(app, org, entity="account", filter_spec="mine")
    assert d.send({"type": "download", "entity": "account", "after": None, "limit": 50})[0]["total"] == 12


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"type": "download", "entity": "email", "after": None, "limit": 0}, "bad_request"),
        ({"type": "download", "entity": "nothing", "after": None, "limit": 10}, "bad_request"),
        ({"type": "download", "entity": "activitypointer", "after": None, "limit": 10}, "bad_request"),
        ({"type": "pull", "cursor": -1}, "bad_message"),
        ({"type": "pull", "cursor": "x"}, "bad_message"),
        ({"type": "push", "ops": "x"}, "bad_message"),
        ({"type": "push", "ops": []}, "bad_message"),
        ({"type": "bogus"}, "unknown_type"),
        ({"no": "type"}, "bad_message"),
        ("{not json", "bad_message"),
        ("[1, 2]", "bad_message"),
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_channel_goes_on(device: Device, msg: Any, code: str) -> None:
    frames = device.send(msg)
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == code
    assert device.send({"type": "ping"}) == [{"type": "pong"}]


def test_nothing_but_hello_is_accepted_first(app: Flask, org: Org) -> None:
    d = Device(app, org, org.alice)
    assert d.send({"type": "pull", "cursor": 0})[0]["code"] == "bad_message"


def test_a_device_id_of_another_user_is_refused(app: Flask, org: Org, device: Device) -> None:
    thief = Device(app, org, org.bob)
    thief.device_id = device.device_id
    frames = thief.send({"type": "hello", "device_id": device.device_id})
    assert frames[0]["code"] == "device_mismatch"


def test_a_revoked_device_is_told_to_wipe_itself(app: Flask, device: Device) -> None:
    from webapp.sync.devices import revoke

    with services(app).db.session(write=True) as s:
        revoke(s, device.device_id)
        s.commit()
    with pytest.raises(Closing) as info:
        device.hello()
    assert info.value.frames[0]["type"] == "wipe"


def test_an_ended_session_closes_the_channel_with_1008(app: Flask, org: Org, device: Device) -> None:
    from webapp.security.accounts import revoke_user_sessions

    with services(app).db.session(write=True) as s:
        revoke_user_sessions(s, org.alice)
        s.commit()
    with pytest.raises(Closing) as info:
        device.send({"type": "pull", "cursor": 0})
    assert info.value.code == 1008
    assert info.value.frames[0]["code"] == "unauthenticated"


def test_the_feed_carries_own_writes_other_writes_and_removes(app: Flask, org: Org, device: Device) -> None:
    from tests.conftest import sign_in

    start = device.send({"type": "pull", "cursor": 0})[-1]["cursor"]
    acc = new_id()
    device.push(device.op("create", "account", acc, {"name": "Mine"}))
    admin = sign_in(app, "contoso", "alice")
    other = admin.post("/api/data/accounts", json={"name": "From the web"}).json["accountid"]
    frames = device.send({"type": "pull", "cursor": start})
    upserts = {u["record"]["accountid"]: u["record"] for f in frames for u in f["upserts"]}
    assert set(upserts) == {acc, other}
    admin.delete(f"/api/data/accounts({other})")
    after = frames[-1]["cursor"]
    frames = device.send({"type": "pull", "cursor": after})
    assert [r for f in frames for r in f["removes"]] == [{"entity": "account", "id": other, "reason": "deleted"}]


def test_a_record_reassigned_out_of_scope_is_removed_from_the_device_that_lost_it(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in

    bob = Device(app, org, org.bob)
    bob.hello()
    lead = new_id()
    bob.push(bob.op("create", "lead", lead, {"subject": "Bob's", "lastname": "L"}))
    cursor = bob.send({"type": "pull", "cursor": 0})[-1]["cursor"]
    admin = sign_in(app, "contoso", "alice")
    admin.post(f"/api/data/leads({lead})/assign", json={"ownerid@odata.bind": f"/systemusers({org.alice})"})
    frames = bob.send({"type": "pull", "cursor": cursor})
    assert [r for f in frames for r in f["removes"]] == [{"entity": "lead", "id": lead, "reason": "out_of_scope"}]
    # ... and a share brings it back.
    cursor = frames[-1]["cursor"]
    admin.post(
        f"/api/data/leads({lead})/share", json={"principal@odata.bind": f"/systemusers({org.bob})", "rights": ["read"]}
    )
    frames = bob.send({"type": "pull", "cursor": cursor})
    assert [u["record"]["leadid"] for f in frames for u in f["upserts"]] == [lead]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "A", "ownerid": "00000000-0000-4000-8000-000000000001"},
        {"name": "A", "owningbusinessunit": "00000000-0000-4000-8000-000000000001"},
        {"name": "A", "versionnumber": 99},
        {"name": "A", "createdon": "2020-01-01T00:00:00Z"},
        {"name": "A", "modifiedon": "2020-01-01T00:00:00Z"},
        {"name": "A", "modifiedby": "00000000-0000-4000-8000-000000000001"},
        {"name": "A", "statecode": 1, "_ownerid_value": "00000000-0000-4000-8000-000000000001"},
    ],
)
def test_a_replayed_payload_cannot_set_what_the_server_owns(app: Flask, device: Device, changes: dict) -> None:
    rid = new_id()
    before = count_changes(app, rid)
    result = device.push(device.op("create", "account", rid, changes))[0]["results"][0]
    assert result["status"] == "rejected"
    assert result["reason"]["code"] == "validation_failed"
    assert count_changes(app, rid) == before == 0


def test_a_replayed_state_change_follows_the_metadata_transitions(app: Flask, device: Device) -> None:
    lead = new_id()
    assert (
        device.push(device.op("create", "lead", lead, {"subject": "S", "lastname": "L"}))[0]["results"][0]["status"]
        == "applied"
    )
    sneaky = device.push(device.op("update", "lead", lead, {"statecode": 1}, base=1))[0]["results"][0]
    assert sneaky["status"] == "rejected"
    assert sneaky["reason"]["field"] == "statecode"
    assert "Use Qualify or Disqualify" in sneaky["reason"]["message"]
    assert count_changes(app, lead) == 1  # only the create


def _secure(app: Flask, org: Org, entity: str, attribute: str, grant: tuple[bool, bool, bool] | None = None) -> None:
    """Secure a field; with `grant`, give bob a profile with (read, create, update) on it."""
    from webapp.security import fieldsecurity

    svc = services(app)
    with svc.db.session(write=True) as s:
        m = svc.registry.model(s, org.org_id)
        fieldsecurity.set_secured(s, m, entity, attribute)
        if grant is not None:
            pid = fieldsecurity.create_profile(s, m, f"{entity}.{attribute}")
            fieldsecurity.set_permission(s, m, pid, entity, attribute, *grant)
            fieldsecurity.add_member(s, m, pid, org.bob, "systemuser")
        s.commit()


@pytest.mark.parametrize("grant", [None, (False, True, True)], ids=["no grant", "write but not read"])
def test_a_stale_update_of_a_secured_field_answers_the_same_whether_the_server_changed_it(
    app: Flask, org: Org, grant: tuple[bool, bool, bool] | None
) -> None:
    """Server wins field by field, but only over fields the user may read: the answer to a stale
    write of a secured field never tells whether the server changed it (issue 17, item 2)."""
    settings(app, org, conflict_detection=True)
    _secure(app, org, "account", "telephone1", grant)
    bob = Device(app, org, org.bob)
    bob.hello()
    admin = Device(app, org, org.alice)
    admin.hello()
    answers = []
    for server_change in ({"telephone1": "changed by the server"}, {"websiteurl": "changed.example"}):
        acc = new_id()
        created = bob.push(bob.op("create", "account", acc, {"name": "Mine"}))[0]["results"][0]
        assert created["status"] == "applied", created
        base = created["records"][0]["record"]["versionnumber"]
        changed = admin.push(admin.op("update", "account", acc, server_change))[0]["results"][0]
        assert changed["status"] == "applied", changed.get("reason")
        result = bob.push(bob.op("update", "account", acc, {"telephone1": "from the device"}, base=base))[0]
        answer = result["results"][0]
        shown = [(sorted(r["record"]), r["record"].get("telephone1")) for r in answer["records"]]
        answers.append((answer["status"], answer.get("reason"), shown))
    assert answers[0] == answers[1]
    assert answers[0][0] == ("rejected" if grant is None else "applied")
