"""The security model's tables: roles and their privileges, role holders, shares, field security."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table, UniqueConstraint

from webapp.crm.tables import ID
from webapp.db import metadata

role = Table(
    "role",
    metadata,
    Column("roleid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("name", String(100), nullable=False),
    Column("createdon", DateTime, nullable=False),
    UniqueConstraint("organizationid", "name"),
)

# One row per (role, entity, privilege): the depth at which the role holds it.
roleprivilege = Table(
    "roleprivilege",
    metadata,
    Column("roleid", ID, primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("privilege", String(16), primary_key=True),
    Column("depth", Integer, nullable=False),  # see webapp.security.roles.DEPTHS
)

userrole = Table(
    "userrole",
    metadata,
    Column("systemuserid", ID, primary_key=True),
    Column("roleid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
)

teamrole = Table(
    "teamrole",
    metadata,
    Column("teamid", ID, primary_key=True),
    Column("roleid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
)

# A record shared with a user or a team: one boolean per right. Sharing only adds access.
recordshare = Table(
    "recordshare",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("recordid", ID, primary_key=True),
    Column("principalid", ID, primary_key=True),
    Column("principaltype", String(16), nullable=False),  # systemuser | team
    Column("read", Boolean, nullable=False, default=False),
    Column("write", Boolean, nullable=False, default=False),
    Column("delete", Boolean, nullable=False, default=False),
    Column("append", Boolean, nullable=False, default=False),
    Column("appendto", Boolean, nullable=False, default=False),
    Column("assign", Boolean, nullable=False, default=False),
    Column("share", Boolean, nullable=False, default=False),
    Index("ix_recordshare_principal", "organizationid", "principalid", "entity"),
)

# Field security: secured attributes, and profiles that grant read/create/update on them.
securedattribute = Table(
    "securedattribute",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("attribute", String(64), primary_key=True),
)

fieldprofile = Table(
    "fieldprofile",
    metadata,
    Column("profileid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("name", String(100), nullable=False),
    UniqueConstraint("organizationid", "name"),
)

fieldpermission = Table(
    "fieldpermission",
    metadata,
    Column("profileid", ID, primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("attribute", String(64), primary_key=True),
    Column("canread", Boolean, nullable=False, default=False),
    Column("cancreate", Boolean, nullable=False, default=False),
    Column("canupdate", Boolean, nullable=False, default=False),
)

fieldprofilemember = Table(
    "fieldprofilemember",
    metadata,
    Column("profileid", ID, primary_key=True),
    Column("principalid", ID, primary_key=True),
    Column("principaltype", String(16), nullable=False),
    Column("organizationid", ID, nullable=False),
)
