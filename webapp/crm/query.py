"""Running OData queries: options parsed, translated to SQL, paged, expanded.

Filtering, ordering and the caller's extra condition (a security scope) all run in SQL;
paging uses a skip token over a total ordering, so pages never overlap or miss rows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm import odata
from webapp.crm.errors import BadRequest
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.crm.serialize import serialize

SUPPORTED = {"$select", "$filter", "$orderby", "$top", "$expand", "$skiptoken"}


@dataclass
class QueryOptions:
    """A parsed query: what to select, filter, order, cap and expand, and where to resume."""

    select: list[str] | None = None
    filter: Any = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    expand: list[Any] = field(default_factory=list)
    skip: int = 0
    user_id: str | None = None  # the signed-in user, for EqualUserId / NotEqualUserId


MAX_SKIP = 2**31 - 1  # far beyond any page this server hands out; a larger offset overflows SQL


def encode_skiptoken(offset: int) -> str:
    """An opaque token for the next page."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    """The offset a skip token stands for."""
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest("$skiptoken is not a token this server issued.") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_SKIP:
        raise BadRequest("$skiptoken is not a token this server issued.")
    return offset


def parse_options(args: Mapping[str, str], entity: Entity, model: OrgModel, single: bool = False) -> QueryOptions:
    """Parse the query string of a Web API call; unknown or unsupported options are refused."""
    for key in args:
        if key.startswith("$") and key not in SUPPORTED:
            raise BadRequest(
                f"The query option {key} is not supported (use $select, $filter, $orderby, $top, $expand)."
            )
        if single and key in ("$filter", "$orderby", "$top", "$skiptoken"):
            raise BadRequest(f"{key} applies to collections, not to a single record.")
    try:
        opts = QueryOptions()
        if "$select" in args:
            opts.select = odata.parse_select(args["$select"], entity)
        if args.get("$filter", "").strip():
            opts.filter = odata.parse_filter(args["$filter"])
        if args.get("$orderby", "").strip():
            opts.orderby = odata.parse_orderby(args["$orderby"], entity)
        if "$top" in args:
            opts.top = odata.parse_top(args["$top"])
        if args.get("$expand", "").strip():
            opts.expand = odata.parse_expand(args["$expand"], entity, model.entities)
    except odata.ODataError as exc:
        raise BadRequest(str(exc)) from exc
    if "$skiptoken" in args:
        opts.skip = decode_skiptoken(args["$skiptoken"])
    return opts


def run_query(
    session: Session,
    model: OrgModel,
    entity: Entity,
    opts: QueryOptions,
    page_size: int,
    condition: Any = None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of rows (column dicts) and whether more rows follow."""
    src = model.selectable(entity)
    stmt = select(src).where(src.c.organizationid == model.org_id)
    if condition is not None:
        stmt = stmt.where(condition)
    try:
        if opts.filter is not None:
            stmt = stmt.where(odata.filter_condition(opts.filter, entity, src, opts.user_id))
        stmt = stmt.order_by(*odata.order_clauses(opts.orderby, entity, src))
    except odata.ODataError as exc:
        raise BadRequest(str(exc)) from exc
    limit = page_size
    if opts.top is not None:
        limit = max(0, min(page_size, opts.top - opts.skip))
    rows = [dict(r) for r in session.execute(stmt.offset(opts.skip).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    if opts.top is not None and opts.skip + len(rows) >= opts.top:
        more = False
    return rows, more


def to_records(
    session: Session,
    model: OrgModel,
    entity: Entity,
    rows: list[dict[str, Any]],
    opts: QueryOptions,
    hidden: Mapping[str, set[str]] | None = None,
    expand_condition: Any = None,
    hidden_names: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Serialise rows (with `$select`) and attach `$expand`ed lookups (`hidden`, `hidden_names`:
    see `serialize`)."""
    hidden = hidden or {}
    records = serialize(session, model, entity, rows, opts.select, hidden.get(entity.logical_name, ()), hidden_names)
    for exp in opts.expand:
        target = model.entity(exp.target)
        attr = entity.attribute(exp.attribute)
        assert attr is not None
        ids_by_row = []
        wanted: dict[str, None] = {}
        for row in rows:
            rid = row.get(exp.attribute)
            if rid and (not attr.is_polymorphic or row.get(f"{exp.attribute}__type") == target.logical_name):
                ids_by_row.append(rid)
                wanted[rid] = None
            else:
                ids_by_row.append(None)
        found: dict[str, dict[str, Any]] = {}
        if wanted:
            src = model.selectable(target)
            stmt = select(src).where(src.c.organizationid == model.org_id, src.c[target.primary_id].in_(list(wanted)))
            if expand_condition is not None:
                stmt = stmt.where(expand_condition(target, src))
            target_rows = [dict(r) for r in session.execute(stmt).mappings()]
            serialized = serialize(
                session, model, target, target_rows, exp.select, hidden.get(target.logical_name, ()), hidden_names
            )
            found = {r[target.primary_id]: r for r in serialized}
        for rec, rid in zip(records, ids_by_row, strict=True):
            rec[exp.nav] = found.get(rid) if rid else None
    return records
