"""The change feed: what changed for a device after its cursor (no socket code here).

The feed reads the change log after a cursor and, for each changed record, sends it if the
device may hold it now, or a remove (`deleted` or `out_of_scope`) if not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm.errors import BadRequest
from webapp.crm.registry import OrgModel
from webapp.crm.tables import changelog
from webapp.security.operations import to_wire_many
from webapp.security.scope import Principal
from webapp.sync.profile import device_scope, downloadable

FEED_BATCH = 500


@dataclass
class Changes:
    """A batch of the change feed."""

    cursor: int
    upserts: list[dict[str, Any]] = field(default_factory=list)
    removes: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False

    def to_message(self) -> dict[str, Any]:
        """The `changes` frame."""
        return {
            "type": "changes",
            "cursor": self.cursor,
            "upserts": self.upserts,
            "removes": self.removes,
            "more": self.more,
        }


def changes_since(session: Session, model: OrgModel, p: Principal, cursor: int, limit: int = FEED_BATCH) -> Changes:
    """What changed for this device after `cursor`: records it may now hold, and removes."""
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise BadRequest("cursor must be a whole number of zero or more.")
    rows = session.execute(
        select(changelog.c.changenum, changelog.c.entity, changelog.c.recordid, changelog.c.operation)
        .where(changelog.c.organizationid == model.org_id, changelog.c.changenum > cursor)
        .order_by(changelog.c.changenum)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = Changes(cursor=rows[-1].changenum if rows else cursor, more=more)
    latest: dict[tuple[str, str], Any] = {}
    for r in rows:
        latest[(r.entity, r.recordid)] = r  # the last change of each record in this batch decides
    held_entities = {e.logical_name for e in downloadable(model)}
    by_entity: dict[str, list[str]] = {}
    for (entity_name, record_id), r in latest.items():
        if entity_name not in held_entities:
            continue
        if r.operation == "delete":
            out.removes.append({"entity": entity_name, "id": record_id, "reason": "deleted"})
        else:
            by_entity.setdefault(entity_name, []).append(record_id)
    for entity_name, ids in by_entity.items():
        entity = model.entity(entity_name)
        src = model.selectable(entity)
        pk = src.c[entity.primary_id]
        held = [
            dict(row)
            for row in session.execute(
                select(src).where(src.c.organizationid == model.org_id, pk.in_(ids), device_scope(model, p, entity))
            ).mappings()
        ]
        kept = {row[entity.primary_id] for row in held}
        existing = set(session.execute(select(pk).where(src.c.organizationid == model.org_id, pk.in_(ids))).scalars())
        for record_id in ids:
            if record_id not in kept:
                reason = "out_of_scope" if record_id in existing else "deleted"
                out.removes.append({"entity": entity_name, "id": record_id, "reason": reason})
        for record in to_wire_many(session, model, p, entity, held):
            out.upserts.append({"entity": entity_name, "record": record})
    return out
