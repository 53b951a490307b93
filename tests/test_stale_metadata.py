"""Operations queued under older metadata (issue 13, item 8): an administrator removes an
attribute, takes an entity offline or removes it, or changes the moves between statuses while a
device holds queued operations. The replay refuses exactly the parts that no longer apply, each
with a reason naming the field or entity in the user's words, and applies the rest; a re-sent
frame gets the same answers. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.conftest import Api, Org
from tests.test_sync_replay import Device, count_changes, new_id, settings
from webapp.crm.customizations import add_entity, customizations
from webapp.crm.errors import ValidationFailed
from webapp.crm.remodel import remove_attribute, remove_entity, set_transitions
from webapp.services import services
from webapp.sync.tables import syncerror

EXAMPLE = json.loads((Path(__file__).parent.parent / "examples" / "new_visitreport.json").read_text())
VISIT = {"new_subject": "Site visit", "new_visitdate": "2026-11-20"}


@pytest.fixture
def device(app: Flask, org: Org) -> Device:
    d = Device(app, org, org.alice)
    d.hello()
    return d


def admin(app: Flask, org: Org, change: Any, *args: Any) -> None:
    """A metadata change as the console and the CLI make it, committed."""
    svc = services(app)
    with svc.db.session(write=True) as s:
        change(s, svc.registry, svc.registry.model(s, org.org_id), *args)
        s.commit()


def applied(device: Device, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    results = device.push(*ops)[0]["results"]
    assert [r["status"] for r in results] == ["applied"] * len(ops), results
    return results


def replay_twice(device: Device, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Push the queued frame, then the same frame again: the same answers, nothing applied twice."""
    first = device.push(*ops)[0]["results"]
    again = device.push(*ops)[0]["results"]
    assert [(r["status"], r.get("reason")) for r in again] == [(r["status"], r.get("reason")) for r in first]
    return first


def outcome(result: dict[str, Any]) -> tuple[str, str | None, list[str] | None]:
    reason = result.get("reason") or {}
    return result["status"], reason.get("code"), reason.get("fields")


def record(result: dict[str, Any]) -> dict[str, Any]:
    return result["records"][0]["record"]


def stored(app: Flask, org: Org, entity: str, rid: str) -> dict[str, Any] | None:
    svc = services(app)
    with svc.db.session() as s:
        m = svc.registry.model(s, org.org_id)
        table = m.table(m.entity(entity))
        row = s.execute(select(table).where(table.c[m.entity(entity).primary_id] == rid)).mappings().first()
        return dict(row) if row is not None else None


def test_values_for_a_removed_attribute_are_refused_by_name_and_the_rest_applies(
    app: Flask, org: Org, device: Device
) -> None:
    admin(app, org, add_entity, EXAMPLE)
    account, visit = new_id(), new_id()
    applied(
        device,
        device.op("create", "account", account, {"name": "Fourth Coffee"}),
        device.op("create", "new_visitreport", visit, {**VISIT, "new_notes": "kept on the server"}),
    )
    base = count_changes(app, visit)
    new_visit = new_id()
    queued = [
        device.op("update", "new_visitreport", visit, {"new_subject": "Second visit", "new_notes": "mine"}, base=2),
        device.op(
            "create",
            "new_visitreport",
            new_visit,
            {**VISIT, "new_notes": "n", "new_accountid@odata.bind": f"/accounts({account})"},
        ),
        device.op("update", "new_visitreport", visit, {"new_notes": "only this"}, base=2),
        device.op("update", "new_visitreport", visit, {"new_never_there": 1}, base=2),
        device.op("update", "account", account, {"telephone1": "555-0100"}, base=1),
    ]
    before = device.hello()["metadata_version"]
    admin(app, org, remove_attribute, "new_visitreport", "new_notes")
    admin(app, org, remove_attribute, "new_visitreport", "new_accountid")
    assert device.hello()["metadata_version"] != before  # the device is offered the update

    results = replay_twice(device, queued)
    assert [outcome(r) for r in results] == [
        ("conflict", "attribute_removed", ["new_notes"]),
        ("conflict", "attribute_removed", ["new_notes", "new_accountid"]),
        ("rejected", "attribute_removed", ["new_notes"]),
        ("rejected", "validation_failed", None),  # a name that never existed is not a removed one
        ("applied", None, None),
    ]
    notes = "Notes was removed by your administrator, so your value for it was not saved."
    assert results[0]["reason"]["message"] == notes
    assert results[0]["reason"]["details"] == {"new_notes": [notes]}
    assert results[1]["reason"]["details"]["new_accountid"] == [
        "Account was removed by your administrator, so your value for it was not saved."
    ]
    assert record(results[0])["new_subject"] == "Second visit" and "new_notes" not in record(results[0])
    assert record(results[1])["new_subject"] == "Site visit"
    assert record(results[2])["new_subject"] == "Second visit"  # the server's record, as it is now
    assert stored(app, org, "new_visitreport", visit)["new_notes"] == "kept on the server"  # type: ignore[index]
    assert stored(app, org, "new_visitreport", new_visit) is not None
    assert stored(app, org, "account", account)["telephone1"] == "555-0100"  # type: ignore[index]
    assert count_changes(app, visit) == base + 1  # only the first update wrote, once
    with services(app).db.session() as s:
        errors = s.execute(select(syncerror.c.seq, syncerror.c.code, syncerror.c.message)).all()
    assert [(e.code, e.message) for e in errors][:3] == [
        ("attribute_removed", notes),
        (
            "attribute_removed",
            f"{notes} Account was removed by your administrator, so your value for it was not saved.",
        ),
        ("attribute_removed", notes),
    ]


