"""Replay as sets (issue 13): a push frame is applied in one transaction, each record loaded
once, the writes sent with executemany — and every rule of docs/protocol.md still holds per
operation: order, exactly once, per-op statuses, a refused op that blocks nothing and leaves
no partial write, the conflict rules. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from tests.conftest import Org
from tests.test_sync_replay import Device, count_changes, new_id, settings
from webapp.crm.tables import changelog
from webapp.services import services
from webapp.sync.tables import opledger, syncerror


@pytest.fixture
def device(app: Flask, org: Org) -> Device:
    d = Device(app, org, org.alice)
    d.hello()
    return d


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs (an executemany counts once)."""
    seen: list[str] = []
    engines = {services(app).db.read_engine, services(app).db.write_engine}

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", note)


def created(device: Device, n: int, label: str) -> list[tuple[str, int]]:
    """N accounts created (one frame per 100), as (id, version)."""
    ids = [new_id() for _ in range(n)]
    out: list[tuple[str, int]] = []
    for start in range(0, n, 100):
        part = ids[start : start + 100]
        frames = device.push(*(device.op("create", "account", i, {"name": f"{label} {i[:4]}"}) for i in part))
        results = frames[0]["results"]
        assert all(r["status"] == "applied" for r in results), results
        out += [(r["records"][0]["record"]["accountid"], r["records"][0]["record"]["versionnumber"]) for r in results]
    return out


seen_last: list[str] = []


