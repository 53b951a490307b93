"""Which entities an organisation has, and the table (or union) behind each.

System entities are the same everywhere; custom entities belong to the organisation that
added them and live in tables named after it. The model of an organisation is cached and
rebuilt whenever its `metadata_revision` moves, so a custom entity added by another process
appears at the next request. A model built inside a transaction that then rolls back is
dropped from the cache (another change may commit the same revision number later).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, Table, event, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from webapp.crm.entities import SYSTEM_ENTITIES, SYSTEM_ENTITY_NAMES
from webapp.crm.errors import NotFound
from webapp.crm.metadata import Entity, entity_from_dict
from webapp.crm.tables import SYSTEM_TABLES, build_entity_table, customentity, organization


@dataclass
class OrgModel:
    """One organisation's entities and their tables."""

    org_id: str
    name: str
    revision: int
    settings: dict[str, Any]
    entities: dict[str, Entity]
    tables: dict[str, Table]
    by_set: dict[str, Entity] = field(default_factory=dict)
    _unions: dict[str, Subquery] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_set = {e.entity_set: e for e in self.entities.values()}

    def entity(self, logical_name: str) -> Entity:
        """The entity called `logical_name`, or NotFound."""
        try:
            return self.entities[logical_name]
        except KeyError:
            raise NotFound(f"There is no entity '{logical_name}'.") from None

    def entity_for_set(self, entity_set: str) -> Entity:
        """The entity behind an entity-set name (`accounts`), or NotFound."""
        try:
            return self.by_set[entity_set]
        except KeyError:
            raise NotFound(f"There is no entity set '{entity_set}'.") from None

    def selectable(self, entity: Entity) -> Any:
        """What to select from: the entity's table, or for activitypointer the union."""
        if not entity.union_of:
            return self.tables[entity.logical_name]
        union = self._unions.get(entity.logical_name)
        if union is None:
            union = activity_union(entity, [self.tables[name] for name in entity.union_of])
            self._unions[entity.logical_name] = union
        return union

    def table(self, entity: Entity) -> Table:
        """The writable table of an entity (activitypointer has none)."""
        return self.tables[entity.logical_name]


def activity_union(pointer: Entity, tables: list[Table]) -> Subquery:
    """activitypointer: the common columns of every activity table, unioned."""
    names = [c.name for c in tables[0].columns if all(c.name in t.c for t in tables)]
    wanted = {"organizationid", *(a.logical_name for a in pointer.attributes)}
    wanted |= {f"{a.logical_name}__type" for a in pointer.lookups() if a.is_polymorphic}
    wanted |= {"ownerid", "ownerid__type", "owningbusinessunit", "createdon", "modifiedon"}
    wanted |= {"createdby", "modifiedby", "versionnumber"}
    cols = [n for n in names if n in wanted]
    parts = [select(*(t.c[n] for n in cols)) for t in tables]
    return union_all(*parts).subquery("activitypointer")


class Registry:
    """Builds and caches each organisation's model; owns the custom entities' tables."""

    def __init__(self) -> None:
        self.custom_metadata = MetaData()
        self._models: dict[str, OrgModel] = {}
        self._lock = threading.Lock()

    def model(self, session: Session, org_id: str) -> OrgModel:
        """The current model of an organisation (rebuilt when its revision moved)."""
        row = session.execute(select(organization).where(organization.c.organizationid == org_id)).mappings().first()
        if row is None:
            raise NotFound("There is no such organisation.")
        cached = self._models.get(org_id)
        if cached is not None and cached.revision == row["metadata_revision"]:
            if cached.settings != row["settings"]:
                # Never mutate the shared model: other threads use it in their own transactions.
                return dataclasses.replace(cached, settings=row["settings"])
            return cached
        with self._lock:
            model = self._build(session, row)
            self._models[org_id] = model
        # Built from what this transaction sees, which may be its own uncommitted change: if it
        # rolls back, a later change could commit the same revision number and find this model.
        event.listen(session, "after_soft_rollback", lambda *_: self._forget_model(model), once=True)
        return model

    def _forget_model(self, model: OrgModel) -> None:
        with self._lock:
            if self._models.get(model.org_id) is model:
                del self._models[model.org_id]

    def _build(self, session: Session, org: Any) -> OrgModel:
        entities = {e.logical_name: e for e in SYSTEM_ENTITIES}
        tables: dict[str, Table] = dict(SYSTEM_TABLES)
        rows = session.execute(
            select(customentity)
            .where(customentity.c.organizationid == org["organizationid"])
            .order_by(customentity.c.createdon)
        ).mappings()
        for r in rows:
            known = set(SYSTEM_ENTITY_NAMES) | set(entities)
            entity = entity_from_dict(r["definition"], known)
            entities[entity.logical_name] = entity
            tables[entity.logical_name] = self.custom_table(entity, r["table_name"])
        from webapp.crm.remodel import apply_transitions  # it saves settings through orgs, which imports this

        apply_transitions(entities, org["settings"] or {})
        return OrgModel(
            org_id=org["organizationid"],
            name=org["name"],
            revision=org["metadata_revision"],
            settings=org["settings"],
            entities=entities,
            tables=tables,
        )

    def custom_table(self, entity: Entity, table_name: str) -> Table:
        """The Table object of a custom entity (rebuilt if its attributes changed)."""
        existing = self.custom_metadata.tables.get(table_name)
        wanted = {a.logical_name for a in entity.attributes}
        if existing is not None:
            if wanted <= set(existing.c.keys()):
                return existing
            self.custom_metadata.remove(existing)
        return build_entity_table(entity, self.custom_metadata, table_name)

    def forget(self, org_id: str) -> None:
        """Drop a cached model (after a metadata change in this process)."""
        self._models.pop(org_id, None)