def test_a_removed_attribute_in_a_stale_update_is_told_apart_from_the_fields_the_server_kept(
    app: Flask, org: Org, device: Device
) -> None:
    """Server wins over a stale update's fields, and the metadata over its removed ones: one
    `conflict` lists both, and only the removed ones carry a message of their own (`details`)."""
    settings(app, org, conflict_detection=True)
    admin(app, org, add_entity, EXAMPLE)
    visit = new_id()
    base = record(applied(device, device.op("create", "new_visitreport", visit, VISIT))[0])["versionnumber"]
    other = Device(app, org, org.alice)
    other.hello()
    applied(other, other.op("update", "new_visitreport", visit, {"new_subject": "Theirs"}, base=base))
    mine = {"new_subject": "Mine", "new_notes": "n", "new_rating": 4}
    queued = [device.op("update", "new_visitreport", visit, mine, base=base)]
    admin(app, org, remove_attribute, "new_visitreport", "new_notes")

    [result] = replay_twice(device, queued)
    assert outcome(result) == ("conflict", "conflict", ["new_subject", "new_notes"])
    notes = "Notes was removed by your administrator, so your value for it was not saved."
    assert result["reason"]["details"] == {"new_notes": [notes]}
    assert result["reason"]["message"] == (
        f"Automatically resolved: the server's values were kept for new_subject. {notes}"
    )
    assert (record(result)["new_subject"], record(result)["new_rating"]) == ("Theirs", 4)


def test_an_entity_taken_out_of_the_offline_profile_refuses_its_ops_whole_and_the_rest_applies(
    app: Flask, org: Org, device: Device
) -> None:
    account, contact = new_id(), new_id()
    applied(
        device,
        device.op("create", "account", account, {"name": "Fourth Coffee"}),
        device.op("create", "contact", contact, {"lastname": "Kim"}),
    )
    new_account, new_contact = new_id(), new_id()
    queued = [
        device.op("update", "account", account, {"telephone1": "555-0100"}, base=1),
        device.op("create", "account", new_account, {"name": "Litware"}),
        device.op(
            "create",
            "contact",
            new_contact,
            {"lastname": "Lee", "parentcustomerid_account@odata.bind": f"/accounts({new_account})"},
        ),
        device.op("update", "contact", contact, {"firstname": "Dana"}, base=2),
        device.op("delete", "account", account, base=1),
    ]
    settings(app, org, entity="account", entity_enabled=False)  # what `outpost set-offline` and the console call

    results = replay_twice(device, queued)
    assert [outcome(r) for r in results] == [
        ("rejected", "not_allowed_offline", None),
        ("rejected", "not_allowed_offline", None),
        ("rejected", "depends_on_rejected", None),
        ("applied", None, None),
        ("rejected", "not_allowed_offline", None),
    ]
    off = (
        "Accounts are no longer available offline (your administrator changed the offline profile), "
        "so {} could not be saved."
    )
    assert [r["reason"]["message"] for r in results if outcome(r)[1] == "not_allowed_offline"] == [
        off.format("this change"),
        off.format("this new account"),
        off.format("this deletion"),
    ]
    assert stored(app, org, "account", account)["telephone1"] is None  # type: ignore[index]
    assert stored(app, org, "account", new_account) is None
    assert stored(app, org, "contact", contact)["firstname"] == "Dana"  # type: ignore[index]


