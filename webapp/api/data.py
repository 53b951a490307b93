"""The Web API: `/api/data/<entityset>` and `/api/data/<entityset>(<id>)` (PROTOCOL.md §3)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, request

from webapp.api.context import Caller, caller, db_session, json_body
from webapp.crm import records
from webapp.crm.errors import BadRequest, NotFound
from webapp.crm.metadata import Entity
from webapp.crm.query import encode_skiptoken, parse_options, run_query, to_records
from webapp.crm.serialize import serialize

bp = Blueprint("data", __name__, url_prefix="/data")
TARGET_RE = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<id>[^)]*)\))?$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PREFER_RE = re.compile(r"odata\.maxpagesize=(\d+)")


def resolve(c: Caller, target: str) -> tuple[Entity, str | None]:
    """The entity and (optional) record id named by `<set>` or `<set>(<id>)`."""
    m = TARGET_RE.match(target)
    if not m:
        raise NotFound(f"'{target}' is not an entity set or record address.")
    entity = c.model.entity_for_set(m["set"])
    record_id = m["id"]
    if record_id is not None:
        if not UUID_RE.match(record_id):
            raise BadRequest(f"'{record_id}' is not a record id (a UUID).")
        record_id = record_id.lower()
    return entity, record_id


def page_size() -> tuple[int, bool]:
    """The page size: the server's maximum, lowered by `Prefer: odata.maxpagesize=N`."""
    limit = int(current_app.config["MAX_PAGE_SIZE"])
    m = PREFER_RE.search(request.headers.get("Prefer", ""))
    if m and 0 < int(m[1]) < limit:
        return int(m[1]), True
    return limit, bool(m)


def one_record(c: Caller, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as its wire record."""
    return serialize(db_session(), c.model, entity, [row])[0]


@bp.get("/<target>")
def read(target: str) -> Any:
    """A collection page (with @odata.nextLink) or one record."""
    c = caller()
    entity, record_id = resolve(c, target)
    dbs = db_session()
    opts = parse_options(request.args, entity, c.model, single=record_id is not None)
    if record_id is not None:
        row = records.fetch(dbs, c.model, entity, record_id)
        if row is None:
            raise NotFound(f"There is no {entity.logical_name} with id {record_id}.")
        return jsonify(to_records(dbs, c.model, entity, [row], opts)[0])
    size, preferred = page_size()
    rows, more = run_query(dbs, c.model, entity, opts, size)
    body: dict[str, Any] = {
        "@odata.context": f"{request.host_url}api/data/$metadata#{entity.entity_set}",
        "value": to_records(dbs, c.model, entity, rows, opts),
    }
    if more:
        args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
        args["$skiptoken"] = encode_skiptoken(opts.skip + len(rows))
        body["@odata.nextLink"] = f"{request.base_url}?{urlencode(args)}"
    resp = jsonify(body)
    if preferred:
        resp.headers["Preference-Applied"] = f"odata.maxpagesize={size}"
    return resp


@bp.post("/<target>")
def create(target: str) -> Any:
    """Create a record: 201 with the record and its OData-EntityId."""
    c = caller()
    entity, record_id = resolve(c, target)
    if record_id is not None:
        raise BadRequest("Create by POSTing to the entity set, e.g. /api/data/accounts.")
    body = json_body()
    dbs = db_session()
    row = records.create(dbs, c.model, c.actor, entity, body)
    record = one_record(c, entity, row)
    dbs.commit()
    resp = jsonify(record)
    resp.status_code = 201
    resp.headers["OData-EntityId"] = f"{request.host_url}api/data/{entity.entity_set}({row[entity.primary_id]})"
    return resp


@bp.patch("/<target>")
def update(target: str) -> Any:
    """Update a record (never an upsert): 200 with the record, 404 if missing."""
    c = caller()
    entity, record_id = resolve(c, target)
    if record_id is None:
        raise BadRequest("PATCH a record, e.g. /api/data/accounts(<id>).")
    body = json_body()
    dbs = db_session()
    row = records.patch(dbs, c.model, c.actor, entity, record_id, body)
    record = one_record(c, entity, row)
    dbs.commit()
    return jsonify(record)


@bp.delete("/<target>")
def delete(target: str) -> Any:
    """Delete a record: 204."""
    c = caller()
    entity, record_id = resolve(c, target)
    if record_id is None:
        raise BadRequest("DELETE a record, e.g. /api/data/accounts(<id>).")
    dbs = db_session()
    records.remove(dbs, c.model, c.actor, entity, record_id)
    dbs.commit()
    return "", 204
