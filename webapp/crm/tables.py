"""Tables: one real table per entity, generated from its metadata, plus the CRM's own tables.

A real table per entity (rather than one generic attribute-value table) keeps every query a
plain indexed SQL query: filters, ordering and security conditions run in the database.
Lookups get an index each; quick-find columns get an index on their case-folded value.
Polymorphic lookups store the target's entity name in `<attr>__type`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.metadata import Attribute, Entity
from webapp.db import ci_lower, metadata

ID = String(36)

organization = Table(
    "organization",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("friendlyname", String(160), nullable=False),
    Column("createdon", DateTime, nullable=False),
    # Bumped by every metadata change (custom entity, offline profile); caches key on it.
    Column("metadata_revision", Integer, nullable=False, default=1),
    Column("settings", JSON, nullable=False),
)

# Custom entities' definitions; their tables are created at run time from these.
customentity = Table(
    "customentity",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("logical_name", String(64), primary_key=True),
    Column("table_name", String(80), nullable=False, unique=True),
    Column("definition", JSON, nullable=False),
    Column("createdon", DateTime, nullable=False),
)

# Every write, deletes included (tombstones): the global change number is `changenum`,
# which is also the written record's versionnumber. Sync cursors read this table.
changelog = Table(
    "changelog",
    metadata,
    Column("changenum", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("organizationid", ID, nullable=False),
    Column("entity", String(64), nullable=False),
    Column("recordid", ID, nullable=False),
    Column("operation", String(8), nullable=False),  # create | update | delete
    Column("changedfields", JSON, nullable=False),
    Column("ownerid", ID),
    Column("ownerid__type", String(16)),
    Column("owningbusinessunit", ID),
    Column("changedon", DateTime, nullable=False),
    Column("changedby", ID),
    Index("ix_changelog_org_num", "organizationid", "changenum"),
    Index("ix_changelog_record", "organizationid", "entity", "recordid"),
)

# The security epoch (webapp/crm/epoch.py): per organisation ("" principal) and per user, a
# number that grows with every change deciding what that user may see or do.
securityepoch = Table(
    "securityepoch",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("principalid", String(36), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("changedon", DateTime, nullable=False),
)

teammembership = Table(
    "teammembership",
    metadata,
    Column("organizationid", ID, nullable=False),
    Column("teamid", ID, primary_key=True),
    Column("systemuserid", ID, primary_key=True),
    Index("ix_teammembership_user", "organizationid", "systemuserid"),
)


def column_type(attr: Attribute) -> TypeEngine[Any]:
    """The SQL type that stores an attribute of this type."""
    t = attr.type
    if t == "string":
        return String(attr.max_length or 100)
    if t == "memo":
        return Text()
    if t in ("integer", "optionset"):
        return Integer()
    if t == "money":
        return Numeric(19, 4)
    if t == "decimal":
        return Numeric(28, 10)
    if t == "boolean":
        return Boolean()
    if t == "datetime":
        return DateTime()
    if t == "date":
        return Date()
    if t in ("lookup", "uniqueidentifier"):
        return ID
    raise ValueError(f"no column type for {t}")


def build_entity_table(entity: Entity, md: MetaData, table_name: str) -> Table:
    """The table of one entity: its attributes plus the common system columns."""
    cols: list[Column[Any]] = [
        Column("organizationid", ID, primary_key=True),
        Column(entity.primary_id, ID, primary_key=True),
    ]
    lookups: list[str] = []
    for attr in entity.attributes:
        if attr.logical_name == entity.primary_id:
            continue
        cols.append(Column(attr.logical_name, column_type(attr), nullable=True))
        if attr.type == "lookup":
            if attr.is_polymorphic:
                cols.append(Column(f"{attr.logical_name}__type", String(64)))
            lookups.append(attr.logical_name)
    cols += [
        Column("ownerid", ID),
        Column("ownerid__type", String(16)),
        Column("owningbusinessunit", ID),
        Column("createdon", DateTime, nullable=False),
        Column("modifiedon", DateTime, nullable=False),
        Column("createdby", ID),
        Column("modifiedby", ID),
        Column("versionnumber", BigInteger, nullable=False),
    ]
    table = Table(table_name, md, *cols)
    for name in lookups:
        Index(f"ix_{table_name}_{name}", table.c.organizationid, table.c[name])
    Index(f"ix_{table_name}_owner", table.c.organizationid, table.c.ownerid)
    Index(f"ix_{table_name}_bu", table.c.organizationid, table.c.owningbusinessunit)
    Index(f"ix_{table_name}_modifiedon", table.c.organizationid, table.c.modifiedon)
    for name in entity.quick_find:
        col = table.c[name]
        if isinstance(col.type, String) and not isinstance(col.type, Text):
            Index(f"ix_{table_name}_qf_{name}", table.c.organizationid, ci_lower(col))
    return table


SYSTEM_TABLES: dict[str, Table] = {
    e.logical_name: build_entity_table(e, metadata, e.logical_name) for e in SYSTEM_ENTITIES if not e.union_of
}