def test_ops_on_a_removed_entity_are_refused_naming_it_and_the_rest_applies(
    app: Flask, org: Org, device: Device
) -> None:
    admin(app, org, add_entity, EXAMPLE)
    account, visit = new_id(), new_id()
    applied(
        device,
        device.op("create", "account", account, {"name": "Fourth Coffee"}),
        device.op("create", "new_visitreport", visit, VISIT),
    )
    queued = [
        device.op("update", "new_visitreport", visit, {"new_subject": "Second visit"}, base=2),
        device.op("create", "new_visitreport", new_id(), VISIT),
        device.op("update", "account", account, {"telephone1": "555-0100"}, base=1),
    ]
    admin(app, org, remove_entity, "new_visitreport")

    results = replay_twice(device, queued)
    assert [outcome(r) for r in results] == [
        ("rejected", "entity_removed", None),
        ("rejected", "entity_removed", None),
        ("applied", None, None),
    ]
    assert [r["reason"]["message"] for r in results[:2]] == [
        "Visit Reports were removed by your administrator, so this change could not be saved.",
        "Visit Reports were removed by your administrator, so this new visit report could not be saved.",
    ]
    assert stored(app, org, "account", account)["telephone1"] == "555-0100"  # type: ignore[index]
    # A name that never existed is still unknown, and the entity can be added again, new.
    assert outcome(device.push(device.op("create", "new_other", new_id(), VISIT))[0]["results"][0])[1] == (
        "unknown_entity"
    )
    admin(app, org, add_entity, EXAMPLE)
    assert outcome(applied(device, device.op("create", "new_visitreport", new_id(), VISIT))[0])[0] == "applied"


def test_a_status_move_no_longer_allowed_is_refused_and_the_rest_of_the_op_applies(
    app: Flask, org: Org, device: Device
) -> None:
    first, second, case_ = new_id(), new_id(), new_id()
    applied(
        device,
        device.op("create", "account", first, {"name": "Fourth Coffee"}),
        device.op("create", "account", second, {"name": "Litware"}),
        device.op(
            "create", "incident", case_, {"title": "Broken", "customerid_account@odata.bind": f"/accounts({first})"}
        ),
    )
    queued = [
        device.op("update", "account", first, {"telephone1": "555-0100", "statecode": 1, "statuscode": 2}, base=1),
        device.op("update", "account", second, {"statuscode": 2}, base=2),
        device.op("update", "incident", case_, {"statecode": 2, "statuscode": 6}, base=3),
    ]
    doc = customizations_of(app, org)
    assert state_option(doc, "account", 0)["next"] == [1]  # queued while Active -> Inactive was allowed
    admin(app, org, set_transitions, "account", {0: []})
    assert state_option(customizations_of(app, org), "account", 0)["next"] == []

    results = replay_twice(device, queued)
    assert [outcome(r) for r in results] == [
        ("conflict", "transition_not_allowed", ["statecode", "statuscode"]),
        ("rejected", "transition_not_allowed", ["statuscode"]),
        ("applied", None, None),  # the case's moves did not change
    ]
    moved = "An account cannot be moved from Active to Inactive this way."
    assert results[0]["reason"]["message"] == moved
    assert results[0]["reason"]["details"] == {"statecode": [moved], "statuscode": [moved]}
    assert (record(results[0])["telephone1"], record(results[0])["statecode"]) == ("555-0100", 0)
    assert record(results[1])["statecode"] == 0
    assert stored(app, org, "account", first)["statecode"] == 0  # type: ignore[index]
    assert stored(app, org, "incident", case_)["statecode"] == 2  # type: ignore[index]


def customizations_of(app: Flask, org: Org) -> dict[str, Any]:
    svc = services(app)
    with svc.db.session() as s:
        return copy.deepcopy(customizations(svc.registry.model(s, org.org_id)))


