"""The change feed: what changed for a device after its cursor (no socket code here).

The feed reads the change log after a cursor and, for each changed record, sends it if the
device may hold it now. A record that is no longer in the device's scope (deleted, or moved
out of it) is sent as a remove (`deleted` or `out_of_scope`) only when the device may have
held it — any other id is never sent: a device must not learn the ids of records it could
not see (issue 17). It may have held it when
- a state it may have been sent — the one it had at the cursor, or any since (a download
  page later than the cursor, or a live change, may have carried it) — was in the user's
  scope as the rules stand now (owner, unit, teams, hierarchy, shares; the profile's owner
  filters), or
- the user wrote it after the cursor (an ack gave the device that version), or
- it was shared with the user or one of their teams at some point (the share may be gone).
What this cannot see — a scope that changed under the device (a security change) — is settled
by reconciliation (webapp/sync/reconcile.py), which compares what the device actually holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm.errors import BadRequest
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.crm.tables import changelog
from webapp.security.operations import to_wire_many
from webapp.security.scope import Principal, condition
from webapp.security.sharing import SHARE_RIGHTS
from webapp.security.tables import recordshare
from webapp.sync.profile import Holding, device_scope, downloadable, may_have_held

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


def changes_since(
    session: Session,
    model: OrgModel,
    p: Principal,
    cursor: int,
    limit: int = FEED_BATCH,
    now: dt.datetime | None = None,
) -> Changes:
    """What changed for this device after `cursor`: records it may now hold, and removes."""
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise BadRequest("cursor must be a whole number of zero or more.")
    rows = session.execute(
        select(
            changelog.c.changenum,
            changelog.c.entity,
            changelog.c.recordid,
            changelog.c.operation,
            changelog.c.changedby,
        )
        .where(changelog.c.organizationid == model.org_id, changelog.c.changenum > cursor)
        .order_by(changelog.c.changenum)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = Changes(cursor=rows[-1].changenum if rows else cursor, more=more)
    held_entities = {e.logical_name for e in downloadable(model)}
    by_entity: dict[str, dict[str, None]] = {}
    written: set[str] = set()  # records this batch shows the user wrote
    for r in rows:
        if r.entity in held_entities:
            by_entity.setdefault(r.entity, {})[r.recordid] = None
            if r.changedby == p.user_id:
                written.add(r.recordid)
    for entity_name, id_set in by_entity.items():
        ids = list(id_set)
        entity = model.entity(entity_name)
        src = model.selectable(entity)
        pk = src.c[entity.primary_id]
        held = [
            dict(row)
            for row in session.execute(
                select(src).where(
                    src.c.organizationid == model.org_id, pk.in_(ids), device_scope(model, p, entity, now)
                )
            ).mappings()
        ]
        kept = {row[entity.primary_id] for row in held}
        left = [rid for rid in ids if rid not in kept]
        if left:
            proven = written | held_before(session, model, p, entity, left, cursor, out.cursor)
            proven |= shared_before(session, model, p, entity, left, out.cursor)
            existing = set(
                session.execute(select(pk).where(src.c.organizationid == model.org_id, pk.in_(left))).scalars()
            )
            for record_id in left:
                if record_id in proven:
                    reason = "out_of_scope" if record_id in existing else "deleted"
                    out.removes.append({"entity": entity_name, "id": record_id, "reason": reason})
        for record in to_wire_many(session, model, p, entity, held):
            out.upserts.append({"entity": entity_name, "record": record})
    return out


def held_before(
    session: Session, model: OrgModel, p: Principal, entity: Entity, ids: list[str], cursor: int, upto: int
) -> set[str]:
    """The ids the device may have held: some state of the record from the device's `cursor` up
    to `upto` (a download page or a live change may have carried any of them) was in the user's
    scope as it stands now (owner, business unit, teams, hierarchy, shares; the profile's owner
    filters). The change log keeps, with each write, the owner and unit the record had before
    it (a create: the new ones), so the rows after the cursor list every such state."""
    states = (
        select(
            changelog.c.recordid.label(entity.primary_id),
            changelog.c.organizationid,
            changelog.c.ownerid,
            changelog.c.ownerid__type,
            changelog.c.owningbusinessunit,
            changelog.c.changedon.label("modifiedon"),
        )
        .where(
            changelog.c.organizationid == model.org_id,
            changelog.c.entity == entity.logical_name,
            changelog.c.recordid.in_(ids),
            changelog.c.changenum > cursor,
            changelog.c.changenum <= upto,
        )
        .subquery()
    )
    found = session.execute(
        select(states.c[entity.primary_id])
        .where(condition(p, model, entity, states, "read"), may_have_held(model, p, entity, states))
        .distinct()
    )
    return set(found.scalars())


def shared_before(
    session: Session, model: OrgModel, p: Principal, entity: Entity, ids: list[str], upto: int
) -> set[str]:
    """The ids shared at some point up to `upto` with the user or one of their teams (the change
    log keeps each share's principal; the share itself may since have been withdrawn)."""
    mine = {p.user_id, *p.team_ids}
    rows = session.execute(
        select(changelog.c.recordid, changelog.c.changedfields).where(
            changelog.c.organizationid == model.org_id,
            changelog.c.entity == entity.logical_name,
            changelog.c.recordid.in_(ids),
            changelog.c.operation == "share",
            changelog.c.changenum <= upto,
        )
    )
    return {r.recordid for r in rows if mine & set(r.changedfields or ())}


# --- The same feed, read once for every device (live fan-out, webapp/sync/fanout.py) ---------


@dataclass
class Read:
    """One read of the change log for all of a process's devices: the rows after `start` up to
    `upto` (by record, in first-change order), each changed record as it is now (None: deleted),
    its shares now (principal → rights), and whom it was ever shared with up to `upto`."""

    start: int
    upto: int
    more: bool
    rows: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    current: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    shares: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    shared_with: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def read_once(session: Session, model: OrgModel, start: int, limit: int = FEED_BATCH) -> Read:
    """The change log after `start` with what every device's decision needs, in a few queries
    whatever the number of devices (one for the log, then per changed entity: its records, their
    shares, their share history)."""
    rows = session.execute(
        select(changelog)
        .where(changelog.c.organizationid == model.org_id, changelog.c.changenum > start)
        .order_by(changelog.c.changenum)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = Read(start, rows[-1].changenum if rows else start, more)
    held_entities = {e.logical_name for e in downloadable(model)}
    for r in rows:
        if r.entity in held_entities:
            out.rows.setdefault((r.entity, r.recordid), []).append(r)
    by_entity: dict[str, list[str]] = {}
    for entity_name, record_id in out.rows:
        by_entity.setdefault(entity_name, []).append(record_id)
        out.current[(entity_name, record_id)] = None
        out.shares[(entity_name, record_id)] = {}
        out.shared_with[(entity_name, record_id)] = set()
    for entity_name, ids in by_entity.items():
        entity = model.entity(entity_name)
        src = model.selectable(entity)
        pk = src.c[entity.primary_id]
        for row in session.execute(select(src).where(src.c.organizationid == model.org_id, pk.in_(ids))).mappings():
            out.current[(entity_name, row[entity.primary_id])] = dict(row)
        for share in session.execute(
            select(recordshare).where(
                recordshare.c.organizationid == model.org_id,
                recordshare.c.entity == entity_name,
                recordshare.c.recordid.in_(ids),
            )
        ).mappings():
            rights = out.shares[(entity_name, share["recordid"])].setdefault(share["principalid"], set())
            rights.update(right for right in SHARE_RIGHTS if share[right])
        for r in session.execute(
            select(changelog.c.recordid, changelog.c.changedfields).where(
                changelog.c.organizationid == model.org_id,
                changelog.c.entity == entity_name,
                changelog.c.recordid.in_(ids),
                changelog.c.operation == "share",
                changelog.c.changenum <= out.upto,
            )
        ):
            out.shared_with[(entity_name, r.recordid)].update(r.changedfields or ())
    return out


def decide(
    read: Read, p: Principal, holdings: dict[str, Holding], after: int, now: dt.datetime, keys: Any = None
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]] | None:
    """What `changes_since(…, after)` would send this device over `read` (its rows after
    `after`), decided in Python from the same declarations (`Holding`, `Reach`): the upserts as
    (entity, current row) and the removes. None when only SQL can tell (a `related` filter).
    `keys`: the records to consider (default all); the others are known not to concern it."""
    upserts: list[tuple[str, dict[str, Any]]] = []
    removes: list[dict[str, Any]] = []
    mine = {p.user_id, *p.team_ids}
    for key in read.rows if keys is None else [k for k in read.rows if k in keys]:
        rows = [r for r in read.rows[key] if r.changenum > after]
        if not rows:
            continue
        entity_name, record_id = key
        held = holdings[entity_name]
        row, shares = read.current[key], read.shares[key]
        if row is not None:
            admitted = held.admits(row, shares, now)
            if admitted is None:
                return None
            if admitted:
                upserts.append((entity_name, row))
                continue
        if _proven(held, p, rows, shares, now) or mine & read.shared_with[key]:
            reason = "deleted" if row is None else "out_of_scope"
            removes.append({"entity": entity_name, "id": record_id, "reason": reason})
    return upserts, removes


def _proven(held: Holding, p: Principal, rows: list[Any], shares: dict[str, set[str]], now: dt.datetime) -> bool:
    """`held_before` and the user's own writes, over one record's rows (see the module's doc)."""
    for r in rows:
        if r.changedby == p.user_id:
            return True
        state = {"ownerid": r.ownerid, "owningbusinessunit": r.owningbusinessunit, "modifiedon": r.changedon}
        owner_filter = held.filter is not None and (held.filter.owners is not None or held.filter.unit is not None)
        if owner_filter and held.filter is not None and not held.filter.admits(state, now):
            continue
        if held.read.admits(r.ownerid, r.owningbusinessunit, shares):
            return True
    return False
