"""Field security on the paths that read sideways (issue 17, item 2): commands and lookup labels.

Commands and lookups must apply field security as reads do:

- every business command, for every field of the records it reads, secured in turn (the user
  may set it but not read it): nothing the command answers or writes carries that field's
  value — `close_opportunity` copied a secured estimated value into the actual value, and
  `qualify_lead` a secured estimated amount into the new opportunity;
- every lookup of every entity in the metadata, to a record whose primary name is secured:
  the lookup keeps its id and loses its label, in the Web API and the sync pages (both
  serialise through `webapp.security.operations`).

The commands and the lookups come from the metadata (`COMMANDS`, each entity's attributes), so
a new one is covered by this test — a new command fails it until it has a scenario here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api, Org, sign_in
from tests.test_sync_replay import Device
from webapp.crm import records
from webapp.crm.commands import COMMANDS
from webapp.crm.metadata import Entity
from webapp.crm.records import Actor
from webapp.crm.serialize import FORMATTED, SYSTEM_LOOKUPS
from webapp.security import fieldsecurity
from webapp.security import operations as ops
from webapp.security.scope import load_principal
from webapp.services import services

NUMERIC = ("money", "decimal", "integer")
SENTINEL_NUMBER = 7_654_321  # fits every unbounded number field, found nowhere else


def with_model(app: Flask, org: Org, fn: Callable[[Any, Any], Any]) -> Any:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        result = fn(dbs, svc.registry.model(dbs, org.org_id))
        dbs.commit()
    return result


def sentinel_fields(entity: Entity) -> list[tuple[str, Any]]:
    """Every field of `entity` a user writes that can carry a recognisable value, with that value."""
    out: list[tuple[str, Any]] = []
    for i, a in enumerate(entity.attributes):
        if a.read_only or a.logical_name in (entity.primary_id, "statecode", "statuscode"):
            continue
        if a.type in ("string", "memo") and (a.max_length or 100) >= 24:
            out.append((a.logical_name, f"secret-{entity.logical_name}-{a.logical_name}"))
        elif a.type in NUMERIC and (a.max_value is None or a.max_value > SENTINEL_NUMBER):
            out.append((a.logical_name, SENTINEL_NUMBER + i))  # one value per field
    return out


# --- the commands -----------------------------------------------------------------------------
# A scenario creates, as the user, the records a command reads (values from `fill`), and
# returns (the command's arguments, the records whose fields are secured in turn).

Scenario = Callable[
    [Api, Callable[[str, dict[str, Any]], dict[str, Any]]], tuple[dict[str, Any], list[tuple[str, str]]]
]


def _new(user: Api, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = user.post(f"/api/data/{entity_set}", json=body)
    assert resp.status_code == 201, resp.json
    return dict(resp.json)


def qualify(user: Api, fill: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Any:
    lead = _new(user, "leads", fill("lead", {}))
    args = {"leadid": lead["leadid"], "create_account": True, "create_contact": True, "create_opportunity": True}
    return args, [("lead", lead["leadid"])]


def disqualify(user: Api, fill: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Any:
    lead = _new(user, "leads", fill("lead", {}))
    return {"leadid": lead["leadid"], "statuscode": 4}, [("lead", lead["leadid"])]


def convert(user: Api, fill: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Any:
    account = _new(user, "accounts", {"name": "Customer"})
    opp = _new(
        user,
        "opportunities",
        fill("opportunity", {"customerid_account@odata.bind": f"/accounts({account['accountid']})"}),
    )
    appointment = _new(
        user,
        "appointments",
        fill("appointment", {"regardingobjectid_opportunity@odata.bind": f"/opportunities({opp['opportunityid']})"}),
    )
    args = {"activityid": appointment["activityid"], "complete_activity": True}
    return args, [("appointment", appointment["activityid"]), ("opportunity", opp["opportunityid"])]


def close(user: Api, fill: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Any:
    opp = _new(user, "opportunities", fill("opportunity", {}))
    return {"opportunityid": opp["opportunityid"], "status": "won"}, [("opportunity", opp["opportunityid"])]


SCENARIOS: dict[str, Scenario] = {
    "qualify_lead": qualify,
    "disqualify_lead": disqualify,
    "convert_activity_to_case": convert,
    "close_opportunity": close,
}


def test_every_command_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(COMMANDS)


def _carries(value: Any, sentinel: Any) -> bool:
    if isinstance(sentinel, str):
        return isinstance(value, str) and sentinel in value
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and float(value) == float(sentinel)


def _text_carries(text: str, sentinel: Any) -> bool:
    if isinstance(sentinel, str):
        return sentinel in text
    return str(sentinel) in text or f"{sentinel:,}" in text


def _fetch(app: Flask, org: Org, keys: list[tuple[str, str]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Records as stored (no security)."""

    def fetch(dbs: Any, m: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [(e, rid, records.fetch(dbs, m, m.entity(e), rid) or {}) for e, rid in keys]

    return list(with_model(app, org, fetch))


def _copies(
    app: Flask, org: Org, before: dict[tuple[str, str], dict[str, Any]], result: dict[str, Any], value: Any
) -> list[str]:
    """The columns a command's writes made carry `value` (that did not carry it before)."""
    out = []
    for written_entity, rid, row in _written(app, org, result):
        old = before.get((written_entity, rid), {})
        out += [
            f"{written_entity}.{column}"
            for column, stored in row.items()
            if _carries(stored, value) and not _carries(old.get(column), value)
        ]
    return out


def _written(app: Flask, org: Org, result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The records a command created or updated, as stored (no security)."""
    ids = with_model(app, org, lambda dbs, m: {name: e.primary_id for name, e in m.entities.items()})
    keys = [(item["entity"], item["record"][ids[item["entity"]]]) for item in result["created"] + result["updated"]]
    return _fetch(app, org, keys)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_never_carries_a_secured_value_the_user_may_not_read(app: Flask, org: Org, command: str) -> None:
    """For each field the command reads, secured with create and update but not read granted:
    the command's answer and every record it writes hold nothing of that field's value."""
    bob = sign_in(app, "contoso", "bob")
    entities = with_model(app, org, lambda dbs, m: {name: m.entity(name) for name in m.entities})

    def fill(entity: str, body: dict[str, Any]) -> dict[str, Any]:
        return {**dict(sentinel_fields(entities[entity])), **body}

    # Unsecured, the command copies some of these values: the check below can see a copy.
    args, sources = SCENARIOS[command](bob, fill)
    baseline = bob.post(f"/api/commands/{command}", json=args)
    assert baseline.status_code == 200, baseline.json
    copies_seen = 0
    cases = [(entity, name, value) for entity, _ in sources for name, value in sentinel_fields(entities[entity])]
    for n, (entity, field, value) in enumerate(cases):
        args, sources = SCENARIOS[command](bob, fill)

        def secure(dbs: Any, m: Any, entity: str = entity, field: str = field, n: int = n) -> None:
            fieldsecurity.set_secured(dbs, m, entity, field)
            profile = fieldsecurity.create_profile(dbs, m, f"{command} {n}")
            fieldsecurity.set_permission(dbs, m, profile, entity, field, read=False, create=True, update=True)
            fieldsecurity.add_member(dbs, m, profile, org.bob, "systemuser")

        with_model(app, org, secure)
        before = {(e, r): row for e, r, row in _fetch(app, org, sources)}
        resp = bob.post(f"/api/commands/{command}", json=args)
        with_model(app, org, lambda dbs, m, e=entity, f=field: fieldsecurity.set_secured(dbs, m, e, f, False))
        assert resp.status_code in (200, 422), (entity, field, resp.json)
        if resp.status_code != 200:
            assert not _text_carries(json.dumps(resp.json), value), (entity, field)
            continue
        shown = [
            item
            for item in resp.json["created"] + resp.json["updated"]
            if (item["entity"], item["record"][entities[item["entity"]].primary_id]) not in before
        ]
        assert not _text_carries(json.dumps(shown), value), f"{entity}.{field} shown in the command's answer"
        copies = _copies(app, org, before, resp.json, value)
        assert not copies, f"{entity}.{field} copied into {copies}"
        # The same run with the field readable again shows whether the command copies it at all.
        args, sources = SCENARIOS[command](bob, fill)
        before = {(e, r): row for e, r, row in _fetch(app, org, sources)}
        again = bob.post(f"/api/commands/{command}", json=args)
        assert again.status_code == 200, again.json
        copies_seen += bool(_copies(app, org, before, again.json, value))
    if command in ("qualify_lead", "close_opportunity", "convert_activity_to_case"):
        assert copies_seen, "the scenario copies nothing: the test would see no leak"


# --- the lookups ------------------------------------------------------------------------------


def _lookups(m: Any) -> list[tuple[Entity, str, str]]:
    """(entity, lookup attribute, target) for every lookup of every entity, system lookups too."""
    out = []
    for entity in m.entities.values():
        if entity.union_of:
            continue
        for a in entity.attributes:
            if a.type == "lookup":
                out += [(entity, a.logical_name, t) for t in a.targets]
        if entity.ownership == "user":
            out += [(entity, col, target or "systemuser") for col, target in SYSTEM_LOOKUPS if target != "businessunit"]
            out += [(entity, "owningbusinessunit", "businessunit")]
    return out


def test_no_lookup_label_shows_a_secured_primary_name(app: Flask, org: Org) -> None:
    """Every lookup in the metadata to every target: with the target's primary name secured,
    the lookup's formatted value is withheld (and shown again with a read grant)."""
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        m = svc.registry.model(dbs, org.org_id)
        lookups = _lookups(m)
        targets = sorted({t for _, _, t in lookups if m.entity(t).primary_name and not m.entity(t).union_of})
        names: dict[str, tuple[str, str]] = {}  # target → (a record id, its secret name)
        table_of = m.table
        for t in targets:
            entity = m.entity(t)
            table = table_of(entity)
            rid = dbs.execute(
                table.select().with_only_columns(table.c[entity.primary_id]).where(table.c.organizationid == m.org_id)
            ).scalar()
            if rid is None:
                rid = records.insert_record(dbs, m, Actor(m.org_id, None, None), entity, {})[entity.primary_id]
            secret = f"secret-name-of-{t}"
            dbs.execute(
                table.update()
                .where(table.c.organizationid == m.org_id, table.c[entity.primary_id] == rid)
                .values({entity.primary_name: secret})
            )
            names[t] = (rid, secret)
        dbs.commit()

    def labels(user_id: str) -> dict[tuple[str, str, str], Any]:
        with svc.db.session() as dbs:
            m = svc.registry.model(dbs, org.org_id)
            p = load_principal(dbs, m, user_id)
            out = {}
            for entity, attribute, target in lookups:
                if target not in names:
                    continue
                rid, _ = names[target]
                row = {entity.primary_id: str(uuid.uuid4()), attribute: rid, f"{attribute}__type": target}
                if attribute == "ownerid":
                    row["ownerid__type"] = target
                wire = ops.to_wire_many(dbs, m, p, entity, [row])[0]
                out[(entity.logical_name, attribute, target)] = wire.get(f"_{attribute}_value{FORMATTED}")
            return out

    before = labels(org.bob)
    assert before and all(before[k] == names[k[2]][1] for k in before), "every label shows before it is secured"

    def secure_all(dbs: Any, m: Any) -> None:
        for t in names:
            fieldsecurity.set_secured(dbs, m, t, m.entity(t).primary_name)

    with_model(app, org, secure_all)
    after = labels(org.bob)
    shown = sorted(k for k, v in after.items() if v is not None)
    assert not shown, f"secured names shown: {shown}"
    assert all(v == names[k[2]][1] for k, v in labels(org.alice).items())  # the administrator sees them

    def grant(dbs: Any, m: Any) -> None:
        profile = fieldsecurity.create_profile(dbs, m, "Names")
        for t in names:
            fieldsecurity.set_permission(
                dbs, m, profile, t, m.entity(t).primary_name, read=True, create=False, update=False
            )
        fieldsecurity.add_member(dbs, m, profile, org.bob, "systemuser")

    with_model(app, org, grant)
    assert labels(org.bob) == before


def test_a_secured_account_name_is_not_shown_on_its_contacts_online_or_in_sync_pages(app: Flask, org: Org) -> None:
    """The reported case end to end: a contact's company, its name secured."""
    bob = sign_in(app, "contoso", "bob")
    account = _new(bob, "accounts", {"name": "Secret Holdings"})
    contact = _new(
        bob, "contacts", {"lastname": "C", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"}
    )
    with_model(app, org, lambda dbs, m: fieldsecurity.set_secured(dbs, m, "account", "name"))
    online = bob.get(f"/api/data/contacts({contact['contactid']})")
    assert online.status_code == 200
    assert online.json["_parentcustomerid_value"] == account["accountid"]
    assert "Secret Holdings" not in json.dumps(online.json)
    assert "Secret Holdings" not in json.dumps(bob.get("/api/data/contacts").json)
    device = Device(app, org, org.bob)
    device.hello()
    page = device.send({"type": "download", "entity": "contact", "after": None, "limit": 50})[0]
    assert page["type"] == "page" and page["records"]
    assert "Secret Holdings" not in json.dumps(page)
