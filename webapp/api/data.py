"""The Web API: `/api/data/<entityset>` and `/api/data/<entityset>(<id>)` (PROTOCOL.md §3).

Every call goes through `webapp.security.operations`, so the security model applies here
exactly as it does to the sync replay.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, request

from webapp.api.context import caller, charge_reads, check_read_rate, commit, db_session, json_body
from webapp.crm.errors import BadRequest, NotFound
from webapp.crm.metadata import Entity
from webapp.crm.query import encode_skiptoken, parse_options
from webapp.security import operations as ops
from webapp.security.caller import Caller

bp = Blueprint("data", __name__, url_prefix="/data")
TARGET_RE = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<id>[^)]*)\))?$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PREFER_RE = re.compile(r"odata\.maxpagesize=(\d+)")
ACTIONS = {"assign": ops.assign, "share": ops.share, "unshare": ops.unshare}


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


def record_target(c: Caller, target: str, verb: str) -> tuple[Entity, str]:
    """Like `resolve`, for calls that need a record id."""
    entity, record_id = resolve(c, target)
    if record_id is None:
        raise BadRequest(f"{verb} a record, e.g. /api/data/{entity.entity_set}(<id>).")
    return entity, record_id


def page_size() -> tuple[int, bool]:
    """The page size: the server's maximum, lowered by `Prefer: odata.maxpagesize=N`."""
    limit = int(current_app.config["MAX_PAGE_SIZE"])
    m = PREFER_RE.search(request.headers.get("Prefer", ""))
    if m and 0 < int(m[1]) < limit:
        return int(m[1]), True
    return limit, bool(m)


@bp.get("/<target>")
def read(target: str) -> Any:
    """A collection page (with @odata.nextLink) or one record."""
    c = caller()
    entity, record_id = resolve(c, target)
    dbs = db_session()
    opts = parse_options(request.args, entity, c.model, single=record_id is not None)
    if record_id is not None:
        return jsonify(ops.get(dbs, c.model, c.principal, entity, record_id, opts))
    size, preferred = page_size()
    check_read_rate(c)
    records, more = ops.query(dbs, c.model, c.principal, entity, opts, size)
    charge_reads(c, len(records))
    body: dict[str, Any] = {
        "@odata.context": f"{request.host_url}api/data/$metadata#{entity.entity_set}",
        "value": records,
    }
    if more:
        args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
        args["$skiptoken"] = encode_skiptoken(opts.skip + len(records))
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
    row = ops.create(dbs, c.model, c.principal, c.actor, entity, body)
    record = ops.to_wire(dbs, c.model, c.principal, entity, row)
    commit()
    resp = jsonify(record)
    resp.status_code = 201
    resp.headers["OData-EntityId"] = f"{request.host_url}api/data/{entity.entity_set}({row[entity.primary_id]})"
    return resp


@bp.patch("/<target>")
def update(target: str) -> Any:
    """Update a record (never an upsert): 200 with the record, 404 if missing or unreadable."""
    c = caller()
    entity, record_id = record_target(c, target, "PATCH")
    body = json_body()
    dbs = db_session()
    row = ops.update(dbs, c.model, c.principal, c.actor, entity, record_id, body)
    record = ops.to_wire(dbs, c.model, c.principal, entity, row)
    commit()
    return jsonify(record)


@bp.delete("/<target>")
def delete(target: str) -> Any:
    """Delete a record: 204."""
    c = caller()
    entity, record_id = record_target(c, target, "DELETE")
    dbs = db_session()
    ops.remove(dbs, c.model, c.principal, c.actor, entity, record_id)
    commit()
    return "", 204


@bp.post("/<target>/<action>")
def record_action(target: str, action: str) -> Any:
    """`assign` (200 with the record), `share` and `unshare` (204) — PROTOCOL.md §3."""
    if action not in ACTIONS:
        raise NotFound(f"There is no action '{action}'; use assign, share or unshare.")
    c = caller()
    entity, record_id = record_target(c, target, action.capitalize())
    body = json_body()
    dbs = db_session()
    result = ACTIONS[action](dbs, c.model, c.principal, c.actor, entity, record_id, body)
    if action == "assign":
        # The new owner may be out of the caller's reach now: answer with what they may still see.
        record = ops.to_wire(dbs, c.model, c.principal, entity, result) if result else None
        commit()
        return jsonify(record)
    commit()
    return "", 204
