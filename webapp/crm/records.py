"""Writing records: create, update, delete — each one change-logged, validated, derived.

The owner, business unit, version and timestamps always come from here, never from the
client. Functions take a session; the caller (request or socket handler) owns the
transaction, so a command can group several writes into one all-or-nothing unit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm import ruledata
from webapp.crm.changes import log_change, utcnow
from webapp.crm.errors import DuplicateId, NotAllowed, NotFound, ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.crm.validation import Bind, raise_validation


@dataclass(frozen=True)
class Actor:
    """Who writes: the organisation, the acting user (None = the system) and their unit."""

    org_id: str
    user_id: str | None
    business_unit_id: str | None


@dataclass(frozen=True)
class Owner:
    """The owner a new record gets: a user or a team, and its business unit."""

    id: str
    type: str  # systemuser | team
    business_unit_id: str


def new_id() -> str:
    """A fresh lower-case UUID."""
    return str(uuid.uuid4())


def fetch(
    session: Session, model: OrgModel, entity: Entity, record_id: str, condition: Any = None
) -> dict[str, Any] | None:
    """One record's columns, or None if missing (or outside `condition`, e.g. a security scope)."""
    src = model.selectable(entity)
    stmt = select(src).where(src.c.organizationid == model.org_id, src.c[entity.primary_id] == record_id)
    if condition is not None:
        stmt = stmt.where(condition)
    row = session.execute(stmt).mappings().first()
    return dict(row) if row is not None else None


def activity_type_of(session: Session, model: OrgModel, record_id: str) -> Entity | None:
    """Which activity entity holds `record_id` (activity ids are unique across the types)."""
    pointer = model.entity("activitypointer")
    for name in pointer.union_of:
        entity = model.entity(name)
        t = model.table(entity)
        found = session.execute(
            select(t.c.activityid).where(t.c.organizationid == model.org_id, t.c.activityid == record_id)
        ).first()
        if found is not None:
            return entity
    return None


def check_writable(entity: Entity) -> None:
    if entity.union_of:
        raise NotAllowed(
            f"{entity.display_collection_name} are read-only here; write an appointment, task, phone call or email."
        )
    if not entity.api_writable:
        raise NotAllowed(f"{entity.display_collection_name} are managed by an administrator, not through the data API.")


def bind_values(entity: Entity, binds: list[Bind]) -> dict[str, Any]:
    """The column values of lookups (whose targets were checked to exist)."""
    values: dict[str, Any] = {}
    for b in binds:
        values[b.attribute] = b.id
        attr = entity.attribute(b.attribute)
        if attr is not None and attr.is_polymorphic:  # only these have a <attr>__type column
            values[f"{b.attribute}__type"] = b.target if b.id is not None else None
    return values


def resolve_binds(session: Session, model: OrgModel, entity: Entity, binds: list[Bind]) -> dict[str, Any]:
    """Resolve lookups to column values, refusing a lookup to a record that does not exist."""
    values = bind_values(entity, binds)
    errors: dict[str, list[str]] = {}
    for b in binds:
        if b.id is None:
            continue
        target = model.entity(b.target or "")
        t = model.selectable(target)
        exists = session.execute(
            select(t.c[target.primary_id]).where(t.c.organizationid == model.org_id, t.c[target.primary_id] == b.id)
        ).first()
        if exists is None:
            errors.setdefault(b.attribute, []).append(f"There is no {target.logical_name} with id {b.id}.")
    if errors:
        raise_validation(errors)
    return values


def check_state_move(entity: Entity, current_state: int | None, given: Mapping[str, Any]) -> None:
    """Refuse a state change a plain create or update may not make (the statecode options'
    `next`, interpreted by webapp/crm/ruledata.py as the phone does).

    `current_state` is None for a create (which starts from the first state). Commands move
    records between states through their own checks and do not come here.
    """
    if not entity.has_state:
        return
    try:
        ruledata.check_move(*entity.state_machine, current_state, given)
    except ruledata.StateRefused as exc:
        raise ValidationFailed(exc.message, field=exc.field, details={exc.field: [exc.message]}) from None


