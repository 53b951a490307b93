"""Every record the server hands a user says what that user may do with it (`@Outpost.Access`,
PROTOCOL.md §1), and the letters predict exactly what the Web API then allows."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api, Org, sign_in
from tests.test_security_api import add_user

ACCESS = "@Outpost.Access"


@pytest.fixture
def dave(app: Flask, org: Org, alice: Api) -> Api:
    """A salesperson in Sales East: reads the unit's accounts, writes only his own."""
    add_user(app, org, "dave", org.east_bu, ["Salesperson"])
    return sign_in(app, "contoso", "dave")


def outcome(api: Api, entity_set: str, record: dict[str, Any], key: str, me: str) -> str:
    """The letters of the operations the Web API actually allows on the record (tried last to first:
    share and assign leave the record in place, delete removes it)."""
    url = f"/api/data/{entity_set}({record[key]})"
    allowed = ""
    if api.patch(url, json={"name": record.get("name")}).status_code == 200:
        allowed += "w"
    share = api.post(f"{url}/share", json={"principal@odata.bind": f"/systemusers({me})", "rights": ["read"]})
    assign = api.post(f"{url}/assign", json={"ownerid@odata.bind": f"/systemusers({me})"})
    if api.delete(url).status_code == 204:
        allowed += "d"
    if assign.status_code == 200:
        allowed += "a"
    if share.status_code == 204:
        allowed += "s"
    return allowed


def test_the_access_letters_predict_what_the_web_api_allows(alice: Api, dave: Api, org: Org) -> None:
    me = dave.get("/api/auth/me").json["user"]["id"]
    alices = alice.post("/api/data/accounts", json={"name": "Alice's"}).json["accountid"]
    shared = alice.post("/api/data/accounts", json={"name": "Shared with Dave"}).json["accountid"]
    alice.post(
        f"/api/data/accounts({shared})/share",
        json={"principal@odata.bind": f"/systemusers({me})", "rights": ["read", "write"]},
    )
    daves = dave.post("/api/data/accounts", json={"name": "Dave's"}).json
    assert daves[ACCESS] == "wdas"  # the created record says it too
    seen = {r["accountid"]: r for r in dave.get("/api/data/accounts?$select=name").json["value"]}
    assert {seen[alices][ACCESS], seen[shared][ACCESS], seen[daves["accountid"]][ACCESS]} == {"", "w", "wdas"}
    assert seen[alices][ACCESS] == ""
    assert seen[shared][ACCESS] == "w"
    assert dave.get(f"/api/data/accounts({alices})").json[ACCESS] == ""
    assert alice.get(f"/api/data/accounts({alices})").json[ACCESS] == "wdas"
    for rid in (alices, shared, daves["accountid"]):
        assert outcome(dave, "accounts", seen[rid], "accountid", me) == seen[rid][ACCESS], seen[rid]["name"]


def test_a_command_answers_with_the_access_of_each_record_it_touched(alice: Api) -> None:
    lead = alice.post("/api/data/leads", json={"subject": "Big deal", "lastname": "Lee", "companyname": "Lee Co"}).json
    result = alice.post(
        "/api/commands/qualify_lead",
        json={"leadid": lead["leadid"], "create_account": True, "create_contact": False, "create_opportunity": True},
    ).json
    records = [item["record"] for item in result["created"] + result["updated"]]
    assert len(records) == 3
    assert all(r[ACCESS] == "wdas" for r in records)
