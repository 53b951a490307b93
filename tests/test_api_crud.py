"""CRUD through the Web API for every entity of DESIGN.md §2, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api, Org
from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.metadata import Attribute, Entity

ENTITIES = {e.logical_name: e for e in SYSTEM_ENTITIES}
WRITABLE = [e.logical_name for e in SYSTEM_ENTITIES if e.api_writable and not e.union_of]
READ_ONLY = [e.logical_name for e in SYSTEM_ENTITIES if not e.api_writable]


def sample(attr: Attribute, variant: int = 0) -> Any:
    """A valid value of an attribute (variant 1 differs from variant 0)."""
    t = attr.type
    if t in ("string", "memo"):
        return f"{attr.logical_name} {variant} Ü"[: attr.max_length]
    if t == "integer":
        lo = int(attr.min_value or 0)
        return lo + 1 + variant
    if t in ("decimal", "money"):
        return 12.5 + variant
    if t == "boolean":
        return variant == 0
    if t == "datetime":
        return f"2026-11-{10 + variant}T09:30:00Z"
    if t == "date":
        return f"2026-12-{10 + variant}"
    if t == "optionset":
        return sorted(attr.option_values())[variant % len(attr.options)]
    raise AssertionError(t)


def make(api: Api, name: str, depth: int = 0) -> dict[str, Any]:
    """Create a valid record of `name` (with every required lookup's target made first)."""
    entity = ENTITIES[name]
    body: dict[str, Any] = {}
    for a in entity.attributes:
        if a.read_only or a.logical_name in (entity.primary_id, "statecode", "statuscode"):
            continue
        if a.type == "lookup":
            if a.required:
                target = next(t for t in a.targets if ENTITIES[t].api_writable)
                rec = make(api, target, depth + 1)
                body[f"{a.logical_name}@odata.bind"] = (
                    f"/{ENTITIES[target].entity_set}({rec[ENTITIES[target].primary_id]})"
                )
            continue
        body[a.logical_name] = sample(a)
    resp = api.post(f"/api/data/{entity.entity_set}", json=body)
    assert resp.status_code == 201, resp.json
    return resp.json


def scalar_attrs(entity: Entity) -> list[Attribute]:
    return [
        a
        for a in entity.attributes
        if not a.read_only
        and a.type not in ("lookup", "uniqueidentifier")
        and a.logical_name not in ("statecode", "statuscode")
    ]


@pytest.mark.parametrize("name", WRITABLE)
def test_every_writable_entity_supports_create_read_update_list_and_delete(alice: Api, name: str) -> None:
    entity = ENTITIES[name]
    base = f"/api/data/{entity.entity_set}"
    created = make(alice, name)
    rid = created[entity.primary_id]
    for a in scalar_attrs(entity):
        assert created[a.logical_name] == sample(a), a.logical_name
    assert created["versionnumber"] > 0
    assert created["createdon"].endswith("Z")

    got = alice.get(f"{base}({rid})")
    assert got.status_code == 200
    assert got.json == created

    changes = {a.logical_name: sample(a, 1) for a in scalar_attrs(entity)}
    updated = alice.patch(f"{base}({rid})", json=changes)
    assert updated.status_code == 200, updated.json
    for key, value in changes.items():
        assert updated.json[key] == value, key
    assert updated.json["versionnumber"] > created["versionnumber"]

    listed = alice.get(f"{base}?$filter={entity.primary_id} eq {rid}")
    assert listed.status_code == 200
    assert [r[entity.primary_id] for r in listed.json["value"]] == [rid]

    assert alice.delete(f"{base}({rid})").status_code == 204
    assert alice.get(f"{base}({rid})").status_code == 404
    assert alice.patch(f"{base}({rid})", json=changes).status_code == 404
    assert alice.delete(f"{base}({rid})").status_code == 404


@pytest.mark.parametrize("name", READ_ONLY)
def test_administrative_entities_are_readable_but_not_writable_through_the_data_api(
    alice: Api, org: Org, name: str
) -> None:
    entity = ENTITIES[name]
    base = f"/api/data/{entity.entity_set}"
    listed = alice.get(base)
    assert listed.status_code == 200
    if name == "systemuser":
        assert {r["username"] for r in listed.json["value"]} == {"alice", "bob"}
    resp = alice.post(base, json={entity.primary_name: "x"})
    assert resp.status_code == 405
    assert resp.json["error"]["code"] == "not_allowed"


def test_a_client_minted_id_is_kept_and_a_duplicate_id_is_refused(alice: Api) -> None:
    rid = "0b9f1c1e-6a43-4c8e-9d2e-3f5a1b2c3d4e"
    first = alice.post("/api/data/accounts", json={"accountid": rid, "name": "Minted"})
    assert first.status_code == 201
    assert first.json["accountid"] == rid
    assert first.headers["OData-EntityId"].endswith(f"/api/data/accounts({rid})")
    again = alice.post("/api/data/accounts", json={"accountid": rid, "name": "Again"})
    assert again.status_code == 409
    assert again.json["error"]["code"] == "duplicate_id"
    assert alice.get(f"/api/data/accounts({rid})").json["name"] == "Minted"


def test_patch_never_creates_a_record(alice: Api) -> None:
    rid = "1b9f1c1e-6a43-4c8e-9d2e-3f5a1b2c3d4e"
    assert alice.patch(f"/api/data/accounts({rid})", json={"name": "Upsert"}).status_code == 404
    assert alice.get(f"/api/data/accounts({rid})").status_code == 404


def test_lookups_are_written_with_odata_bind_and_read_as_value_with_formatted_name(alice: Api) -> None:
    account = make(alice, "account")
    contact = alice.post(
        "/api/data/contacts",
        json={
            "lastname": "Lee",
            "firstname": "Ann",
            "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})",
        },
    ).json
    assert contact["_parentcustomerid_value"] == account["accountid"]
    assert contact["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert contact["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == account["name"]
    assert contact["fullname"] == "Ann Lee"
    cleared = alice.patch(f"/api/data/contacts({contact['contactid']})", json={"parentcustomerid@odata.bind": None})
    assert cleared.json["_parentcustomerid_value"] is None


def test_every_record_carries_owner_business_unit_version_and_timestamps(alice: Api, org: Org) -> None:
    rec = make(alice, "account")
    assert rec["_ownerid_value"] == org.alice
    assert rec["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    assert rec["_owningbusinessunit_value"] == org.east_bu
    assert rec["_createdby_value"] == org.alice
    assert isinstance(rec["versionnumber"], int)
    assert rec["modifiedon"] == rec["createdon"]


def test_version_numbers_come_from_one_global_increasing_sequence(alice: Api) -> None:
    a = make(alice, "account")
    c = make(alice, "contact")
    a2 = alice.patch(f"/api/data/accounts({a['accountid']})", json={"name": "Renamed"}).json
    assert a["versionnumber"] < c["versionnumber"] < a2["versionnumber"]


def test_an_update_that_changes_nothing_keeps_the_version(alice: Api) -> None:
    a = make(alice, "account")
    same = alice.patch(f"/api/data/accounts({a['accountid']})", json={"name": a["name"]}).json
    assert same["versionnumber"] == a["versionnumber"]


def test_state_and_status_stay_consistent(alice: Api) -> None:
    lead = make(alice, "lead")
    assert (lead["statecode"], lead["statuscode"]) == (0, 1)
    moved = alice.patch(f"/api/data/leads({lead['leadid']})", json={"statuscode": 2}).json
    assert (moved["statecode"], moved["statuscode"]) == (0, 2)
    account = make(alice, "account")
    closed = alice.patch(f"/api/data/accounts({account['accountid']})", json={"statecode": 1}).json
    assert (closed["statecode"], closed["statuscode"]) == (1, 2)
    assert closed["statuscode@OData.Community.Display.V1.FormattedValue"] == "Inactive"
    reopened = alice.patch(f"/api/data/accounts({account['accountid']})", json={"statuscode": 1}).json
    assert (reopened["statecode"], reopened["statuscode"]) == (0, 1)


@pytest.mark.parametrize(
    ("entity", "start", "body", "allowed"),
    [
        ("lead", None, {"statecode": 1}, False),  # qualified only through qualify_lead
        ("lead", None, {"statuscode": 4}, False),  # a status of Disqualified implies the state
        ("opportunity", None, {"statecode": 1}, False),  # won only through close_opportunity
        ("task", None, {"statecode": 1}, True),  # a task can be completed
        ("task", None, {"statecode": 2}, True),  # or canceled
        ("task", {"statecode": 1}, {"statecode": 0}, False),  # but a completed task stays completed
        ("account", None, {"statecode": 1}, True),
        ("incident", {"statecode": 2}, {"statecode": 0}, True),  # a cancelled case is reactivated
    ],
)
def test_state_changes_follow_the_transitions_the_metadata_allows(
    alice: Api, entity: str, start: dict | None, body: dict, allowed: bool
) -> None:
    record = make(alice, entity)
    meta = next(e for e in alice.get("/api/metadata").json["entities"] if e["logical_name"] == entity)
    es, pk = meta["entity_set"], meta["primary_id"]
    if start is not None:
        record = alice.patch(f"/api/data/{es}({record[pk]})", json=start).json
        assert record["statecode"] == start["statecode"], record
    resp = alice.patch(f"/api/data/{es}({record[pk]})", json=body)
    if allowed:
        assert resp.status_code == 200, resp.json
        assert resp.json["statecode"] == body["statecode"]
    else:
        assert resp.status_code == 422, resp.json
        assert resp.json["error"]["field"] == "statecode"
        assert "cannot be moved" in resp.json["error"]["message"]
        assert alice.get(f"/api/data/{es}({record[pk]})").json == record


def test_a_record_cannot_be_created_in_a_state_only_a_command_reaches(alice: Api) -> None:
    resp = alice.post("/api/data/leads", json={"subject": "S", "lastname": "L", "statecode": 1})
    assert resp.status_code == 422
    assert "Use Qualify or Disqualify" in resp.json["error"]["message"]
    assert alice.get("/api/data/leads?$filter=subject eq 'S'").json["value"] == []
    done = alice.post("/api/data/tasks", json={"subject": "Called", "statecode": 1})
    assert done.status_code == 201, done.json
    assert done.json["statecode"] == 1


def test_derived_values_are_computed_by_the_server(alice: Api) -> None:
    opp = make(alice, "opportunity")
    line = alice.post(
        "/api/data/opportunityproducts",
        json={
            "opportunityid@odata.bind": f"/opportunities({opp['opportunityid']})",
            "quantity": 3,
            "priceperunit": 19.99,
        },
    ).json
    assert line["extendedamount"] == pytest.approx(59.97)
    case = alice.post(
        "/api/data/incidents",
        json={"title": "Broken", "customerid@odata.bind": f"/accounts({make(alice, 'account')['accountid']})"},
    ).json
    assert case["ticketnumber"].startswith("CAS-")


def test_deleting_a_parent_cascades_to_children_and_clears_other_lookups(alice: Api) -> None:
    account = make(alice, "account")
    contact = alice.post(
        "/api/data/contacts",
        json={"lastname": "Kid", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"},
    ).json
    opp = alice.post(
        "/api/data/opportunities",
        json={"name": "Deal", "customerid_account@odata.bind": f"/accounts({account['accountid']})"},
    ).json
    line = alice.post(
        "/api/data/opportunityproducts",
        json={"opportunityid@odata.bind": f"/opportunities({opp['opportunityid']})", "quantity": 1, "priceperunit": 5},
    ).json
    assert alice.delete(f"/api/data/accounts({account['accountid']})").status_code == 204
    kid = alice.get(f"/api/data/contacts({contact['contactid']})").json
    assert kid["_parentcustomerid_value"] is None
    assert kid["versionnumber"] > contact["versionnumber"]
    assert alice.delete(f"/api/data/opportunities({opp['opportunityid']})").status_code == 204
    assert alice.get(f"/api/data/opportunityproducts({line['opportunityproductid']})").status_code == 404


def test_activitypointer_unions_every_activity_and_deletes_only_where_allowed(alice: Api) -> None:
    task = make(alice, "task")
    call = make(alice, "phonecall")
    email = make(alice, "email")
    listed = alice.get("/api/data/activitypointers?$select=subject,activitytypecode&$orderby=activitytypecode asc").json
    assert [(r["activityid"], r["activitytypecode"]) for r in listed["value"]] == [
        (email["activityid"], "email"),
        (call["activityid"], "phonecall"),
        (task["activityid"], "task"),
    ]
    assert alice.post("/api/data/activitypointers", json={"subject": "x"}).status_code == 405
    assert alice.delete(f"/api/data/activitypointers({task['activityid']})").status_code == 204
    assert alice.get(f"/api/data/tasks({task['activityid']})").status_code == 404
    refused = alice.delete(f"/api/data/activitypointers({email['activityid']})")
    assert refused.status_code == 405
    assert alice.get(f"/api/data/emails({email['activityid']})").status_code == 200


def test_an_activity_id_is_unique_across_activity_types(alice: Api) -> None:
    task = make(alice, "task")
    dup = alice.post("/api/data/phonecalls", json={"activityid": task["activityid"], "subject": "Same id"})
    assert dup.status_code == 409


def test_every_write_lands_in_the_change_log_with_its_fields(app: Flask, alice: Api) -> None:
    from sqlalchemy import select

    from webapp.crm.tables import changelog
    from webapp.services import services

    a = make(alice, "account")
    alice.patch(f"/api/data/accounts({a['accountid']})", json={"telephone1": "555"})
    alice.delete(f"/api/data/accounts({a['accountid']})")
    with services(app).db.session() as dbs:
        rows = dbs.execute(
            select(changelog.c.changenum, changelog.c.operation, changelog.c.changedfields)
            .where(changelog.c.recordid == a["accountid"])
            .order_by(changelog.c.changenum)
        ).all()
    assert [r.operation for r in rows] == ["create", "update", "delete"]
    assert rows[0].changenum == a["versionnumber"]
    assert rows[1].changedfields == ["telephone1"]
    assert "name" in rows[0].changedfields


def test_a_single_target_lookup_can_be_set_and_cleared_by_patch(alice: Api) -> None:
    contact = make(alice, "contact")
    account = make(alice, "account")
    url = f"/api/data/accounts({account['accountid']})"
    linked = alice.patch(url, json={"primarycontactid@odata.bind": f"/contacts({contact['contactid']})"})
    assert linked.status_code == 200, linked.json
    assert linked.json["_primarycontactid_value"] == contact["contactid"]
    cleared = alice.patch(url, json={"primarycontactid@odata.bind": None})
    assert cleared.json["_primarycontactid_value"] is None