def state_option(doc: dict[str, Any], entity: str, value: int) -> dict[str, Any]:
    meta = next(e for e in doc["entities"] if e["logical_name"] == entity)
    state = next(a for a in meta["attributes"] if a["logical_name"] == "statecode")
    return next(o for o in state["options"] if o["value"] == value)


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (remove_attribute, ("new_visitreport", "new_subject"), "Subject is the primary name of Visit Reports"),
        (
            remove_attribute,
            ("new_visitreport", "new_rating"),
            "The view 'Well-Rated Visits' filters or sorts on Rating",
        ),
        (remove_attribute, ("new_visitreport", "new_nothing"), "Visit Report has no attribute 'new_nothing'"),
        (remove_attribute, ("account", "telephone1"), "Account is a system entity"),
        (remove_entity, ("account",), "Account is a system entity"),
        (remove_entity, ("new_nothing",), "There is no entity 'new_nothing'"),
        (set_transitions, ("account", {0: [7]}), "Account has no status 7"),
        (set_transitions, ("account", {0: [0]}), "Active cannot move to itself"),
        (set_transitions, ("new_visitreport", {0: [1]}), "'new_visitreport' is not an entity with a status"),
    ],
)
def test_a_metadata_change_that_cannot_be_made_is_refused_with_a_message(
    app: Flask, org: Org, change: Any, args: tuple[Any, ...], message: str
) -> None:
    admin(app, org, add_entity, EXAMPLE)
    with pytest.raises(ValidationFailed, match=message):
        admin(app, org, change, *args)


def test_the_metadata_changes_from_the_command_line(
    app: Flask, org: Org, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from webapp.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    admin(app, org, add_entity, EXAMPLE)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [args[0], "--org", "contoso", *args[1:]])
        return result.exit_code, result.output

    assert run("remove-attribute", "new_visitreport", "new_notes") == (0, "Removed new_notes from new_visitreport\n")
    assert run("set-transitions", "account", "0:", "1:0") == (0, "Active -> none; Inactive -> 0\n")
    assert state_option(customizations_of(app, org), "account", 0)["next"] == []
    code, output = run("set-transitions", "account", "0-1")
    assert (code, output.strip()) == (
        2,
        "error: write each move as FROM:TO,TO with status values (FROM: for none), not '0-1'.",
    )
    assert run("remove-entity", "new_visitreport") == (0, "Removed entity new_visitreport\n")
    doc = customizations_of(app, org)
    assert all(e["logical_name"] != "new_visitreport" for e in doc["entities"])
    assert "new_visitreport" not in doc["offline_profile"]["entities"]
    assert run("remove-entity", "new_visitreport") == (2, "error: There is no entity 'new_visitreport'.\n")


def test_the_metadata_changes_from_the_console(app: Flask, org: Org, alice: Api) -> None:
    from tests.test_admin import audit_actions, form

    admin(app, org, add_entity, EXAMPLE)
    shown = alice.get("/admin/entities/new_visitreport")
    assert shown.status_code == 200
    assert b'aria-label="Remove Notes"' in shown.data and b'aria-label="Remove Subject"' not in shown.data

    refused = form(alice, "/admin/entities/new_visitreport/attributes/new_rating/remove", {})
    assert refused.status_code == 422
    assert b"The view &#39;Well-Rated Visits&#39; filters or sorts on Rating" in refused.data
    assert form(alice, "/admin/entities/new_visitreport/attributes/new_notes/remove", {}).status_code == 302
    visit = next(e for e in alice.get("/api/metadata").json["entities"] if e["logical_name"] == "new_visitreport")
    assert "new_notes" not in [a["logical_name"] for a in visit["attributes"]]

    moves = alice.get("/admin/entities/account").data
    assert b'name="move.0.1" checked' in moves and b'name="move.1.0" checked' in moves
    assert form(alice, "/admin/entities/account/transitions", {"move.1.0": "on"}).status_code == 302
    assert state_option(alice.get("/api/metadata").json, "account", 0)["next"] == []
    assert state_option(alice.get("/api/metadata").json, "account", 1)["next"] == [0]

    assert form(alice, "/admin/entities/account/remove", {}).status_code == 422  # a system entity stays
    assert form(alice, "/admin/entities/new_visitreport/remove", {}).status_code == 302
    assert all(e["logical_name"] != "new_visitreport" for e in alice.get("/api/metadata").json["entities"])
    assert alice.get("/admin/entities/new_visitreport").status_code == 404
    assert audit_actions(app, org.org_id) == ["entity.attribute.remove", "entity.transitions", "entity.remove"]