def _apply_state(entity: Entity, merged: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Make statecode and statuscode agree (a status belongs to exactly one state)."""
    if not entity.has_state:
        return {}
    try:
        return ruledata.pair_state(*entity.state_machine, merged, given)
    except ruledata.StateRefused as exc:
        raise ValidationFailed(
            f"{exc.field}: {exc.message}", field=exc.field, details={exc.field: [exc.message]}
        ) from None


def _derive(entity: Entity, merged: dict[str, Any]) -> dict[str, Any]:
    """Values computed from others, as the metadata's formulas declare (ruledata.derive)."""
    return ruledata.derive(entity.attributes, merged)


def insert_record(
    session: Session,
    model: OrgModel,
    actor: Actor,
    entity: Entity,
    values: dict[str, Any],
    record_id: str | None = None,
    owner: Owner | None = None,
) -> dict[str, Any]:
    """Insert already-validated column values (used by create and by commands)."""
    table = model.table(entity)
    record_id = record_id or new_id()
    taken = fetch(session, model, entity, record_id)
    if taken is None and entity.activity:
        taken = fetch(session, model, model.entity("activitypointer"), record_id)
    if taken is not None:
        raise DuplicateId(f"A record with id {record_id} already exists.", field=entity.primary_id)
    values, owner_cols, changed = new_values(actor, entity, values, owner)
    now = utcnow()
    version = log_change(
        session, model.org_id, entity.logical_name, record_id, "create", changed, owner_cols, actor.user_id, now
    )
    row = new_row(model, actor, entity, values, record_id, owner_cols, version, now)
    session.execute(insert(table), row)
    return {c.name: row.get(c.name) for c in table.columns}


OwnerColumns = tuple[str | None, str | None, str | None]


def new_values(
    actor: Actor, entity: Entity, values: dict[str, Any], owner: Owner | None = None
) -> tuple[dict[str, Any], OwnerColumns, list[str]]:
    """A new record's values with state and derived values, its owner columns, and the fields
    its change-log entry names (no database work: the caller numbers and writes it)."""
    values = dict(values)
    values.update(_apply_state(entity, values, values))
    values.update(_derive(entity, values))
    if entity.activity:
        values["activitytypecode"] = entity.logical_name
    owner_cols: OwnerColumns = (None, None, None)
    if entity.ownership == "user":
        if owner is None and actor.user_id is not None:
            owner = Owner(actor.user_id, "systemuser", actor.business_unit_id or "")
        if owner:
            owner_cols = (owner.id, owner.type, owner.business_unit_id)
    changed = [k for k, v in values.items() if v is not None and not k.endswith("__type")]
    return values, owner_cols, changed


def new_row(
    model: OrgModel,
    actor: Actor,
    entity: Entity,
    values: dict[str, Any],
    record_id: str,
    owner_cols: OwnerColumns,
    version: int,
    now: Any,
) -> dict[str, Any]:
    """The row to insert for a new record numbered `version` (see `new_values`)."""
    values = dict(values)
    for attr in entity.attributes:  # numbered by the server, as the metadata declares
        if attr.autonumber is not None and not values.get(attr.logical_name):
            prefix, digits = attr.autonumber
            values[attr.logical_name] = f"{prefix}{version:0{digits}d}"
    return {
        **values,
        "organizationid": model.org_id,
        entity.primary_id: record_id,
        "ownerid": owner_cols[0],
        "ownerid__type": owner_cols[1],
        "owningbusinessunit": owner_cols[2],
        "createdon": now,
        "modifiedon": now,
        "createdby": actor.user_id,
        "modifiedby": actor.user_id,
        "versionnumber": version,
    }


def update_record(
    session: Session, model: OrgModel, actor: Actor, entity: Entity, current: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    """Apply already-validated values to a loaded record (used by update and by commands)."""
    values, changed = changed_values(entity, current, values)
    if not changed:
        return current
    record_id = current[entity.primary_id]
    now = utcnow()
    owner_cols = (current.get("ownerid"), current.get("ownerid__type"), current.get("owningbusinessunit"))
    version = log_change(
        session, model.org_id, entity.logical_name, record_id, "update", changed, owner_cols, actor.user_id, now
    )
    values.update({"modifiedon": now, "modifiedby": actor.user_id, "versionnumber": version})
    table = model.table(entity)
    session.execute(
        update(table)
        .where(table.c.organizationid == model.org_id, table.c[entity.primary_id] == record_id)
        .values(**values)
    )
    return {**current, **values}


def changed_values(entity: Entity, current: dict[str, Any], values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An update's values with state and derived values made to agree, and the fields it
    changes (none: nothing to write). No database work."""
    merged = {**current, **values}
    values = dict(values)
    values.update(_apply_state(entity, merged, values))
    merged.update(values)
    values.update(_derive(entity, merged))
    merged.update(values)
    changed = [k for k, v in values.items() if not k.endswith("__type") and current.get(k) != v]
    return values, changed


def remove(
    session: Session, model: OrgModel, actor: Actor, entity: Entity, record_id: str, condition: Any = None
) -> None:
    """Delete a record (through activitypointer only where its type allows delete)."""
    if entity.union_of:
        concrete = activity_type_of(session, model, record_id)
        if concrete is None or (condition is not None and fetch(session, model, entity, record_id, condition) is None):
            raise NotFound(f"There is no activity with id {record_id}.")
        if "delete" not in concrete.offline_commands:
            raise NotAllowed(f"{concrete.display_collection_name} cannot be deleted through activities.")
        entity = concrete
        condition = None
    check_writable(entity)
    current = fetch(session, model, entity, record_id, condition)
    if current is None:
        raise NotFound(f"There is no {entity.logical_name} with id {record_id}.")
    delete_record(session, model, actor, entity, current)


def delete_record(session: Session, model: OrgModel, actor: Actor, entity: Entity, current: dict[str, Any]) -> None:
    """Delete a loaded record, leave a tombstone, and delete the records whose lookup to it is
    parental (the metadata's `cascade: delete`) or clear the others' lookups ("remove link")."""
    record_id = current[entity.primary_id]
    table = model.table(entity)
    now = utcnow()
    owner_cols = (current.get("ownerid"), current.get("ownerid__type"), current.get("owningbusinessunit"))
    log_change(session, model.org_id, entity.logical_name, record_id, "delete", [], owner_cols, actor.user_id, now)
    session.execute(
        delete(table).where(table.c.organizationid == model.org_id, table.c[entity.primary_id] == record_id)
    )
    for other in model.entities.values():
        if other.union_of:
            continue
        for attr in other.lookups():
            if entity.logical_name not in attr.targets:
                continue
            t = model.table(other)
            cond = and_(t.c.organizationid == model.org_id, t.c[attr.logical_name] == record_id)
            if attr.is_polymorphic:
                cond = and_(cond, t.c[f"{attr.logical_name}__type"] == entity.logical_name)
            for row in session.execute(select(t).where(cond)).mappings().all():
                if attr.cascade == "delete":
                    delete_record(session, model, actor, other, dict(row))
                else:
                    clear = {attr.logical_name: None}
                    if attr.is_polymorphic:
                        clear[f"{attr.logical_name}__type"] = None
                    update_record(session, model, actor, other, dict(row), clear)
