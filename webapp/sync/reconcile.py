"""Scope reconciliation: a device ends up holding exactly what a fresh download would give it.

The change feed (webapp/sync/feed.py) carries record writes. Whatever else changes what a
device may hold — a security change (the epoch, webapp/crm/epoch.py), time passing a
`modified` window, a record another one is `related` to — is settled here, at the end of a
pull or a live wake, once the device has caught up with the feed (docs/protocol.md §5):

1. `plan` decides, cheaply, whether anything is due. It reads the device's stamp (what was last
   verified, table `devicescope`) and the user's epoch: primary-key reads. An entity is due
   when the device was never verified, or its last full check is `HEAL_AFTER` old (every
   entity: drift from any cause heals); when the epoch moved and the entity's *fingerprint*
   changed (its scope rule compiled to SQL with its values, and the fields withheld from the
   user); when it is held under `related` and a record it depends on changed. A `modified`
   window that moved makes due the buckets of the records it passed over.
2. When something is due the server sends a `scope` frame: per due entity, the summary of the
   ids in scope (`webapp.sync.checksum`: count and digest per bucket). The device compares
   each bucket with the ids it holds from the server, drops at once what it holds in buckets
   the server says are empty, and answers with `reconcile` frames: its ids in every other
   bucket that differs (all buckets when the entity is marked `refresh`: the fields the user
   may read changed, so every record is sent again).
3. `reconcile` answers each with `changes`: removes for the ids it sent that are out of scope
   (the device named them: no other id is ever revealed) and upserts for the records in scope
   it lacks (or all of them, on `refresh`). After the last frame (`done`), `finish` stores the
   new stamp and answers `reconciled`. A connection lost midway leaves the stamp as it was, so
   the next pull checks again.

How to call it: `Channel` (webapp/sync/channel.py) calls `plan` at the end of `pull` and of
`wake` for a device that declared it reconciles (pull `scope: 1`), and sends the check's
frame; `Channel.receive` routes `reconcile` frames to `reconcile` and `finish`. A wake path
that calls `Channel.wake()` needs nothing more; one that delivers changes its own way calls
`Channel.check_scope()` when the hub says this user's scope changed (a "scope" message) and
sends what it returns. When nothing is due a plan costs the reads below.

Cost at 200,000 held records of one entity: a pull with nothing due is three primary-key reads
(stamp, two epoch rows), plus per `modified` entity one range read of the (organisation,
modifiedon) index over the time since the window was last verified, and per `related` entity
one probe of the change log. A check reads the ids in scope of each due entity once (the
primary key under the scope condition), sorts and hashes them, and sends 256 bucket summaries
(~8 KB); the device sends its ids only for buckets that differ (~800 ids each).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from webapp import metrics
from webapp.crm import epoch
from webapp.crm.errors import BadRequest
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.crm.tables import changelog
from webapp.security.operations import ACCESS_LETTERS, read_condition, to_wire_many
from webapp.security.scope import Principal, reach
from webapp.sync import checksum
from webapp.sync.profile import device_scope, related_sources, window_days
from webapp.sync.tables import devicescope

HEAL_AFTER = dt.timedelta(hours=24)  # every entity is checked at least this often
TARGETED_DEPTH = 2  # bucket depth when only some buckets are due (a window passed records over)
MAX_PER_FRAME = 5_000  # a reconcile frame: at most this many ids sent, and this many in scope
BATCH = 500  # records per `changes` frame
FINGERPRINT_NOW = dt.datetime(2000, 1, 1)  # a fixed "now": a window's moving start is no rule change


def checkable(model: OrgModel) -> list[Entity]:
    """Every entity a device could hold (offline now or not: one switched off must be emptied)."""
    return [e for e in model.entities.values() if not e.union_of and "read" in e.offline_commands]


def fingerprint(session: Session, model: OrgModel, p: Principal, entity: Entity) -> str:
    """`<scope>/<fields>`: digests of the entity's scope rule for this user (SQL with its values)
    and of what the records held say about them: the fields withheld, and what the user may do
    with each record (`@Outpost.Access`, issue 15) — a change there re-sends the records."""
    cond = device_scope(model, p, entity, FINGERPRINT_NOW)
    sql = str(cond.compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}))
    hidden = ",".join(sorted(p.hidden_fields(entity)))
    for privilege in ACCESS_LETTERS:
        r = reach(p, entity, privilege)
        hidden += f"|{privilege}:{int(r.everything)}:{sorted(r.owners)}:{sorted(r.units)}:{sorted(r.sharees)}"
    return f"{hashlib.sha256(sql.encode()).hexdigest()[:16]}/{hashlib.sha256(hidden.encode()).hexdigest()[:8]}"


@dataclass
class Stamp:
    """What the server last verified a device holds."""

    epoch: int
    cursor: int
    checkedon: dt.datetime
    fingerprints: dict[str, str]
    windows: dict[str, str]  # entity -> ISO start of the `modified` window verified


_STAMP = select(devicescope).where(devicescope.c.deviceid == bindparam("device"))  # built once: read every pull


def load_stamp(session: Session, device_id: str) -> Stamp | None:
    """The device's stamp, or None before its first verification."""
    row = session.execute(_STAMP, {"device": device_id}).mappings().first()
    if row is None:
        return None
    state = row["state"] or {}
    return Stamp(row["epoch"], row["cursor"], row["checkedon"], state.get("fp", {}), state.get("windows", {}))


