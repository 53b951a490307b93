"""Bad writes get a 4xx JSON error naming the field, and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

MISSING = "9d2e4c8e-0000-4000-8000-000000000001"

# (entity set, payload, status, field, message fragment)
CASES: list[tuple[str, Any, int, str | None, str]] = [
    ("accounts", {}, 422, "name", "Missing data for required field"),
    ("accounts", {"name": None}, 422, "name", "Field may not be null"),
    ("accounts", {"name": "x" * 161}, 422, "name", "Longer than maximum length 160"),
    ("accounts", {"name": 5}, 422, "name", "Not a valid string"),
    ("accounts", {"name": "a\x00b"}, 422, "name", "NUL"),
    ("accounts", {"name": "a", "numberofemployees": "12"}, 422, "numberofemployees", "Not a valid integer"),
    ("accounts", {"name": "a", "numberofemployees": 1.5}, 422, "numberofemployees", "Not a valid integer"),
    ("accounts", {"name": "a", "numberofemployees": -1}, 422, "numberofemployees", "greater than or equal to 0"),
    ("accounts", {"name": "a", "revenue": "abc"}, 422, "revenue", "Not a valid number"),
    ("accounts", {"name": "a", "revenue": True}, 422, "revenue", "Not a valid number"),
    ("accounts", {"name": "a", "industrycode": 99}, 422, "industrycode", "Must be one of"),
    ("accounts", {"name": "a", "industrycode": "8"}, 422, "industrycode", "Not a valid integer"),
    # Money is held to its NUMERIC(19,4) column: 15 digits before the point, never a database error.
    ("accounts", {"name": "a", "revenue": 1e15}, 422, "revenue", "less than or equal to 999999999999999."),
    ("accounts", {"name": "a", "revenue": -1e15}, 422, "revenue", "greater than or equal to -999999999999999 "),
    ("accounts", {"name": "a", "bogus": 1}, 422, "bogus", "is not an attribute of account"),
    ("accounts", {"name": "a", "ownerid": MISSING}, 422, "ownerid", "assign"),
    ("accounts", {"name": "a", "owningbusinessunit": MISSING}, 422, "owningbusinessunit", "set by the server"),
    ("accounts", {"name": "a", "versionnumber": 99}, 422, "versionnumber", "set by the server"),
    ("accounts", {"name": "a", "createdon": "2026-01-01T00:00:00Z"}, 422, "createdon", "set by the server"),
    ("accounts", {"name": "a", "modifiedon": "2026-01-01T00:00:00Z"}, 422, "modifiedon", "set by the server"),
    ("accounts", {"name": "a", "accountid": "not-a-uuid"}, 422, "accountid", "lower-case UUID"),
    (
        "accounts",
        {"name": "a", "primarycontactid@odata.bind": f"/contacts({MISSING})"},
        422,
        "primarycontactid",
        "There is no contact",
    ),
    (
        "accounts",
        {"name": "a", "primarycontactid@odata.bind": f"/accounts({MISSING})"},
        422,
        "primarycontactid",
        "can point at contact, not account",
    ),
    ("accounts", {"name": "a", "primarycontactid@odata.bind": "garbage"}, 422, "primarycontactid", "not of the form"),
    ("accounts", {"name": "a", "primarycontactid@odata.bind": 7}, 422, "primarycontactid", "string"),
    (
        "accounts",
        {"name": "a", "primarycontactid@odata.bind": f"/nothings({MISSING})"},
        422,
        "primarycontactid",
        "not an entity set",
    ),
    (
        "accounts",
        {"name": "a", "_primarycontactid_value": MISSING},
        422,
        "_primarycontactid_value",
        "Lookups are written as",
    ),
    ("accounts", {"name": "a", "primarycontactid": MISSING}, 422, "primarycontactid", "Lookups are written as"),
    ("accounts", {"name": "a", "websiteurl@odata.bind": f"/contacts({MISSING})"}, 422, "websiteurl", "is not a lookup"),
    ("contacts", {"lastname": "L", "birthdate": "2026/11/28"}, 422, "birthdate", "Not a valid date"),
    ("contacts", {"lastname": "L", "birthdate": "2026-02-30"}, 422, "birthdate", "Not a valid date"),
    ("contacts", {"lastname": "L", "fullname": "Someone"}, 422, "fullname", "computed by the server"),
    (
        "contacts",
        {"lastname": "L", "parentcustomerid_contact@odata.bind": f"/accounts({MISSING})"},
        422,
        "parentcustomerid",
        "must point at a contact",
    ),
    ("appointments", {"subject": "s", "scheduledstart": "yesterday"}, 422, "scheduledstart", "Not a valid datetime"),
    ("appointments", {"subject": "s", "scheduledstart": 1700000000}, 422, "scheduledstart", "Not a valid datetime"),
    ("opportunities", {"name": "o", "closeprobability": 101}, 422, "closeprobability", "less than or equal to 100"),
    ("leads", {"subject": "s", "lastname": "l", "statuscode": 99}, 422, "statuscode", "Must be one of"),
    (
        "leads",
        {"subject": "s", "lastname": "l", "statecode": 0, "statuscode": 4},
        422,
        "statuscode",
        "not a status of state 0",
    ),
    ("tasks", {"subject": "s", "percentcomplete": 150}, 422, "percentcomplete", "less than or equal to 100"),
    ("incidents", {"title": "t"}, 422, "customerid", "Missing data for required field"),
    ("opportunityproducts", {"quantity": 1}, 422, "opportunityid", "Missing data for required field"),
    ("accounts", [], 422, None, "must be a JSON object"),
    ("accounts", "text", 422, None, "must be a JSON object"),
    ("nothings", {"name": "a"}, 404, None, "no entity set 'nothings'"),
    ("activitypointers", {"subject": "a"}, 405, None, "read-only"),
]


@pytest.mark.parametrize(("entity_set", "payload", "status", "field", "fragment"), CASES)
def test_a_bad_create_is_refused_with_a_message_naming_the_field_and_writes_nothing(
    alice: Api, entity_set: str, payload: Any, status: int, field: str | None, fragment: str
) -> None:
    before = alice.get("/api/data/accounts").json["value"]
    resp = alice.post(f"/api/data/{entity_set}", json=payload)
    assert resp.status_code == status, resp.json
    error = resp.json["error"]
    assert fragment in (error["message"] + " " + str(error.get("details", ""))), error
    if field is not None:
        assert field in error["details"], error
    assert alice.get("/api/data/accounts").json["value"] == before


def test_the_widest_amounts_a_money_column_holds_are_accepted_and_kept(alice: Api) -> None:
    for amount in (999999999999999, -999999999999999):
        resp = alice.post("/api/data/accounts", json={"name": "Wide", "revenue": amount})
        assert resp.status_code == 201, resp.json
        assert alice.get(f"/api/data/accounts({resp.json['accountid']})").json["revenue"] == amount


def test_a_bad_update_changes_nothing(alice: Api) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Keep", "telephone1": "1"}).json
    resp = alice.patch(f"/api/data/accounts({acc['accountid']})", json={"telephone1": "2", "revenue": "lots"})
    assert resp.status_code == 422
    assert resp.json["error"]["field"] == "revenue"
    assert alice.get(f"/api/data/accounts({acc['accountid']})").json == acc


def test_a_patch_may_not_change_the_primary_id_or_clear_a_required_field(alice: Api) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Keep"}).json
    resp = alice.patch(f"/api/data/accounts({acc['accountid']})", json={"accountid": MISSING, "name": None})
    assert resp.status_code == 422
    assert set(resp.json["error"]["details"]) == {"accountid", "name"}


def test_malformed_json_is_a_400(alice: Api) -> None:
    resp = alice.client.post(
        "/api/data/accounts", data="{not json", headers={"X-CSRF-Token": alice.csrf, "Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json["error"]["message"] == "The body is not valid JSON."


def test_a_body_that_is_not_json_is_refused(alice: Api) -> None:
    resp = alice.client.post("/api/data/accounts", data="name=x", headers={"X-CSRF-Token": alice.csrf})
    assert resp.status_code == 415


def test_a_malformed_record_address_is_a_400(alice: Api) -> None:
    resp = alice.get("/api/data/accounts(not-a-guid)")
    assert resp.status_code == 400
    assert "not a record id" in resp.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("$filter=name eq", "$filter"),
        ("$filter=nosuchfield eq 1", "nosuchfield"),
        ("$orderby=nosuchfield", "nosuchfield"),
        ("$select=nosuchfield", "nosuchfield"),
        ("$top=-1", "$top"),
        ("$count=true", "$count"),
        ("$skip=5", "$skip"),
        ("$skiptoken=garbage", "$skiptoken"),
        ("$expand=primarycontactid", "$select"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_problem(alice: Api, query: str, fragment: str) -> None:
    resp = alice.get(f"/api/data/accounts?{query}")
    assert resp.status_code == 400, resp.json
    assert fragment in resp.json["error"]["message"]
