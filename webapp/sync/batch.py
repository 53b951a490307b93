"""A push frame replayed as sets: each record loaded once, its security decided once, the
writes sent as one executemany per table and shape.

`webapp.sync.replay` hands creates and updates here; this module makes exactly the checks
`webapp.security.operations.create` / `update` make, in the same order and with the same
errors, but against records loaded for the whole frame at once (one `SELECT … IN` per entity,
plus their shares), deciding each privilege in Python with the same `Reach` the SQL
conditions render (`Reach.admits`, proven equal to `Reach.sql` by tests/test_fanout_scope.py).
Every check of an operation runs before anything of it is buffered, so a refused operation
leaves no partial write and needs no savepoint. Writes wait in the buffer — change-log rows
numbered here, inserts, updates merged per record — until `flush`, which sends them in a
handful of statements. An operation this module does not handle raises `Slow`, and the replay
flushes and applies it one at a time in a savepoint as before (deletes, commands, activities
through activitypointer, records missing on the server, a stale update under conflict
detection), then calls `forget`: the cache and the numbering are re-read after it.

The numbering: under the change-numbering lock (PostgreSQL; SQLite's writers are serialised
by BEGIN IMMEDIATE), the next number is read once and counted up here; `flush` writes the rows
with their numbers and moves PostgreSQL's sequence past them, as `reserve_changes` does.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, Update, bindparam, column, insert, select, text, update, values
from sqlalchemy.orm import Session

from webapp.crm import epoch, records
from webapp.crm.changes import current_change, serialise_numbering, utcnow
from webapp.crm.errors import DuplicateId, Forbidden, NotFound, ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.records import Actor
from webapp.crm.registry import OrgModel
from webapp.crm.tables import changelog
from webapp.crm.validation import BIND_RE, Bind, parse_payload
from webapp.security.operations import check_fields, privilege_error
from webapp.security.scope import Principal, Reach, may_append_new, may_create, reach
from webapp.security.sharing import SHARE_RIGHTS
from webapp.security.tables import recordshare


class Slow(Exception):
    """This operation needs the one-at-a-time path (nothing of it was buffered)."""


@dataclass
class Loaded:
    """A record as this frame sees it: its row (None: there is none) and who it is shared with
    (principal id -> the rights shared)."""

    row: dict[str, Any] | None
    shares: dict[str, set[str]]


class Batch:
    """One frame's loaded records and buffered writes, inside the caller's transaction."""

    def __init__(self, session: Session, model: OrgModel, principal: Principal, actor: Actor) -> None:
        self.session, self.model, self.principal, self.actor = session, model, principal, actor
        self.loaded: dict[tuple[str, str], Loaded] = {}
        self._reaches: dict[tuple[str, str], Reach] = {}
        self._changes: list[dict[str, Any]] = []
        self._inserts: dict[tuple[str, str], dict[str, Any]] = {}
        self._updates: dict[tuple[str, str], dict[str, Any]] = {}
        self._next_change: int | None = None

    # -- loading -----------------------------------------------------------------------------

    def preload(self, ops_: list[dict[str, Any]]) -> None:
        """Load, in one query per entity, every record these operations name: their own
        records (a create's id, to find it taken) and the targets of their lookups."""
        m = self.model
        wanted: dict[str, set[str]] = defaultdict(set)
        for op in ops_:
            entity = m.entities.get(op["entity"]) if isinstance(op.get("entity"), str) else None
            if entity is None or entity.union_of or op.get("kind") not in ("create", "update"):
                continue
            wanted[entity.logical_name].add(op["id"])
            if op["kind"] == "create" and entity.activity:
                wanted["activitypointer"].add(op["id"])
            for value in (op.get("changes") or {}).values():
                found = BIND_RE.match(value) if isinstance(value, str) else None
                target = m.by_set.get(found["set"]) if found else None
                if found and target is not None and not target.union_of:
                    wanted[target.logical_name].add(found["id"].lower())
        self.load(wanted)

    def load(self, wanted: dict[str, set[str]]) -> None:
        """Load the records not loaded yet: a query per entity, and one for their shares."""
        m = self.model
        for name, ids in wanted.items():
            missing = sorted(i for i in ids if (name, i) not in self.loaded)
            if not missing:
                continue
            entity = m.entity(name)
            src = m.selectable(entity)
            pk = src.c[entity.primary_id]
            rows = {
                r[entity.primary_id]: dict(r)
                for r in self.session.execute(
                    select(src).where(src.c.organizationid == m.org_id, pk.in_(missing))
                ).mappings()
            }
            shares: dict[str, dict[str, set[str]]] = defaultdict(dict)
            if rows and entity.ownership == "user":
                p = self.principal
                for share in self.session.execute(
                    select(recordshare).where(
                        recordshare.c.organizationid == m.org_id,
                        recordshare.c.entity.in_(entity.union_of or [name]),
                        recordshare.c.recordid.in_(sorted(rows)),
                        recordshare.c.principalid.in_([p.user_id, *p.team_ids]),
                    )
                ).mappings():
                    shares[share["recordid"]][share["principalid"]] = {r for r in SHARE_RIGHTS if share[r]}
            for rid in missing:
                self.loaded[(name, rid)] = Loaded(rows.get(rid), shares.get(rid, {}))

    def get(self, entity: Entity, record_id: str) -> Loaded:
        """The record as this frame sees it (loaded on a miss)."""
        key = (entity.logical_name, record_id)
        if key not in self.loaded:
            self.load({entity.logical_name: {record_id}})
        return self.loaded[key]

    def allowed(self, entity: Entity, loaded: Loaded, privilege: str) -> bool:
        """Whether the user holds `privilege` on this record (the rule `condition` renders)."""
        if loaded.row is None:
            return False
        key = (entity.logical_name, privilege)
        rule = self._reaches.get(key)
        if rule is None:
            rule = self._reaches[key] = reach(self.principal, entity, privilege)
        return rule.admits(loaded.row.get("ownerid"), loaded.row.get("owningbusinessunit"), loaded.shares)

    def forget(self) -> None:
        """After an operation applied one at a time: re-read records and numbering from now on."""
        self.loaded.clear()
        self._next_change = None

    # -- the operations ----------------------------------------------------------------------

    def create(self, entity: Entity, payload: dict[str, Any]) -> dict[str, Any]:
        """`operations.create` for a frame: every check, then the write buffered."""
        m, p, actor = self.model, self.principal, self.actor
        records.check_writable(entity)
        values, binds, record_id = parse_payload(entity, payload, m.entity_for_set, creating=True)
        records.check_state_move(entity, None, values)
        if not may_create(p, entity):
            raise Forbidden(f"You do not have the create privilege on {entity.display_collection_name.lower()}.")
        check_fields(p, entity, [*values, *(b.attribute for b in binds)], creating=True)
        if any(b.id is not None for b in binds) and not may_append_new(p, entity):
            raise Forbidden(f"You do not have the append privilege on {entity.display_collection_name.lower()}.")
        self._check_binds(binds)
        values.update(records.bind_values(entity, binds))
        record_id = record_id or records.new_id()
        taken = self.get(entity, record_id).row is not None
        if not taken and entity.activity:
            taken = self.get(m.entity("activitypointer"), record_id).row is not None
        if taken:
            raise DuplicateId(f"A record with id {record_id} already exists.", field=entity.primary_id)
        values, owner_cols, changed = records.new_values(actor, entity, values)
        now = utcnow()
        version = self._log(entity, record_id, "create", changed, owner_cols, now)
        row = records.new_row(m, actor, entity, values, record_id, owner_cols, version, now)
        full = {c.name: row.get(c.name) for c in m.table(entity).columns}
        key = (entity.logical_name, record_id)
        self._inserts[key] = dict(full)
        self.loaded[key] = Loaded(full, {})
        if entity.activity:
            self.loaded[("activitypointer", record_id)] = Loaded(full, {})
        return dict(full)

    def update(self, entity: Entity, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """`operations.update` for a frame (the record exists: the caller looked)."""
        m, p, actor = self.model, self.principal, self.actor
        loaded = self.get(entity, record_id)
        current = loaded.row
        assert current is not None
        if not payload:  # nothing to change: the record must still be readable
            if not self.allowed(entity, loaded, "read"):
                raise NotFound(f"There is no {entity.logical_name} with id {record_id}.")
            return dict(current)
        records.check_writable(entity)
        if not self.allowed(entity, loaded, "read"):
            raise NotFound(f"There is no {entity.logical_name} with id {record_id}.")
        values, binds, _ = parse_payload(entity, payload, m.entity_for_set, creating=False)
        if not self.allowed(entity, loaded, "write"):
            raise privilege_error(entity, "write")
        records.check_state_move(entity, current.get("statecode"), values)
        check_fields(p, entity, [*values, *(b.attribute for b in binds)], creating=False)
        if binds:
            if not self.allowed(entity, loaded, "append"):
                raise privilege_error(entity, "append")
            self._check_binds(binds)
        values.update(records.bind_values(entity, binds))
        values, changed = records.changed_values(entity, current, values)
        if not changed:
            return dict(current)
        now = utcnow()
        owner_cols = (current.get("ownerid"), current.get("ownerid__type"), current.get("owningbusinessunit"))
        version = self._log(entity, record_id, "update", changed, owner_cols, now)
        values.update({"modifiedon": now, "modifiedby": actor.user_id, "versionnumber": version})
        key = (entity.logical_name, record_id)
        if key in self._inserts:
            self._inserts[key].update(values)
        else:
            self._updates.setdefault(key, {}).update(values)
        after = {**current, **values}
        self.loaded[key] = Loaded(after, loaded.shares)
        return dict(after)

    def readable(self, entity: Entity, record_id: str) -> dict[str, Any] | None:
        """The record as it stands in this frame, if the user may read it."""
        loaded = self.get(entity, record_id)
        return dict(loaded.row) if loaded.row is not None and self.allowed(entity, loaded, "read") else None

    def _check_binds(self, binds: list[Bind]) -> None:
        """`operations._check_binds`: each target readable (else: no such record) and append-to."""
        for b in binds:
            if b.id is None:
                continue
            target = self.model.entity(b.target or "")
            if target.union_of:
                raise Slow(target.logical_name)
            loaded = self.get(target, b.id)
            if not self.allowed(target, loaded, "read"):
                msg = f"There is no {target.logical_name} with id {b.id}."
                raise ValidationFailed(f"{b.attribute}: {msg}", field=b.attribute, details={b.attribute: [msg]})
            if not self.allowed(target, loaded, "appendto"):
                raise Forbidden(
                    f"You may not link records to this {target.display_name.lower()} (no append-to privilege).",
                    field=b.attribute,
                )

    # -- writing -----------------------------------------------------------------------------

    def _log(
        self,
        entity: Entity,
        record_id: str,
        operation: str,
        fields: list[str],
        owner: records.OwnerColumns,
        when: dt.datetime,
    ) -> int:
        """`changes.log_change`, buffered: the change number, counted up under the lock."""
        if self._next_change is None:
            serialise_numbering(self.session)
            self._next_change = current_change(self.session) + 1
        number = self._next_change
        self._next_change += 1
        epoch.bump_for_record_write(self.session, self.model.org_id, entity.logical_name, operation, fields)
        self._changes.append(
            {
                "changenum": number,
                "organizationid": self.model.org_id,
                "entity": entity.logical_name,
                "recordid": record_id,
                "operation": operation,
                "changedfields": sorted(fields),
                "ownerid": owner[0],
                "ownerid__type": owner[1],
                "owningbusinessunit": owner[2],
                "changedon": when,
                "changedby": self.actor.user_id,
            }
        )
        return number

    @property
    def pending(self) -> bool:
        """Whether writes wait in the buffer."""
        return bool(self._changes or self._inserts or self._updates)

    def flush(self) -> None:
        """Send the buffered writes: the change-log rows, then each table's inserts and updates,
        one executemany per table and set of columns."""
        s, m = self.session, self.model
        if self._changes:
            s.execute(insert(changelog), self._changes)
            if s.get_bind().dialect.name == "postgresql":
                # Keep the sequence ahead of the numbers given here (the lock is still held).
                s.execute(
                    text("SELECT setval(pg_get_serial_sequence('changelog', 'changenum'), :n)"),
                    {"n": self._changes[-1]["changenum"]},
                )
        inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (name, _), row in self._inserts.items():
            inserts[name].append(row)
        for name, rows in inserts.items():
            s.execute(insert(m.table(m.entity(name))), rows)
        updates: dict[tuple[str, frozenset[str]], list[dict[str, Any]]] = defaultdict(list)
        for (name, rid), changed in self._updates.items():
            row = {f"v_{k}": v for k, v in changed.items()}
            updates[(name, frozenset(changed))].append({**row, "b_org": m.org_id, "b_id": rid})
        one_statement = s.get_bind().dialect.name == "postgresql"
        for (name, columns), params in updates.items():
            entity = m.entity(name)
            table = m.table(entity)
            if one_statement and len(params) > 1:
                s.execute(_update_from_values(table, entity.primary_id, sorted(columns), m.org_id, params))
                continue
            stmt = (
                update(table)
                .where(table.c.organizationid == bindparam("b_org"), table.c[entity.primary_id] == bindparam("b_id"))
                .values({c: bindparam(f"v_{c}") for c in sorted(columns)})
            )
            s.execute(stmt, params)
        self._changes.clear()
        self._inserts.clear()
        self._updates.clear()


def _update_from_values(
    table: Table, key: str, columns: list[str], org_id: str, params: list[dict[str, Any]]
) -> Update:
    """`UPDATE t SET … FROM (VALUES …) v WHERE t.key = v.key`: one statement for many rows.

    PostgreSQL runs an executemany as one statement per row (pipelined, but each planned and
    executed on its own): a frame of 100 updates was most of its replay time there."""
    rows = values(
        column("b_id", table.c[key].type),
        *(column(f"v_{c}", table.c[c].type) for c in columns),
        name="v",
    ).data([(p["b_id"], *(p[f"v_{c}"] for c in columns)) for p in params])
    return (
        update(table)
        .where(table.c.organizationid == org_id, table.c[key] == rows.c.b_id)
        .values({c: rows.c[f"v_{c}"] for c in columns})
    )