def save_stamp(session: Session, org_id: str, device_id: str, stamp: Stamp) -> None:
    """Store the device's stamp (in the caller's transaction)."""
    values = {
        "epoch": stamp.epoch,
        "cursor": stamp.cursor,
        "checkedon": stamp.checkedon,
        "state": {"fp": stamp.fingerprints, "windows": stamp.windows},
    }
    done = cast(
        CursorResult[Any],
        session.execute(update(devicescope).where(devicescope.c.deviceid == device_id).values(**values)),
    )
    if done.rowcount == 0:
        session.execute(insert(devicescope).values(deviceid=device_id, organizationid=org_id, **values))


@dataclass
class EntityCheck:
    """One entity of a check: bucket depth, whether every bucket is checked, whether every record
    is sent again, and the server's summary."""

    depth: int
    complete: bool
    refresh: bool
    buckets: checksum.Summary

    def to_wire(self) -> dict[str, Any]:
        """The entity's part of the `scope` frame."""
        return {"depth": self.depth, "complete": self.complete, "refresh": self.refresh, "buckets": self.buckets}


@dataclass
class Check:
    """A `scope` frame sent, awaiting the device's `reconcile` frames."""

    check_id: str
    cursor: int
    stamp: Stamp  # stored by `finish` once the device is done
    entities: dict[str, EntityCheck]
    removed: int = 0
    added: int = 0

    def to_message(self) -> dict[str, Any]:
        """The `scope` frame."""
        return {
            "type": "scope",
            "check": self.check_id,
            "cursor": self.cursor,
            "entities": {name: c.to_wire() for name, c in self.entities.items()},
        }


@dataclass
class Plan:
    """What `plan` found: a check to start, or a stamp to store (or neither)."""

    check: Check | None = None
    save: Stamp | None = None


def ids_in_scope(
    session: Session,
    model: OrgModel,
    p: Principal,
    entity: Entity,
    now: dt.datetime,
    prefixes: Iterable[str] | None = None,
) -> list[str]:
    """The ids a fresh download would give the device now (only those in `prefixes`' buckets)."""
    src = model.selectable(entity)
    pk = src.c[entity.primary_id]
    stmt = select(pk).where(src.c.organizationid == model.org_id, device_scope(model, p, entity, now))
    wanted = sorted(set(prefixes)) if prefixes is not None else []
    if wanted and wanted[0]:  # depth 0: the one bucket is everything
        stmt = stmt.where(func.substr(pk, 1, len(wanted[0])).in_(wanted))
    return list(session.execute(stmt).scalars())


def _aged_out(
    session: Session, model: OrgModel, p: Principal, entity: Entity, start: dt.datetime, new_start: dt.datetime
) -> list[str]:
    """Records a `modified` window passed over: modified in [start, new_start), readable by the user."""
    src = model.selectable(entity)
    stmt = select(src.c[entity.primary_id]).where(
        src.c.organizationid == model.org_id,
        src.c.modifiedon >= start,
        src.c.modifiedon < new_start,
        read_condition(p, model, entity),
    )
    return list(session.execute(stmt).scalars())


