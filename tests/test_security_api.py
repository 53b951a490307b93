"""The security model through the Web API: refusals, sharing, assign, lookups, field security."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Flask

from tests.conftest import PASSWORD, Api, Org, sign_in
from webapp.crm.orgs import create_team, save_settings
from webapp.security import fieldsecurity
from webapp.security.setup import new_user
from webapp.services import services


def add_user(app: Flask, org: Org, username: str, bu: str, roles: list[str], manager: str | None = None) -> str:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        model = svc.registry.model(dbs, org.org_id)
        uid = new_user(dbs, model, svc.hasher, username, PASSWORD, username.title(), bu, roles, manager_id=manager)
        dbs.commit()
    return uid


def with_model(app: Flask, org: Org, fn: Any) -> Any:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        result = fn(dbs, svc.registry.model(dbs, org.org_id))
        dbs.commit()
    return result


@pytest.fixture
def dave(app: Flask, org: Org, alice: Api) -> Api:
    """A salesperson in Sales East (alice, the administrator, is there too)."""
    add_user(app, org, "dave", org.east_bu, ["Salesperson"])
    return sign_in(app, "contoso", "dave")


@pytest.fixture
def bob(app: Flask, org: Org) -> Api:
    """A salesperson at the root business unit."""
    return sign_in(app, "contoso", "bob")


def test_a_record_the_user_may_not_read_answers_exactly_like_a_missing_one(alice: Api, bob: Api) -> None:
    hidden = alice.post("/api/data/leads", json={"subject": "East only", "lastname": "X"}).json["leadid"]
    missing = "7d1f0000-0000-4000-8000-000000000000"
    for rid in (hidden, missing):
        got, patched, deleted = (
            bob.get(f"/api/data/leads({rid})"),
            bob.patch(f"/api/data/leads({rid})", json={"subject": "mine"}),
            bob.delete(f"/api/data/leads({rid})"),
        )
        assert [got.status_code, patched.status_code, deleted.status_code] == [404, 404, 404]
        assert (
            got.json["error"]["code"] == patched.json["error"]["code"] == deleted.json["error"]["code"] == "not_found"
        )
        me = f"/systemusers({bob.client.get('/api/auth/me').json['user']['id']})"
        bodies = {"assign": {"ownerid@odata.bind": me}, "share": {"principal@odata.bind": me, "rights": ["read"]}}
        for action, body in bodies.items():
            resp = bob.post(f"/api/data/leads({rid})/{action}", json=body)
            assert resp.status_code == 404, (action, resp.json)
    assert bob.get("/api/data/leads").json["value"] == []
    assert alice.get(f"/api/data/leads({hidden})").json["subject"] == "East only"


def test_a_readable_record_the_user_may_not_change_is_403_and_unchanged(alice: Api, dave: Api) -> None:
    # Salespeople read accounts across their business unit but write only their own.
    acc = alice.post("/api/data/accounts", json={"name": "Alice's"}).json
    assert dave.get(f"/api/data/accounts({acc['accountid']})").status_code == 200
    resp = dave.patch(f"/api/data/accounts({acc['accountid']})", json={"name": "Dave's now"})
    assert resp.status_code == 403
    assert resp.json["error"]["code"] == "forbidden"
    assert dave.delete(f"/api/data/accounts({acc['accountid']})").status_code == 403
    assert alice.get(f"/api/data/accounts({acc['accountid']})").json["name"] == "Alice's"


def test_a_user_without_the_create_privilege_is_refused(app: Flask, org: Org) -> None:
    add_user(app, org, "sam", org.root_bu, ["Customer Service Representative"])
    sam = sign_in(app, "contoso", "sam")
    resp = sam.post("/api/data/leads", json={"subject": "s", "lastname": "l"})
    assert resp.status_code == 403
    assert sam.post("/api/data/products", json={"name": "p", "productnumber": "1"}).status_code == 403


def test_organisation_owned_records_are_all_or_nothing(alice: Api, bob: Api) -> None:
    alice.post("/api/data/products", json={"name": "Widget", "productnumber": "W-1"})
    assert [p["name"] for p in bob.get("/api/data/products").json["value"]] == ["Widget"]
    assert bob.post("/api/data/products", json={"name": "Mine", "productnumber": "M"}).status_code == 403


def test_owner_and_business_unit_come_from_the_server_and_change_only_through_assign(
    app: Flask, org: Org, alice: Api, bob: Api
) -> None:
    lead = bob.post("/api/data/leads", json={"subject": "Mine", "lastname": "L"}).json
    assert lead["_ownerid_value"] == org.bob
    assert lead["_owningbusinessunit_value"] == org.root_bu
    sneaky = bob.patch(f"/api/data/leads({lead['leadid']})", json={"ownerid": org.alice})
    assert sneaky.status_code == 422
    moved = bob.post(
        f"/api/data/leads({lead['leadid']})/assign", json={"ownerid@odata.bind": f"/systemusers({org.alice})"}
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["_ownerid_value"] == org.alice
    assert moved.json["_owningbusinessunit_value"] == org.east_bu
    # Bob reads leads at user depth only: the lead is gone from his reach.
    assert bob.get(f"/api/data/leads({lead['leadid']})").status_code == 404
    assert alice.get(f"/api/data/leads({lead['leadid']})").json["_ownerid_value"] == org.alice


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 422, "required"),
        ({"ownerid@odata.bind": "/accounts(7d1f0000-0000-4000-8000-000000000000)"}, 422, "systemusers"),
        ({"ownerid@odata.bind": "/systemusers(7d1f0000-0000-4000-8000-000000000000)"}, 422, "no systemuser"),
        ({"ownerid@odata.bind": "/systemusers(x)", "extra": 1}, 422, "not expected"),
    ],
)
def test_a_bad_assign_is_refused_and_changes_nothing(alice: Api, body: dict, status: int, fragment: str) -> None:
    lead = alice.post("/api/data/leads", json={"subject": "S", "lastname": "L"}).json
    resp = alice.post(f"/api/data/leads({lead['leadid']})/assign", json=body)
    assert resp.status_code == status
    assert fragment in resp.json["error"]["message"]
    assert alice.get(f"/api/data/leads({lead['leadid']})").json == lead


def test_assign_needs_the_assign_privilege(alice: Api, dave: Api, org: Org) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Alice's"}).json
    resp = dave.post(
        f"/api/data/accounts({acc['accountid']})/assign", json={"ownerid@odata.bind": f"/systemusers({org.bob})"}
    )
    assert resp.status_code == 403


def test_a_user_can_assign_to_a_team_whose_members_then_reach_the_record(
    app: Flask, org: Org, alice: Api, bob: Api
) -> None:
    team = with_model(app, org, lambda dbs, m: create_team(dbs, m, "Hunters", org.root_bu, [org.bob]))
    lead = alice.post("/api/data/leads", json={"subject": "For the team", "lastname": "L"}).json
    assert bob.get(f"/api/data/leads({lead['leadid']})").status_code == 404
    moved = alice.post(f"/api/data/leads({lead['leadid']})/assign", json={"ownerid@odata.bind": f"/teams({team})"})
    assert moved.json["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "team"
    assert moved.json["_ownerid_value@OData.Community.Display.V1.FormattedValue"] == "Hunters"
    # Salespeople hold leads at user depth, which includes their teams' records.
    assert bob.get(f"/api/data/leads({lead['leadid']})").status_code == 200
    assert bob.patch(f"/api/data/leads({lead['leadid']})", json={"subject": "Ours"}).status_code == 200


def test_sharing_adds_exactly_the_rights_shared_and_unsharing_takes_them_away(alice: Api, bob: Api, org: Org) -> None:
    lead = alice.post("/api/data/leads", json={"subject": "Shared", "lastname": "L"}).json
    url = f"/api/data/leads({lead['leadid']})"
    principal = {"principal@odata.bind": f"/systemusers({org.bob})"}
    assert alice.post(f"{url}/share", json={**principal, "rights": ["read"]}).status_code == 204
    assert bob.get(url).status_code == 200
    assert bob.patch(url, json={"subject": "Edited"}).status_code == 403
    assert alice.post(f"{url}/share", json={**principal, "rights": ["read", "write"]}).status_code == 204
    assert bob.patch(url, json={"subject": "Edited"}).status_code == 200
    assert bob.delete(url).status_code == 403
    assert alice.post(f"{url}/unshare", json=principal).status_code == 204
    assert bob.get(url).status_code == 404


def test_sharing_needs_the_share_privilege_and_valid_rights(alice: Api, bob: Api, dave: Api, org: Org) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "A"}).json
    url = f"/api/data/accounts({acc['accountid']})"
    principal = {"principal@odata.bind": f"/systemusers({org.bob})"}
    assert dave.post(f"{url}/share", json={**principal, "rights": ["read"]}).status_code == 403
    bad = alice.post(f"{url}/share", json={**principal, "rights": ["read", "fly"]})
    assert bad.status_code == 422
    assert bad.json["error"]["field"] == "rights"
    assert alice.post(f"{url}/share", json={**principal, "rights": []}).status_code == 422
    assert bob.get(url).status_code == 404


def test_a_share_never_grants_rights_the_sharer_does_not_hold(alice: Api, bob: Api, dave: Api, org: Org) -> None:
    """Issue 17, item 1: bob, shared a lead with read and share, re-shared it to himself (and to
    others) with write, delete, assign and share, then edited it and assigned it away."""
    lead = alice.post("/api/data/leads", json={"subject": "Alice's", "lastname": "L"}).json
    url = f"/api/data/leads({lead['leadid']})"
    to_bob = {"principal@odata.bind": f"/systemusers({org.bob})"}
    to_alice = {"principal@odata.bind": f"/systemusers({org.alice})"}
    dave_id = dave.get("/api/auth/me").json["user"]["id"]
    to_dave = {"principal@odata.bind": f"/systemusers({dave_id})"}
    assert alice.post(f"{url}/share", json={**to_bob, "rights": ["read", "share"]}).status_code == 204
    for whom in (to_bob, to_dave, to_alice):
        for extra in ("write", "delete", "assign", "append", "appendto"):
            refused = bob.post(f"{url}/share", json={**whom, "rights": ["read", "share", extra]})
            assert refused.status_code == 403, (whom, extra)
            assert refused.json["error"]["field"] == "rights"
            assert extra in refused.json["error"]["message"]
    assert bob.patch(url, json={"subject": "Bob's now"}).status_code == 403
    assert bob.post(f"{url}/assign", json={"ownerid@odata.bind": f"/systemusers({org.bob})"}).status_code == 403
    assert dave.get(url).status_code == 404
    # What he holds he may pass on.
    assert bob.post(f"{url}/share", json={**to_dave, "rights": ["read"]}).status_code == 204
    assert dave.get(url).status_code == 200
    assert dave.patch(url, json={"subject": "Dave's now"}).status_code == 403


def test_a_share_with_a_team_reaches_its_members(app: Flask, org: Org, alice: Api, bob: Api) -> None:
    team = with_model(app, org, lambda dbs, m: create_team(dbs, m, "Readers", org.root_bu, [org.bob]))
    lead = alice.post("/api/data/leads", json={"subject": "Team share", "lastname": "L"}).json
    alice.post(
        f"/api/data/leads({lead['leadid']})/share", json={"principal@odata.bind": f"/teams({team})", "rights": ["read"]}
    )
    assert bob.get(f"/api/data/leads({lead['leadid']})").status_code == 200


def test_setting_a_lookup_needs_append_on_the_record_and_append_to_on_the_target(
    alice: Api, bob: Api, dave: Api
) -> None:
    east_account = alice.post("/api/data/accounts", json={"name": "East Co"}).json["accountid"]
    # bob (root unit) cannot read an East account: it is "missing" to him.
    resp = bob.post(
        "/api/data/contacts",
        json={"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({east_account})"},
    )
    assert resp.status_code == 422
    assert "There is no account" in resp.json["error"]["message"]
    # dave (East) can read it and holds append-to on accounts in his unit.
    ok = dave.post(
        "/api/data/contacts",
        json={"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({east_account})"},
    )
    assert ok.status_code == 201


def test_append_to_is_checked_on_the_target(app: Flask, org: Org, alice: Api) -> None:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        from webapp.security.roles import create_role, grant

        model = svc.registry.model(dbs, org.org_id)
        rid = create_role(dbs, model, "Reader-writer")
        for entity, privilege, depth in [
            ("account", "read", 4),
            ("contact", "create", 1),
            ("contact", "read", 1),
            ("contact", "append", 1),
        ]:
            grant(dbs, model, rid, entity, privilege, depth)
        dbs.commit()
    add_user(app, org, "rita", org.root_bu, ["Reader-writer"])
    rita = sign_in(app, "contoso", "rita")
    acc = alice.post("/api/data/accounts", json={"name": "Target"}).json["accountid"]
    resp = rita.post(
        "/api/data/contacts", json={"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({acc})"}
    )
    assert resp.status_code == 403
    assert resp.json["error"]["field"] == "parentcustomerid"
    assert rita.post("/api/data/contacts", json={"lastname": "No lookup"}).status_code == 201


def test_a_grant_on_every_entity_at_user_depth_gives_nothing_on_organisation_owned_ones(
    app: Flask, org: Org, alice: Api
) -> None:
    """Organisation-owned entities know only none and organization: `*` append at user depth
    does not let a new competitor address be linked to its competitor (README "Security model")."""
    from webapp.security.roles import ORG, USER, create_role, grant

    def role(dbs: Any, model: Any) -> None:
        rid = create_role(dbs, model, "Address clerk")
        for entity, privilege, depth in [
            ("competitor", "read", ORG),
            ("competitor", "appendto", ORG),
            ("competitoraddress", "read", ORG),
            ("competitoraddress", "create", ORG),
            ("*", "append", USER),
        ]:
            grant(dbs, model, rid, entity, privilege, depth)

    with_model(app, org, role)
    add_user(app, org, "cleo", org.root_bu, ["Address clerk"])
    cleo = sign_in(app, "contoso", "cleo")
    rival = alice.post("/api/data/competitors", json={"name": "Rival"}).json["competitorid"]
    body = {"line1": "1 Main St", "competitorid@odata.bind": f"/competitors({rival})"}
    resp = cleo.post("/api/data/competitoraddresses", json=body)
    assert resp.status_code == 403, resp.json
    assert "append privilege on competitor addresses" in resp.json["error"]["message"]
    assert alice.post("/api/data/competitoraddresses", json=body).status_code == 201


def test_secured_fields_are_never_returned_filtered_or_written_without_a_grant(
    app: Flask, org: Org, alice: Api, dave: Api
) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Rich", "revenue": 1_000_000}).json
    with_model(app, org, lambda dbs, m: fieldsecurity.set_secured(dbs, m, "account", "revenue"))
    url = f"/api/data/accounts({acc['accountid']})"
    seen = dave.get(url).json
    assert "revenue" not in seen
    assert "revenue@OData.Community.Display.V1.FormattedValue" not in seen
    assert all("revenue" not in r for r in dave.get("/api/data/accounts").json["value"])
    assert "revenue" not in dave.get(f"{url}?$select=name,revenue").json
    assert dave.get("/api/data/accounts?$filter=revenue gt 5").status_code == 403
    assert dave.get("/api/data/accounts?$orderby=revenue").status_code == 403
    assert dave.post("/api/data/accounts", json={"name": "Mine", "revenue": 5}).status_code == 403
    mine = dave.post("/api/data/accounts", json={"name": "Mine"}).json
    assert dave.patch(f"/api/data/accounts({mine['accountid']})", json={"revenue": 7}).status_code == 403
    # The administrator sees everything; a profile grant opens it up for dave.
    assert alice.get(url).json["revenue"] == 1_000_000

    def grant_read(dbs: Any, m: Any) -> None:
        pid = fieldsecurity.create_profile(dbs, m, "Finance")
        fieldsecurity.set_permission(dbs, m, pid, "account", "revenue", read=True, create=False, update=True)
        fieldsecurity.add_member(dbs, m, pid, dave_id(dbs, m), "systemuser")

    def dave_id(dbs: Any, m: Any) -> str:
        from webapp.crm.orgs import find_id

        return find_id(dbs, m, "systemuser", "dave")

    with_model(app, org, grant_read)
    dave2 = sign_in(app, "contoso", "dave")
    assert dave2.get(url).json["revenue"] == 1_000_000
    assert dave2.get("/api/data/accounts?$filter=revenue gt 5").status_code == 200
    assert dave2.patch(f"/api/data/accounts({mine['accountid']})", json={"revenue": 7}).json["revenue"] == 7
    assert dave2.post("/api/data/accounts", json={"name": "Other", "revenue": 5}).status_code == 403


def test_a_manager_reads_reports_records_to_the_depth_and_writes_only_direct_reports(
    app: Flask, org: Org, alice: Api
) -> None:
    boss = add_user(app, org, "boss", org.root_bu, ["Salesperson"])
    mid = add_user(app, org, "mid", org.root_bu, ["Salesperson"], manager=boss)
    low = add_user(app, org, "low", org.root_bu, ["Salesperson"], manager=mid)
    assert low
    settings = with_model(app, org, lambda dbs, m: copy.deepcopy(m.settings))
    settings["hierarchy"] = {"model": "manager", "depth": 2}
    with_model(app, org, lambda dbs, m: save_settings(dbs, org.org_id, settings))
    mid_lead = sign_in(app, "contoso", "mid").post("/api/data/leads", json={"subject": "Mid's", "lastname": "M"}).json
    low_lead = sign_in(app, "contoso", "low").post("/api/data/leads", json={"subject": "Low's", "lastname": "L"}).json
    boss_api = sign_in(app, "contoso", "boss")
    assert {r["subject"] for r in boss_api.get("/api/data/leads").json["value"]} == {"Mid's", "Low's"}
    assert (
        boss_api.patch(f"/api/data/leads({mid_lead['leadid']})", json={"subject": "Edited by boss"}).status_code == 200
    )
    assert boss_api.patch(f"/api/data/leads({low_lead['leadid']})", json={"subject": "Too far"}).status_code == 403
    assert boss_api.delete(f"/api/data/leads({mid_lead['leadid']})").status_code == 403
    settings["hierarchy"] = {"model": "manager", "depth": 1}
    with_model(app, org, lambda dbs, m: save_settings(dbs, org.org_id, settings))
    boss_api = sign_in(app, "contoso", "boss")
    assert {r["subject"] for r in boss_api.get("/api/data/leads").json["value"]} == {"Edited by boss"}
