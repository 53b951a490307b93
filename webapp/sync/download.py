"""The first download, page by page (no socket code here; the change feed after it is
`webapp/sync/feed.py`).

A download page is keyed by primary id (`after` = the last id received), so a connection lost
halfway resumes where it stopped without fetching finished pages again. Each page carries
the change number it is consistent with; the device starts its feed from the smallest
cursor of its download, so nothing written meanwhile is missed (duplicates are harmless:
the device keeps the higher version).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.crm.changes import current_change
from webapp.crm.errors import BadRequest
from webapp.crm.registry import OrgModel
from webapp.security.operations import to_wire_many
from webapp.security.scope import Principal
from webapp.sync.profile import device_scope, is_offline

MAX_PAGE = 5000


def download_page(
    session: Session, model: OrgModel, p: Principal, entity_name: Any, after: Any, limit: Any
) -> dict[str, Any]:
    """One page of an entity's first download: `{entity, records, next, total, cursor}`."""
    if not isinstance(entity_name, str) or entity_name not in model.entities:
        raise BadRequest(f"There is no entity '{entity_name}'.")
    entity = model.entity(entity_name)
    if entity.union_of or not is_offline(model, entity):
        raise BadRequest(f"{entity_name} is not available offline.")
    if after is not None and not isinstance(after, str):
        raise BadRequest("after must be a record id or null.")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.")
    cursor = current_change(session)
    src = model.selectable(entity)
    scope = device_scope(model, p, entity)
    base = select(src).where(src.c.organizationid == model.org_id, scope)
    stmt = base.order_by(src.c[entity.primary_id])
    if after:
        stmt = stmt.where(src.c[entity.primary_id] > after)
    rows = [dict(r) for r in session.execute(stmt.limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    total = None
    if after is None:
        total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    records = to_wire_many(session, model, p, entity, rows)
    return {
        "entity": entity_name,
        "records": records,
        "next": rows[-1][entity.primary_id] if more else None,
        "total": total,
        "cursor": cursor,
    }