def _changed_since(session: Session, model: OrgModel, entities: set[str], after: int, upto: int) -> bool:
    if not entities or upto <= after:
        return False
    found = session.execute(
        select(changelog.c.changenum)
        .where(
            changelog.c.organizationid == model.org_id,
            changelog.c.changenum > after,
            changelog.c.changenum <= upto,
            changelog.c.entity.in_(sorted(entities)),
        )
        .limit(1)
    ).first()
    return found is not None


def plan(session: Session, model: OrgModel, p: Principal, device_id: str, cursor: int, now: dt.datetime) -> Plan:
    """After the feed caught the device up to `cursor`: the check that is due, if any (see above).

    With nothing due, `Plan.save` may carry a stamp to store (the epoch moved and no rule
    changed; the cursor, when a `related` entity watches the change log): `save_stamp` it.
    """
    stamp = load_stamp(session, device_id)
    current_epoch = epoch.current(session, model.org_id, p.user_id)
    entities = checkable(model)
    full = stamp is None or now - stamp.checkedon >= HEAL_AFTER
    fingerprints = stamp.fingerprints if stamp is not None else {}
    due: dict[str, set[str] | None] = {}  # entity -> the buckets due (None: every bucket)
    refresh: set[str] = set()
    if stamp is None or full or stamp.epoch != current_epoch:
        fingerprints = {e.logical_name: fingerprint(session, model, p, e) for e in entities}
        for e in entities:
            now_fp, was_fp = fingerprints[e.logical_name], (stamp.fingerprints if stamp else {}).get(e.logical_name)
            if full or now_fp != was_fp:
                due[e.logical_name] = None
            if was_fp is not None and now_fp.split("/")[1] != was_fp.split("/")[1]:
                refresh.add(e.logical_name)
    aged: dict[str, set[str]] = {}
    windows: dict[str, str] = {}
    for e in entities:
        days = window_days(model, e)
        if days is None:
            continue
        start = now - dt.timedelta(days=days)
        windows[e.logical_name] = start.isoformat()
        before = stamp.windows.get(e.logical_name) if stamp is not None else None
        if e.logical_name not in due and before is not None:
            gone = _aged_out(session, model, p, e, dt.datetime.fromisoformat(before), start)
            if gone:
                aged[e.logical_name] = set(gone)
    watches = False
    for e in entities:
        sources = related_sources(model, e)
        watches = watches or bool(sources)
        if e.logical_name in due or not sources:
            continue
        if sources & set(aged) or (stamp is not None and _changed_since(session, model, sources, stamp.cursor, cursor)):
            due[e.logical_name] = None
    for name, ids in aged.items():
        if name not in due:
            due[name] = {rid[:TARGETED_DEPTH] for rid in ids}
    if not due:
        # Nothing to check. Windows stay where they were verified (a range with nothing in it
        # costs nothing to read again); the cursor matters only to `related` entities.
        assert stamp is not None  # without a stamp everything is due
        keep = Stamp(current_epoch, cursor if watches else stamp.cursor, stamp.checkedon, fingerprints, stamp.windows)
        return Plan(save=keep if keep != stamp else None)
    checks: dict[str, EntityCheck] = {}
    for name, prefixes in due.items():
        entity = model.entity(name)
        if prefixes is None:
            scoped = ids_in_scope(session, model, p, entity, now)
            depth = checksum.depth_for(len(scoped))
            checks[name] = EntityCheck(depth, True, name in refresh, checksum.summarise(scoped, depth))
        else:
            summary = checksum.summarise(ids_in_scope(session, model, p, entity, now, prefixes), TARGETED_DEPTH)
            # A bucket with no id in scope is sent as [0, ""]: the device drops what it holds there.
            buckets = {pre: summary.get(pre, [0, ""]) for pre in sorted(prefixes)}
            checks[name] = EntityCheck(TARGETED_DEPTH, False, False, buckets)
    new_stamp = Stamp(current_epoch, cursor, now if full else stamp.checkedon if stamp else now, fingerprints, windows)
    return Plan(check=Check(uuid.uuid4().hex, cursor, new_stamp, checks))


