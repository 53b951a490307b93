"""Cascade deletes and server-numbered values are declared in the metadata (a lookup's
`cascade`, an attribute's `autonumber`) and interpreted by webapp/crm/records.py with no entity
names in code: a custom entity declares both through `add-entity` and gets them with no code."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api, Org
from webapp.crm.customizations import add_entity
from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.errors import ValidationFailed
from webapp.services import services

PART = {
    "logical_name": "new_part",
    "display_name": "Part",
    "display_collection_name": "Parts",
    "primary_name": "new_name",
    "attributes": [
        {"logical_name": "new_name", "type": "string", "required": True},
        {"logical_name": "new_code", "type": "string", "max_length": 10, "autonumber": {"prefix": "P-", "digits": 4}},
        {"logical_name": "new_parentpartid", "type": "lookup", "targets": ["new_part"], "cascade": "delete"},
        {"logical_name": "new_accountid", "type": "lookup", "targets": ["account"]},
    ],
}


def add(app: Flask, org: Org, definition: dict[str, Any]) -> None:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        add_entity(dbs, svc.registry, svc.registry.model(dbs, org.org_id), definition)
        dbs.commit()


def test_the_system_entities_declare_their_cascades_and_numbers_in_the_published_metadata() -> None:
    system = {e.logical_name: e for e in SYSTEM_ENTITIES}
    cascades = sorted(
        (e.logical_name, a.logical_name) for e in SYSTEM_ENTITIES for a in e.lookups() if a.cascade == "delete"
    )
    assert cascades == [("competitoraddress", "competitorid"), ("opportunityproduct", "opportunityid")]
    assert system["opportunityproduct"].attribute_map["opportunityid"].to_dict()["cascade"] == "delete"
    assert system["opportunityproduct"].attribute_map["productid"].to_dict()["cascade"] == "clear"
    ticket = system["incident"].attribute_map["ticketnumber"].to_dict()
    assert ticket["autonumber"] == {"prefix": "CAS-", "digits": 6} and ticket["read_only"] is True


def test_a_custom_entity_declares_a_parental_lookup_and_a_numbered_field_and_gets_them_with_no_code(
    app: Flask, org: Org, alice: Api
) -> None:
    add(app, org, PART)
    doc = alice.get("/api/metadata").json
    part = next(e for e in doc["entities"] if e["logical_name"] == "new_part")
    attrs = {a["logical_name"]: a for a in part["attributes"]}
    assert attrs["new_parentpartid"]["cascade"] == "delete" and attrs["new_accountid"]["cascade"] == "clear"
    assert attrs["new_code"]["autonumber"] == {"prefix": "P-", "digits": 4}

    account = alice.post("/api/data/accounts", json={"name": "Owner"}).json["accountid"]
    made: dict[str, dict[str, Any]] = {}
    for name, parent in (("top", None), ("child", "top"), ("grandchild", "child"), ("other", None)):
        body: dict[str, Any] = {"new_name": name, "new_accountid@odata.bind": f"/accounts({account})"}
        if parent:
            body["new_parentpartid@odata.bind"] = f"/new_parts({made[parent]['new_partid']})"
        resp = alice.post("/api/data/new_parts", json=body)
        assert resp.status_code == 201, resp.json
        made[name] = resp.json
    for rec in made.values():  # numbered by the change that created it
        assert re.fullmatch(r"P-\d{4}", rec["new_code"]) and rec["new_code"] == f"P-{rec['versionnumber']:04d}"
    assert len({rec["new_code"] for rec in made.values()}) == 4
    given = alice.post("/api/data/new_parts", json={"new_name": "x", "new_code": "P-9999"})
    assert given.status_code == 422 and given.json["error"]["field"] == "new_code"

    # Deleting the account clears the plain lookup and deletes nothing.
    assert alice.delete(f"/api/data/accounts({account})").status_code == 204
    for name in ("top", "other"):
        rec = alice.get(f"/api/data/new_parts({made[name]['new_partid']})").json
        assert rec["_new_accountid_value"] is None
    # Deleting a part deletes its children and theirs (the parental lookup), not its siblings.
    assert alice.delete(f"/api/data/new_parts({made['top']['new_partid']})").status_code == 204
    for name, status in (("top", 404), ("child", 404), ("grandchild", 404), ("other", 200)):
        assert alice.get(f"/api/data/new_parts({made[name]['new_partid']})").status_code == status, name


def with_attr(name: str, **changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(PART)
    attr = next(a for a in d["attributes"] if a["logical_name"] == name)
    attr.update(changes)
    return d


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        (with_attr("new_name", cascade="delete"), "cascade applies to lookups"),
        (with_attr("new_accountid", cascade="restrict"), "one of clear, delete"),
        (with_attr("new_name", autonumber={"prefix": "P-", "digits": 4}, type="integer"), "autonumber applies"),
        (with_attr("new_code", autonumber={"prefix": "PART-", "digits": 6}), "must fit max_length"),
        (with_attr("new_code", autonumber={"prefix": "P-"}), "{prefix, digits}"),
    ],
)
def test_a_bad_cascade_or_autonumber_declaration_is_refused_with_a_clear_message(
    app: Flask, org: Org, definition: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        add(app, org, definition)
    assert fragment in info.value.message
