"""The demo organisation (`build_demo`) and bulk records (`load_bulk`)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from webapp import create_app
from webapp.crm.errors import NotFound
from webapp.crm.orgs import create_org, org_id_by_name
from webapp.crm.tables import SYSTEM_TABLES, changelog, teammembership
from webapp.db import connect_unpooled
from webapp.demo import DEMO_ORG, DEMO_PASSWORD, DEMO_ROLES, build_demo, demo_signins, load_bulk
from webapp.services import services

PG_URL = os.environ.get("OUTPOST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SALESPEOPLE = ("east1", "east2", "west1", "west2")
BULK_ENTITIES = ("account", "contact", "lead", "opportunity")


def make_app(database_url: str) -> Flask:
    """An app on `database_url` with the schema created directly and cheap password hashing."""
    return create_app(
        {
            "DATABASE_URL": database_url,
            "FAST_PASSWORD_HASH": True,
            "SCHEMA_SETUP": "create_all",
            "SECRET_KEY": "test-secret",
            "TESTING": True,
        }
    )


@pytest.fixture
def demo_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh SQLite database."""
    app = make_app(f"sqlite:///{tmp_path}/t.db")
    yield app
    services(app).db.dispose()


@pytest.fixture
def pg_app() -> Iterator[Flask]:
    """An app on a fresh schema of the PostgreSQL server (dropped afterwards), or a skip saying why."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect_unpooled(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        admin.dispose()
        where = make_url(PG_URL).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {where}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    separator = "&" if "?" in PG_URL else "?"
    app = None
    try:
        app = make_app(f"{PG_URL}{separator}options=-csearch_path%3D{schema}")
        yield app
    finally:
        if app is not None:
            services(app).db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def load_demo(app: Flask) -> list[dict[str, str]]:
    """Build the demo organisation in one committed transaction; returns the sign-ins."""
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        signins = build_demo(dbs, svc.registry, svc.hasher)
        dbs.commit()
    return signins


def bulk_load(app: Flask, org: str, records: int) -> dict[str, int]:
    """Run load_bulk in one committed transaction."""
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        counts = load_bulk(dbs, svc.registry, org, records, progress=False)
        dbs.commit()
    return counts


def rows(dbs: Session, org_id: str, entity: str) -> list[Any]:
    """Every row of one entity in one organisation."""
    t = SYSTEM_TABLES[entity]
    return list(dbs.execute(select(t).where(t.c.organizationid == org_id)).mappings())


def sign_in(app: Flask, username: str, password: str = DEMO_PASSWORD, org: str = DEMO_ORG) -> FlaskClient:
    """A test client signed in as `username` (asserts the sign-in works)."""
    client = app.test_client()
    resp = client.post("/api/auth/login", json={"org": org, "username": username, "password": password})
    assert resp.status_code == 200, resp.json
    return client


def test_build_demo_creates_the_documented_structure_and_record_counts(demo_app: Flask) -> None:
    load_demo(demo_app)
    with services(demo_app).db.session() as dbs:
        org_id = org_id_by_name(dbs, DEMO_ORG)
        count = {e: len(rows(dbs, org_id, e)) for e in SYSTEM_TABLES}
        assert count["businessunit"] == 4
        assert count["systemuser"] == 7
        assert count["team"] == 3
        assert count["position"] == 3
        assert count["transactioncurrency"] == 3
        assert 10 <= count["product"] <= 15
        assert count["competitor"] == 3
        assert count["competitoraddress"] >= 3
        assert 45 <= count["account"] <= 60
        assert 80 <= count["contact"] <= 120
        assert 35 <= count["lead"] <= 50
        assert 25 <= count["opportunity"] <= 35
        assert count["opportunityproduct"] >= count["opportunity"]
        assert 35 <= count["appointment"] + count["phonecall"] + count["task"] <= 50
        assert 8 <= count["email"] <= 15
        assert 12 <= count["incident"] <= 20
        assert 3 <= count["annotation"] <= 10
        assert count["connectionrole"] == 3
        assert count["connection"] >= 3

        leads = Counter((r["statecode"], r["statuscode"]) for r in rows(dbs, org_id, "lead"))
        assert leads[(0, 1)] + leads[(0, 2)] > len(list(leads.elements())) / 2  # mostly open
        assert leads[(1, 3)] >= 3
        assert sum(n for (state, _), n in leads.items() if state == 2) >= 3
        opportunities = rows(dbs, org_id, "opportunity")
        won = [o for o in opportunities if o["statecode"] == 1]
        lost = [o for o in opportunities if o["statecode"] == 2]
        assert len(won) >= 3 and all(o["statuscode"] == 3 and o["actualvalue"] and o["actualclosedate"] for o in won)
        assert len(lost) >= 2 and all(o["statuscode"] in (4, 5) for o in lost)
        assert {o["stepname"] for o in opportunities} <= {"1-Qualify", "2-Develop", "3-Propose", "4-Close"}
        assert any(r["statecode"] == 1 for r in rows(dbs, org_id, "incident"))
        assert any(r["statecode"] == 1 for e in ("appointment", "phonecall", "task") for r in rows(dbs, org_id, e))


def test_every_demo_record_is_change_logged_at_its_version(demo_app: Flask) -> None:
    load_demo(demo_app)
    with services(demo_app).db.session() as dbs:
        org_id = org_id_by_name(dbs, DEMO_ORG)
        latest = dict(
            dbs.execute(
                select(changelog.c.recordid, func.max(changelog.c.changenum))
                .where(changelog.c.organizationid == org_id)
                .group_by(changelog.c.recordid)
            ).all()
        )
        for entity, table in SYSTEM_TABLES.items():
            pk = next(c.name for c in table.primary_key.columns if c.name != "organizationid")
            for row in rows(dbs, org_id, entity):
                assert latest[row[pk]] == row["versionnumber"], (entity, row[pk])


def test_demo_records_are_linked_and_owned_across_units(demo_app: Flask) -> None:
    load_demo(demo_app)
    with services(demo_app).db.session() as dbs:
        org_id = org_id_by_name(dbs, DEMO_ORG)
        users = {u["username"]: u for u in rows(dbs, org_id, "systemuser")}
        units = {u["name"]: u["businessunitid"] for u in rows(dbs, org_id, "businessunit")}
        accounts = {a["accountid"]: a for a in rows(dbs, org_id, "account")}
        contacts = {c["contactid"]: c for c in rows(dbs, org_id, "contact")}
        teams = {t["name"]: t for t in rows(dbs, org_id, "team")}

        # people and structure
        for name in SALESPEOPLE:
            assert users[name]["parentsystemuserid"] == users["manager"]["systemuserid"]
        assert users["east1"]["businessunitid"] == units["Sales East"]
        assert users["west2"]["businessunitid"] == units["Sales West"]
        assert users["support"]["businessunitid"] == units["Support"]
        positions = {p["positionid"]: p for p in rows(dbs, org_id, "position")}
        assert positions[users["manager"]["positionid"]]["name"] == "Sales Director"
        executive = positions[users["east2"]["positionid"]]
        assert executive["name"] == "Account Executive"
        assert positions[executive["parentpositionid"]]["name"] == "Regional Sales Lead"
        members = dbs.execute(select(teammembership.c.teamid, teammembership.c.systemuserid)).all()
        by_id = {u["systemuserid"]: name for name, u in users.items()}
        key_accounts = {by_id[u] for t, u in members if t == teams["Key Accounts"]["teamid"]}
        assert key_accounts == {"manager", "east1", "west1"}
        assert teams["East Field Team"]["businessunitid"] == units["Sales East"]

        # links
        assert all(
            c["parentcustomerid"] in accounts and c["parentcustomerid__type"] == "account" for c in contacts.values()
        )
        assert any(a["parentaccountid"] in accounts for a in accounts.values())
        primaries = [a for a in accounts.values() if a["primarycontactid"]]
        assert len(primaries) >= len(accounts) / 2
        assert all(contacts[a["primarycontactid"]]["parentcustomerid"] == a["accountid"] for a in primaries)
        lines = Counter(line["opportunityid"] for line in rows(dbs, org_id, "opportunityproduct"))
        opportunities = rows(dbs, org_id, "opportunity")
        assert all(1 <= lines[o["opportunityid"]] <= 3 for o in opportunities)
        assert all(o["customerid__type"] in ("account", "contact") for o in opportunities)
        assert Counter(o["customerid__type"] for o in opportunities).most_common(1)[0][0] == "account"
        for entity in ("appointment", "phonecall", "task", "email"):
            assert all(r["regardingobjectid__type"] for r in rows(dbs, org_id, entity))
        assert all(n["objectid"] in accounts for n in rows(dbs, org_id, "annotation"))

        # owners: users of several units, and some teams
        owned = [r for e in ("account", "contact", "opportunity", "lead", "incident") for r in rows(dbs, org_id, e)]
        assert {r["owningbusinessunit"] for r in owned} >= {units["Sales East"], units["Sales West"], units["Support"]}
        assert any(r["ownerid__type"] == "team" for r in owned)
        for r in owned:
            if r["ownerid__type"] == "systemuser":
                assert by_id[r["ownerid"]] in ("manager", *SALESPEOPLE, "support")
                assert users[by_id[r["ownerid"]]]["businessunitid"] == r["owningbusinessunit"]


def test_build_demo_is_deterministic(tmp_path: Path) -> None:
    def snapshot(name: str) -> dict[str, Counter[Any]]:
        app = make_app(f"sqlite:///{tmp_path}/{name}.db")
        try:
            load_demo(app)
            with services(app).db.session() as dbs:
                org_id = org_id_by_name(dbs, DEMO_ORG)
                return {
                    "accounts": Counter(r["name"] for r in rows(dbs, org_id, "account")),
                    "leads": Counter(r["subject"] for r in rows(dbs, org_id, "lead")),
                    "contacts": Counter((r["fullname"], r["birthdate"]) for r in rows(dbs, org_id, "contact")),
                    "opportunities": Counter(
                        (r["name"], r["estimatedvalue"], r["statecode"]) for r in rows(dbs, org_id, "opportunity")
                    ),
                }
        finally:
            services(app).db.dispose()

    first, second = snapshot("a"), snapshot("b")
    assert first == second
    assert len(first["accounts"]) >= 45  # and the names are distinct


def test_every_demo_sign_in_works_over_http(demo_app: Flask) -> None:
    signins = load_demo(demo_app)
    assert [s["username"] for s in signins] == list(DEMO_ROLES)
    assert {s["username"]: s["role"] for s in signins} == DEMO_ROLES
    assert signins == demo_signins()
    with services(demo_app).db.session() as dbs:
        org_id = org_id_by_name(dbs, DEMO_ORG)
        unit_names = {u["businessunitid"]: u["name"] for u in rows(dbs, org_id, "businessunit")}
        unit_of = {u["username"]: unit_names[u["businessunitid"]] for u in rows(dbs, org_id, "systemuser")}
    assert {s["username"]: s["business_unit"] for s in signins} == unit_of
    assert set(unit_of.values()) == {"Contoso", "Sales East", "Sales West", "Support"}
    for s in signins:
        client = demo_app.test_client()
        resp = client.post(
            "/api/auth/login", json={"org": DEMO_ORG, "username": s["username"], "password": s["password"]}
        )
        assert resp.status_code == 200, (s, resp.json)
        assert resp.json["user"]["username"] == s["username"]
    wrong = demo_app.test_client().post(
        "/api/auth/login", json={"org": DEMO_ORG, "username": "east1", "password": "not-the-password"}
    )
    assert wrong.status_code == 401


def check_bulk_load(app: Flask) -> None:
    """load_bulk(2,000) on the demo organisation: counts, owners, change log, reads over HTTP."""
    load_demo(app)
    svc = services(app)
    with svc.db.session() as dbs:
        before = int(dbs.execute(select(func.max(changelog.c.changenum))).scalar_one())
        org_id = org_id_by_name(dbs, DEMO_ORG)
        existing = {e: len(rows(dbs, org_id, e)) for e in BULK_ENTITIES}

    counts = bulk_load(app, DEMO_ORG, 2000)

    assert counts == {"account": 800, "contact": 800, "lead": 200, "opportunity": 200}
    with svc.db.session() as dbs:
        log = dbs.execute(
            select(changelog).where(changelog.c.changenum > before).order_by(changelog.c.changenum)
        ).mappings()
        logged = {r["recordid"]: r for r in log}
        assert len(logged) == 2000
        assert all(r["operation"] == "create" and r["organizationid"] == org_id for r in logged.values())
        users = {u["systemuserid"]: u for u in rows(dbs, org_id, "systemuser")}
        new: dict[str, list[Any]] = {}
        for entity in BULK_ENTITIES:
            all_rows = rows(dbs, org_id, entity)
            assert len(all_rows) == existing[entity] + counts[entity]
            new[entity] = [r for r in all_rows if r["versionnumber"] > before]
            assert len(new[entity]) == counts[entity]
            pk = f"{entity}id"
            for r in new[entity]:
                entry = logged[r[pk]]
                assert entry["changenum"] == r["versionnumber"]
                assert entry["entity"] == entity
                assert (entry["ownerid"], entry["owningbusinessunit"]) == (r["ownerid"], r["owningbusinessunit"])
                assert r["ownerid__type"] == "systemuser"
                assert users[r["ownerid"]]["businessunitid"] == r["owningbusinessunit"]
                assert r["createdon"] is not None and r["modifiedon"] is not None
                assert (r["statecode"], r["statuscode"]) in ((0, 1), (0, 2))
                assert set(entry["changedfields"]) <= {c for c, v in r.items() if v is not None}
        versions = [r["versionnumber"] for e in BULK_ENTITIES for r in new[e]]
        assert len(set(versions)) == 2000
        new_accounts = {r["accountid"] for r in new["account"]}
        assert all(c["parentcustomerid"] in new_accounts for c in new["contact"])
        assert all(o["customerid"] in new_accounts for o in new["opportunity"])
        assert all(c["fullname"] == f"{c['firstname']} {c['lastname']}" for c in new["contact"] + new["lead"])
        east1 = next(u for u in users.values() if u["username"] == "east1")["systemuserid"]
        some_contact = next(c for c in new["contact"] if c["ownerid"] == east1)

    client = sign_in(app, "east1")
    page = client.get("/api/data/contacts?$top=5")
    assert page.status_code == 200, page.json
    assert len(page.json["value"]) == 5
    one = client.get(f"/api/data/contacts({some_contact['contactid']})")
    assert one.status_code == 200
    assert one.json["fullname"] == some_contact["fullname"]
    assert one.json["versionnumber"] == some_contact["versionnumber"]

    # Ordinary writes after the bulk load take the next change numbers (the numbering was kept in step).
    csrf = client.get("/api/auth/me").json["csrf_token"]
    created = client.post("/api/data/accounts", json={"name": "After the load"}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.json
    assert created.json["versionnumber"] > max(versions)


def test_load_bulk_adds_change_logged_records_that_read_back_over_http(demo_app: Flask) -> None:
    check_bulk_load(demo_app)


@pytest.mark.postgres
def test_load_bulk_on_postgresql(pg_app: Flask) -> None:
    check_bulk_load(pg_app)


def test_load_bulk_without_users_leaves_records_unowned(demo_app: Flask) -> None:
    svc = services(demo_app)
    with svc.db.session(write=True) as dbs:
        model = create_org(dbs, svc.registry, "bare", "Bare")
        dbs.commit()
    assert bulk_load(demo_app, "bare", 7) == {"account": 2, "contact": 2, "lead": 0, "opportunity": 3}
    with svc.db.session() as dbs:
        records = [r for e in BULK_ENTITIES for r in rows(dbs, model.org_id, e)]
        assert len(records) == 7
        assert all(r["ownerid"] is None and r["owningbusinessunit"] is None for r in records)


def test_load_bulk_of_an_unknown_organisation_is_refused(demo_app: Flask) -> None:
    with pytest.raises(NotFound):
        bulk_load(demo_app, "nobody", 10)


def test_the_demo_has_a_custom_site_visit_entity_offline_with_views_form_and_records(demo_app: Flask) -> None:
    """The reference lists "Custom Entity" among the offline entities: the demo's Site Visit, added
    through the customization path of `outpost add-entity`, linked to accounts."""
    load_demo(demo_app)
    east1 = sign_in(demo_app, "east1")
    doc = east1.get("/api/metadata").json
    visit = next(e for e in doc["entities"] if e["logical_name"] == "new_sitevisit")
    assert visit["is_custom"] and visit["display_collection_name"] == "Site Visits"
    assert doc["offline_profile"]["entities"]["new_sitevisit"]["enabled"] is True
    assert [v["name"] for v in visit["views"]] == ["My Site Visits", "All Site Visits", "Follow-up Needed"]
    assert [s["name"] for s in visit["form"]["sections"]] == ["Visit", "On Site"]
    assert next(a for a in visit["attributes"] if a["logical_name"] == "new_accountid")["targets"] == ["account"]
    assert next(a for a in visit["attributes"] if a["logical_name"] == "new_sitephone")["format"] == "phone"
    mine = east1.get("/api/data/new_sitevisits?$filter=" + visit["views"][0]["filter"]).json["value"]
    everyone = east1.get("/api/data/new_sitevisits").json["value"]
    me = east1.get("/api/auth/me").json["user"]["id"]
    assert mine and len(mine) < len(everyone)  # a salesperson reads the unit's, "My" holds their own
    assert {v["_ownerid_value"] for v in mine} == {me}
    assert all(v["@Outpost.Access"] == "wdas" for v in mine)
    assert all(v["_new_accountid_value@OData.Community.Display.V1.FormattedValue"] for v in everyone)
    created = east1.post(
        "/api/data/new_sitevisits",
        json={"new_name": "Walk-through", "new_visitdate": "2026-12-01", "new_sitephone": "+1 555 0100"},
        headers={"X-CSRF-Token": east1.get("/api/auth/me").json["csrf_token"]},
    )
    assert created.status_code == 201, created.json
    assert created.json["_ownerid_value"] == me