def _parse_held(check: Check, held: Any) -> dict[str, dict[str, list[str]]]:
    """The `held` of a `reconcile` frame, checked against the check it answers."""
    if not isinstance(held, dict):
        raise BadRequest("held must be an object: {entity: {bucket: [id, …]}}.")
    sent = in_scope = buckets = 0
    out: dict[str, dict[str, list[str]]] = {}
    for name, groups in held.items():
        entity_check = check.entities.get(name) if isinstance(name, str) else None
        if entity_check is None or not isinstance(groups, dict):
            raise BadRequest(f"held names an entity this check is not about: {str(name)[:40]}.")
        for prefix, ids in groups.items():
            if not isinstance(prefix, str) or len(prefix) != entity_check.depth or not isinstance(ids, list):
                raise BadRequest(f"held.{name}: a bucket is named by the first {entity_check.depth} characters of ids.")
            if not entity_check.complete and prefix not in entity_check.buckets:
                raise BadRequest(f"held.{name}: bucket '{prefix}' is not part of this check.")
            if not all(isinstance(i, str) and i.startswith(prefix) and len(i) <= 64 for i in ids):
                raise BadRequest(f"held.{name}.{prefix}: ids are strings that start with their bucket.")
            out.setdefault(name, {})[prefix] = list(dict.fromkeys(ids))
            buckets += 1
            sent += len(ids)
            in_scope += int(entity_check.buckets.get(prefix, [0])[0])
    if buckets > 1 and (sent > MAX_PER_FRAME or in_scope > MAX_PER_FRAME):
        raise BadRequest(f"A reconcile frame carries at most {MAX_PER_FRAME} ids, and buckets holding at most "
                         f"{MAX_PER_FRAME} ids on the server (or a single bucket): split it.")  # fmt: skip
    return out


def reconcile(
    session: Session, model: OrgModel, p: Principal, check: Check, held: Any, now: dt.datetime, cursor: int
) -> list[dict[str, Any]]:
    """Answer a `reconcile` frame: removes for the device's ids out of scope, upserts for what it
    lacks (everything, on `refresh`), as `changes` frames carrying the device's `cursor`."""
    parsed = _parse_held(check, held)
    removes: list[dict[str, Any]] = []
    upserts: list[dict[str, Any]] = []
    for name, groups in parsed.items():
        entity = model.entity(name)
        theirs = {rid for ids in groups.values() for rid in ids}
        ours = set(ids_in_scope(session, model, p, entity, now, groups))
        gone = sorted(theirs - ours)
        if gone:
            src = model.selectable(entity)
            pk = src.c[entity.primary_id]
            found = session.execute(select(pk).where(src.c.organizationid == model.org_id, pk.in_(gone)))
            existing = set(found.scalars())
            removes.extend(
                {"entity": name, "id": rid, "reason": "out_of_scope" if rid in existing else "deleted"} for rid in gone
            )
        send = sorted(ours if check.entities[name].refresh else ours - theirs)
        for start in range(0, len(send), BATCH):
            upserts.extend(_records(session, model, p, entity, send[start : start + BATCH], now))
        check.added += len(ours - theirs)
        check.removed += len(gone)
    frames = []
    for start in range(0, max(len(removes), len(upserts)), BATCH):
        part_r, part_u = removes[start : start + BATCH], upserts[start : start + BATCH]
        frames.append(
            {
                "type": "changes",
                "cursor": cursor,
                "upserts": part_u,
                "removes": part_r,
                "more": False,
                "check": check.check_id,
            }
        )
    return frames


def _records(
    session: Session, model: OrgModel, p: Principal, entity: Entity, ids: list[str], now: dt.datetime
) -> list[dict[str, Any]]:
    src = model.selectable(entity)
    pk = src.c[entity.primary_id]
    stmt = select(src).where(src.c.organizationid == model.org_id, pk.in_(ids), device_scope(model, p, entity, now))
    rows = [dict(r) for r in session.execute(stmt).mappings()]
    return [{"entity": entity.logical_name, "record": r} for r in to_wire_many(session, model, p, entity, rows)]


def finish(session: Session, model: OrgModel, device_id: str, check: Check) -> dict[str, Any]:
    """The device is done with a check: store what is now verified; the `reconciled` frame."""
    save_stamp(session, model.org_id, device_id, check.stamp)
    metrics.reconciled(session, check.removed)
    return {"type": "reconciled", "check": check.check_id, "removed": check.removed, "added": check.added}