# A frame's fixed cost: session, organisation, security epoch, three ledger reads, a SELECT … IN
# per entity (+ shares), the numbering (+ PostgreSQL's lock and sequence), one executemany per
# table, lookup names per target entity, the device row, NOTIFY on PostgreSQL. Was ~9 per op.
def frame_statements(app: Flask, device: Device, ops: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    with statements(app) as seen:
        frames = device.push(*ops)
    seen_last[:] = seen
    assert frames[0]["type"] == "ack", frames
    return len(seen), frames[0]["results"]


def test_a_frame_of_updates_costs_a_fixed_number_of_statements_whatever_its_size(app: Flask, device: Device) -> None:
    accounts = created(device, 110, "Counted")
    small, small_results = frame_statements(
        app,
        device,
        [device.op("update", "account", i, {"telephone1": "1"}, base=v) for i, v in accounts[:10]],
    )
    large, large_results = frame_statements(
        app,
        device,
        [device.op("update", "account", i, {"telephone1": "2"}, base=v) for i, v in accounts[10:110]],
    )
    assert {r["status"] for r in small_results + large_results} == {"applied"}
    assert large == small, "statements must not grow with the operations in a frame"
    assert large <= 20, f"{large} statements for a frame of 100 updates: " + "\n".join(s[:60] for s in seen_last)


def test_a_frame_of_creates_costs_a_fixed_number_of_statements(app: Flask, device: Device) -> None:
    def frame(n: int) -> list[dict[str, Any]]:
        return [
            device.op(
                "create",
                "contact",
                new_id(),
                {"lastname": f"L{i}", "parentcustomerid_account@odata.bind": f"/accounts({parent})"},
            )
            for i in range(n)
        ]

    parent = created(device, 1, "Parent")[0][0]
    small, _ = frame_statements(app, device, frame(5))
    large, results = frame_statements(app, device, frame(100))
    assert all(r["status"] == "applied" for r in results)
    assert all(r["records"][0]["record"]["_parentcustomerid_value"] == parent for r in results)
    assert large == small
    assert large <= 20, f"{large} statements for a frame of 100 creates: " + "\n".join(s[:60] for s in seen_last)


def test_a_re_sent_frame_is_answered_from_the_ledger_and_applies_nothing_twice(app: Flask, device: Device) -> None:
    acc, con = new_id(), new_id()
    ops = [
        device.op("create", "account", acc, {"name": "Once"}),
        device.op(
            "create", "contact", con, {"lastname": "L", "parentcustomerid_account@odata.bind": f"/accounts({acc})"}
        ),
        device.op("update", "account", acc, {"telephone1": "1"}),
    ]
    first = device.push(*ops)[0]["results"]
    again = device.push(*ops)[0]["results"]
    assert [(r["seq"], r["status"]) for r in again] == [(r["seq"], r["status"]) for r in first]
    assert again[2]["records"] == first[2]["records"]
    assert count_changes(app, acc) == 2 and count_changes(app, con) == 1
    # Half re-sent, half new: the old half answers from the ledger, the new half applies.
    more = device.op("update", "account", acc, {"telephone1": "2"})
    mixed = device.push(ops[1], ops[2], more)[0]["results"]
    assert [(r["seq"], r["status"]) for r in mixed] == [(2, "applied"), (3, "applied"), (4, "applied")]
    # Each answer carries its records as they stand at its place in seq order.
    assert mixed[1]["records"][0]["record"]["telephone1"] == "1"
    assert mixed[2]["records"][0]["record"]["telephone1"] == "2"
    assert count_changes(app, acc) == 3
    with services(app).db.session() as s:
        seqs = s.execute(select(opledger.c.seq).where(opledger.c.deviceid == device.device_id)).scalars().all()
    assert sorted(seqs) == [1, 2, 3, 4]


def test_the_ledger_keeps_each_answers_records_by_id_and_a_re_send_reads_them_afresh(
    app: Flask, device: Device
) -> None:
    acc = new_id()
    create = device.op("create", "account", acc, {"name": "Slim", "telephone1": "1"})
    first = device.push(create)[0]["results"]
    assert first[0]["records"][0]["record"]["telephone1"] == "1"
    with services(app).db.session() as s:
        kept = s.execute(select(opledger.c.result).where(opledger.c.deviceid == device.device_id)).scalar_one()
    # What the device was sent is not copied into the ledger: only which record it was.
    assert kept["records"] == [{"entity": "account", "record": {"accountid": acc}}]
    assert (kept["seq"], kept["status"]) == (first[0]["seq"], "applied")
    device.push(device.op("update", "account", acc, {"telephone1": "2"}))
    again = device.push(create)[0]["results"]
    assert [(r["seq"], r["status"]) for r in again] == [(first[0]["seq"], "applied")]
    assert again[0]["records"][0]["record"]["telephone1"] == "2"  # as the server has it now, in full
    assert again[0]["records"][0]["record"]["name"] == "Slim"
    assert count_changes(app, acc) == 2


def test_operations_apply_and_are_numbered_in_seq_order_within_and_across_frames(app: Flask, device: Device) -> None:
    acc = new_id()
    first = device.push(
        device.op("create", "account", acc, {"name": "v1"}),
        device.op("update", "account", acc, {"name": "v2"}),
        device.op("update", "account", acc, {"name": "v3", "telephone1": "3"}),
    )[0]["results"]
    second = device.push(
        device.op("update", "account", acc, {"name": "v4"}),
        device.op("update", "account", acc, {"telephone1": "5"}),
    )[0]["results"]
    records = [r["records"][0]["record"] for r in first + second]
    assert [r["name"] for r in records] == ["v1", "v2", "v3", "v4", "v4"]
    assert [r["telephone1"] for r in records] == [None, None, "3", "3", "5"]
    versions = [r["versionnumber"] for r in records]
    assert versions == sorted(versions) and len(set(versions)) == 5
    with services(app).db.session() as s:
        logged = s.execute(
            select(changelog.c.changenum, changelog.c.changedfields)
            .where(changelog.c.recordid == acc)
            .order_by(changelog.c.changenum)
        ).all()
        stored = (
            s.execute(
                select(services(app).registry.model(s, device.channel.org_id).tables["account"]).where(
                    services(app).registry.model(s, device.channel.org_id).tables["account"].c.accountid == acc
                )
            )
            .mappings()
            .one()
        )
    assert [r.changenum for r in logged] == versions
    assert [r.changedfields for r in logged][1:] == [["name"], ["name", "telephone1"], ["name"], ["telephone1"]]
    assert (stored["name"], stored["telephone1"], stored["versionnumber"]) == ("v4", "5", versions[-1])


def test_a_refused_op_in_the_middle_blocks_nothing_and_writes_nothing(app: Flask, org: Org, device: Device) -> None:
    keep = created(device, 3, "Keep")
    target, version = keep[1]
    before = count_changes(app, target)
    frames = device.push(
        device.op("update", "account", keep[0][0], {"telephone1": "a"}),
        # One valid field and one invalid: the whole op is refused, neither field written.
        device.op("update", "account", target, {"telephone1": "b", "name": "x" * 500}),
        device.op("create", "account", new_id(), {"name": "After"}),
        device.op("update", "account", keep[2][0], {"telephone1": "c"}),
        device.op("update", "account", target, {"description": "fine"}),
    )
    results = frames[0]["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "applied", "applied", "applied"]
    assert results[1]["reason"]["field"] == "name"
    refused = results[1]["records"][0]["record"]  # the server's record, as it is
    assert refused["telephone1"] is None and refused["versionnumber"] == version
    assert results[4]["records"][0]["record"]["telephone1"] is None
    assert results[4]["records"][0]["record"]["description"] == "fine"
    assert count_changes(app, target) == before + 1
    with services(app).db.session() as s:
        errors = s.execute(select(syncerror.c.seq, syncerror.c.code)).all()
    assert [(e.seq, e.code) for e in errors] == [(results[1]["seq"], "validation_failed")]


def test_a_forbidden_op_among_others_is_refused_alone(app: Flask, org: Org, device: Device) -> None:
    lead = new_id()
    device.push(device.op("create", "lead", lead, {"subject": "Alice's", "lastname": "L"}))
    bob = Device(app, org, org.bob)
    bob.hello()
    mine = new_id()
    results = bob.push(
        bob.op("create", "lead", mine, {"subject": "Bob's", "lastname": "B"}),
        bob.op("update", "lead", lead, {"subject": "Bob was here"}),
        bob.op("update", "lead", mine, {"subject": "Bob's, edited"}),
        bob.op("create", "product", new_id(), {"name": "P", "productnumber": "1"}),
    )[0]["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "applied", "rejected"]
    assert [r.get("reason", {}).get("code") for r in results] == [None, "not_found", None, "forbidden"]
    assert results[1]["removed"] == [{"entity": "lead", "id": lead}]
    assert results[2]["records"][0]["record"]["subject"] == "Bob's, edited"
    assert count_changes(app, lead) == 1


def test_one_frame_mixes_creates_updates_deletes_and_commands_of_several_entities(
    app: Flask, org: Org, device: Device
) -> None:
    acc, con, lead, task, opp_acc = new_id(), new_id(), new_id(), new_id(), new_id()
    frames = device.push(
        device.op("create", "account", acc, {"name": "Mixed"}),
        device.op(
            "create", "contact", con, {"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({acc})"}
        ),
        device.op("create", "lead", lead, {"subject": "Lead", "lastname": "L", "companyname": "Co"}),
        device.op("update", "account", acc, {"telephone1": "555"}),
        device.op(
            "create", "task", task, {"subject": "Call", "regardingobjectid_account@odata.bind": f"/accounts({acc})"}
        ),
        device.op(
            "command",
            "lead",
            lead,
            command="qualify_lead",
            args={
                "leadid": lead,
                "create_account": True,
                "create_contact": False,
                "create_opportunity": False,
                "new_ids": {"account": opp_acc},
            },
        ),
        device.op("update", "contact", con, {"firstname": "Cy"}),
        device.op("delete", "contact", con),
        device.op("update", "account", opp_acc, {"telephone1": "777"}),
        device.op("update", "account", acc, {"name": "Mixed, renamed"}),
    )
    results = frames[0]["results"]
    assert [r["status"] for r in results] == ["applied"] * 10, [r.get("reason") for r in results]
    assert results[1]["records"][0]["record"]["_parentcustomerid_value"] == acc
    assert results[4]["records"][0]["record"]["_regardingobjectid_value"] == acc
    made = {(i["entity"], i["record"].get("accountid") or i["record"].get("leadid")) for i in results[5]["records"]}
    assert ("account", opp_acc) in made and ("lead", lead) in made
    assert results[6]["records"][0]["record"]["fullname"] == "Cy C"
    assert results[7]["removed"] == [{"entity": "contact", "id": con}]
    assert results[8]["records"][0]["record"]["telephone1"] == "777"
    final = results[9]["records"][0]["record"]
    assert (final["name"], final["telephone1"]) == ("Mixed, renamed", "555")
    with services(app).db.session() as s:
        model = services(app).registry.model(s, org.org_id)
        contacts = model.tables["contact"]
        leads = model.tables["lead"]
        assert s.execute(select(contacts.c.contactid).where(contacts.c.contactid == con)).first() is None
        assert s.execute(select(leads.c.statecode).where(leads.c.leadid == lead)).scalar_one() == 1
        numbers = s.execute(
            select(changelog.c.changenum, changelog.c.recordid, changelog.c.operation).order_by(changelog.c.changenum)
        ).all()
    mine = [(n.recordid, n.operation) for n in numbers if n.recordid in {acc, con, lead, task, opp_acc}]
    # Numbered in the order the operations were sent.
    assert mine.index((acc, "create")) < mine.index((con, "create")) < mine.index((lead, "create"))
    assert mine.index((task, "create")) < mine.index((opp_acc, "create")) < mine.index((con, "delete"))
    assert mine[-1] == (acc, "update")


@pytest.mark.parametrize("detection", [False, True])
def test_conflict_rules_hold_per_op_inside_a_frame(app: Flask, org: Org, device: Device, detection: bool) -> None:
    settings(app, org, conflict_detection=detection)
    (stale, base), (fresh, fresh_base), (gone, gone_base) = created(device, 3, "Conflict")
    other = Device(app, org, org.alice)
    other.hello()
    other.push(
        other.op("update", "account", stale, {"telephone1": "server"}, base=base),
        other.op("delete", "account", gone, base=gone_base),
    )
    results = device.push(
        device.op("update", "account", fresh, {"telephone1": "device"}, base=fresh_base),
        device.op("update", "account", stale, {"telephone1": "device", "name": "Device name"}, base=base),
        device.op("update", "account", gone, {"name": "Too late"}, base=gone_base),
        device.op("update", "account", fresh, {"name": "Still mine"}, base=fresh_base),
    )[0]["results"]
    assert results[0]["status"] == "applied"
    stale_record = results[1]["records"][0]["record"]
    assert stale_record["name"] == "Device name"
    if detection:
        assert results[1]["status"] == "conflict" and results[1]["reason"]["fields"] == ["telephone1"]
        assert stale_record["telephone1"] == "server"
    else:
        assert results[1]["status"] == "applied" and stale_record["telephone1"] == "device"
    assert results[2]["status"] == "rejected" and "deleted on the server" in results[2]["reason"]["message"]
    assert results[2]["removed"] == [{"entity": "account", "id": gone}]
    # The device's own earlier op in the frame moved the version: the base is stale now, and
    # under detection the server keeps what its own op wrote for fields that op changed.
    last = results[3]["records"][0]["record"]
    assert last["name"] == "Still mine" and last["telephone1"] == "device"
    assert results[3]["status"] == "applied"


def test_a_socket_keeps_its_principal_until_a_security_change_touches_its_user(app: Flask, org: Org) -> None:
    from webapp.security.roles import grant, role_id

    bob = Device(app, org, org.bob)
    bob.hello()
    first = bob.push(bob.op("create", "account", new_id(), {"name": "Bob's"}))[0]["results"][0]
    assert first["status"] == "applied"
    with statements(app) as seen:
        again = bob.push(bob.op("create", "account", new_id(), {"name": "Bob's too"}))[0]["results"][0]
    assert again["status"] == "applied"
    assert not [q for q in seen if "FROM team JOIN teammembership" in q], "the principal was loaded again"
    svc = services(app)
    with svc.db.session(write=True) as s:  # as an administrator would, in another session
        grant(
            s,
            svc.registry.model(s, org.org_id),
            role_id(s, svc.registry.model(s, org.org_id), "Salesperson"),
            "account",
            "create",
            0,
        )
        s.commit()
    with statements(app) as seen:
        refused = bob.push(bob.op("create", "account", new_id(), {"name": "No more"}))[0]["results"][0]
    assert refused["status"] == "rejected" and refused["reason"]["code"] == "forbidden"
    assert [q for q in seen if "FROM team JOIN teammembership" in q], "the principal was not loaded again"
