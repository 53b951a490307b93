"""The customizations document, custom entities, paging, OpenAPI and migrations."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import create_engine

from tests.conftest import Api, Org
from webapp.crm.customizations import add_entity
from webapp.services import services

EXAMPLE = json.loads((Path(__file__).parent.parent / "examples" / "new_visitreport.json").read_text())

# DESIGN.md §2, exactly.
OFFLINE_TABLE = {
    "account": ["create", "read", "update", "delete"],
    "activitypointer": ["read", "delete"],
    "appointment": ["create", "read", "update", "delete", "convert_activity_to_case"],
    "annotation": ["read"],
    "incident": ["create", "read", "update", "delete"],
    "competitor": ["create", "read", "update", "delete"],
    "competitoraddress": ["create", "read", "update", "delete"],
    "connection": ["read"],
    "connectionrole": ["read"],
    "contact": ["create", "read", "update", "delete"],
    "transactioncurrency": ["create", "read", "update", "delete"],
    "email": ["read"],
    "lead": ["create", "read", "update", "delete", "qualify_lead", "disqualify_lead"],
    "opportunity": ["create", "read", "update", "delete", "close_opportunity"],
    "opportunityproduct": ["create", "read", "update", "delete"],
    "phonecall": ["create", "read", "update", "delete"],
    "position": ["create", "read", "update", "delete"],
    "product": ["create", "read", "update", "delete"],
    "task": ["create", "read", "update", "delete"],
    "team": ["read"],
    "systemuser": ["read"],
}


def add_example(app: Flask, org: Org, definition: dict[str, Any] | None = None) -> None:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        add_entity(dbs, svc.registry, svc.registry.model(dbs, org.org_id), definition or EXAMPLE)
        dbs.commit()


def test_metadata_lists_every_entity_with_its_offline_commands_views_form_and_quick_find(alice: Api) -> None:
    doc = alice.get("/api/metadata").json
    entities = {e["logical_name"]: e for e in doc["entities"]}
    for name, commands in OFFLINE_TABLE.items():
        e = entities[name]
        assert e["offline_commands"] == commands, name
        assert len(e["views"]) >= 2, name
        assert e["form"]["sections"], name
        assert e["quick_find"], name
        for key in ("entity_set", "display_name", "primary_id", "primary_name", "ownership", "attributes"):
            assert e[key], (name, key)
        for attr in e["attributes"]:
            assert set(attr) >= {"logical_name", "type", "required", "max_length", "options", "targets"}
    assert entities["account"]["ownership"] == "user"
    assert entities["product"]["ownership"] == "organization"
    parent = next(a for a in entities["contact"]["attributes"] if a["logical_name"] == "parentcustomerid")
    assert parent["targets"] == ["account", "contact"]
    assert doc["offline_profile"]["enabled"] is True
    assert doc["conflict_detection"] is False
    assert isinstance(doc["sync_interval_minutes"], int)


def test_metadata_answers_304_when_the_device_already_has_this_version(alice: Api) -> None:
    first = alice.get("/api/metadata")
    again = alice.get("/api/metadata", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert first.headers["ETag"] == f'"{first.json["version"]}"'


def test_adding_a_custom_entity_changes_the_metadata_version_and_its_api_appears_at_once(
    app: Flask, org: Org, alice: Api, carol: Api
) -> None:
    before = alice.get("/api/metadata").json["version"]
    add_example(app, org)
    doc = alice.get("/api/metadata").json
    assert doc["version"] != before
    visit = next(e for e in doc["entities"] if e["logical_name"] == "new_visitreport")
    assert visit["offline_commands"] == ["create", "read", "update", "delete"]
    assert visit["is_custom"] is True
    assert [v["name"] for v in visit["views"]] == ["My Visit Reports", "Well-Rated Visits"]

    acc = alice.post("/api/data/accounts", json={"name": "Visited"}).json
    created = alice.post(
        "/api/data/new_visitreports",
        json={
            "new_subject": "Site visit",
            "new_visitdate": "2026-11-20",
            "new_rating": 4,
            "new_accountid@odata.bind": f"/accounts({acc['accountid']})",
        },
    )
    assert created.status_code == 201, created.json
    assert created.json["new_rating@OData.Community.Display.V1.FormattedValue"] == "Very Good"
    assert created.json["_new_accountid_value@OData.Community.Display.V1.FormattedValue"] == "Visited"
    bad = alice.post(
        "/api/data/new_visitreports", json={"new_subject": "x", "new_visitdate": "2026-11-20", "new_rating": 9}
    )
    assert bad.status_code == 422
    assert bad.json["error"]["field"] == "new_rating"
    assert (
        alice.get("/api/data/new_visitreports?$filter=new_rating ge 4").json["value"][0]["new_subject"] == "Site visit"
    )
    # Custom entities belong to the organisation that added them.
    assert carol.get("/api/data/new_visitreports").status_code == 404
    assert all(e["logical_name"] != "new_visitreport" for e in carol.get("/api/metadata").json["entities"])


def bad(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(EXAMPLE)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        (bad(logical_name="visitreport"), "publisher prefix"),
        (bad(logical_name="account"), "publisher prefix"),
        (bad(attributes=[]), "attributes must be a non-empty list"),
        (bad(primary_name="nope"), "primary_name"),
        (bad(ownership="everyone"), "ownership"),
        (bad(offline_commands=["qualify_lead"]), "offline_commands"),
        (bad(attributes=[{"logical_name": "new_subject", "type": "colour"}]), "type must be one of"),
        (
            bad(
                attributes=[
                    {"logical_name": "new_subject", "type": "string"},
                    {"logical_name": "new_subject", "type": "string"},
                ]
            ),
            "unique",
        ),
        (
            bad(
                attributes=[
                    {"logical_name": "new_subject", "type": "string"},
                    {"logical_name": "new_x", "type": "lookup", "targets": ["spaceship"]},
                ]
            ),
            "unknown lookup target",
        ),
        (
            bad(
                attributes=[
                    {"logical_name": "new_subject", "type": "string"},
                    {"logical_name": "ownerid", "type": "string"},
                ]
            ),
            "reserved",
        ),
        (
            bad(
                attributes=[
                    {"logical_name": "new_subject", "type": "string"},
                    {"logical_name": "new_o", "type": "optionset"},
                ]
            ),
            "options",
        ),
        (bad(views=[{"name": "V", "columns": ["missing"]}]), "every column must be an attribute"),
        (bad(form=[{"name": "F", "fields": ["missing"]}]), "unknown fields"),
        (bad(colour="red"), "unknown keys"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_bad_custom_entity_definition_is_refused_whole_with_a_clear_message(
    app: Flask, org: Org, alice: Api, definition: Any, fragment: str
) -> None:
    from webapp.crm.errors import ValidationFailed

    before = alice.get("/api/metadata").json["version"]
    with pytest.raises(ValidationFailed) as info:
        add_example(app, org, definition)
    assert fragment in info.value.message
    assert alice.get("/api/metadata").json["version"] == before


def test_the_same_custom_entity_cannot_be_added_twice(app: Flask, org: Org) -> None:
    from webapp.crm.errors import ValidationFailed

    add_example(app, org)
    with pytest.raises(ValidationFailed, match="already exists"):
        add_example(app, org)


def test_add_entity_from_the_command_line(
    app: Flask, org: Org, alice: Api, database_url: str, monkeypatch: Any
) -> None:
    from webapp.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    path = Path(__file__).parent.parent / "examples" / "new_visitreport.json"
    result = CliRunner().invoke(main, ["add-entity", "--org", "contoso", str(path)])
    assert result.exit_code == 0, result.output
    assert "new_visitreports" in result.output
    assert alice.get("/api/data/new_visitreports").status_code == 200
    again = CliRunner().invoke(main, ["add-entity", "--org", "contoso", str(path)])
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_paging_follows_next_links_through_every_record_once_in_order(alice: Api) -> None:
    names = [f"Acc {i:02d}" for i in range(23)]
    for n in reversed(names):
        alice.post("/api/data/accounts", json={"name": n})
    seen: list[str] = []
    url = "/api/data/accounts?$select=name&$orderby=name asc"
    pages = 0
    while url:
        resp = alice.get(url, headers={"Prefer": "odata.maxpagesize=5"})
        assert resp.status_code == 200
        assert resp.headers["Preference-Applied"] == "odata.maxpagesize=5"
        seen += [r["name"] for r in resp.json["value"]]
        url = resp.json.get("@odata.nextLink", "").replace("http://localhost", "")
        pages += 1
    assert seen == names
    assert pages == 5


def test_top_caps_the_total_across_pages(alice: Api) -> None:
    for i in range(7):
        alice.post("/api/data/accounts", json={"name": f"T{i}"})
    first = alice.get("/api/data/accounts?$top=4&$orderby=name", headers={"Prefer": "odata.maxpagesize=3"}).json
    assert [r["name"] for r in first["value"]] == ["T0", "T1", "T2"]
    second = alice.get(first["@odata.nextLink"].replace("http://localhost", "")).json
    assert [r["name"] for r in second["value"]] == ["T3"]
    assert "@odata.nextLink" not in second


def test_openapi_describes_every_entity_set_and_the_auth_routes(app: Flask, org: Org, alice: Api) -> None:
    add_example(app, org)
    public = app.test_client().get("/api/openapi.json").json
    assert public["openapi"].startswith("3.")
    assert "/api/data/accounts" in public["paths"]
    assert "/api/data/new_visitreports" not in public["paths"]
    doc = alice.get("/api/openapi.json").json
    for name in OFFLINE_TABLE:
        entity = next(e for e in alice.get("/api/metadata").json["entities"] if e["logical_name"] == name)
        assert f"/api/data/{entity['entity_set']}" in doc["paths"]
    assert "post" in doc["paths"]["/api/data/new_visitreports"]
    assert "post" not in doc["paths"]["/api/data/activitypointers"]
    assert "delete" in doc["paths"]["/api/data/activitypointers({id})"]
    assert "/api/auth/login" in doc["paths"]
    write = doc["components"]["schemas"]["account_write"]
    assert write["required"] == ["name"]
    assert write["additionalProperties"] is False
    assert "primarycontactid@odata.bind" in write["properties"]


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_build_exactly_the_schema_the_code_describes(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from webapp.db import connect, metadata
    from webapp.schema import upgrade

    fresh = None
    if not database_url.startswith("sqlite"):
        # A schema of its own, so the migrations really run from an empty database.
        from tests.conftest import PG_URL, _pg_schema_url

        fresh = f"m_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {fresh}")
        database_url = _pg_schema_url(PG_URL, fresh)
    db = connect(database_url)
    try:
        upgrade(db)
        upgrade(db)  # a second run on an up-to-date database changes nothing
        with db.write_engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            if db.is_sqlite:
                present = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
            else:
                present = set(conn.exec_driver_sql("SELECT indexname FROM pg_indexes").scalars())
        assert diff == []
        # Expression indexes cannot be compared by reflection: check them by name.
        wanted = {ix.name for t in metadata.tables.values() for ix in t.indexes if "_qf_" in str(ix.name)}
        assert len(wanted) > 20
        assert wanted <= present
    finally:
        db.dispose()
        if fresh:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {fresh} CASCADE")
            admin.dispose()


def test_an_existing_database_is_upgraded_in_place_keeping_its_data(tmp_path: Path) -> None:
    from webapp import create_app

    url = f"sqlite:///{tmp_path}/keep.db"
    app = create_app({"DATABASE_URL": url, "FAST_PASSWORD_HASH": True})
    svc = services(app)
    from webapp.crm.orgs import create_org

    with svc.db.session(write=True) as dbs:
        create_org(dbs, svc.registry, "keepme")
        dbs.commit()
    svc.db.dispose()
    again = create_app({"DATABASE_URL": url, "FAST_PASSWORD_HASH": True})
    from sqlalchemy import select

    from webapp.crm.tables import organization

    with services(again).db.session() as dbs:
        assert dbs.execute(select(organization.c.name)).scalars().all() == ["keepme"]
    services(again).db.dispose()
