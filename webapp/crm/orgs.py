"""Organisations and their structure: business units, teams, positions.

Each organisation starts with a root business unit named after it and a base currency.
Structure records are ordinary entity records (change-logged like any other), written by
the system actor; users and their credentials are made in `webapp.security.accounts`.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.changes import utcnow
from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.errors import NotFound, ValidationFailed
from webapp.crm.records import Actor, insert_record
from webapp.crm.registry import OrgModel, Registry
from webapp.crm.tables import organization, teammembership

ORG_NAME_RE = r"^[a-z][a-z0-9-]{1,62}$"
FILTERS = ("all", "mine", "myteams", "mybu", "modified", "related")

# Offline by default: the entities of DESIGN.md §2 that the device works with every day.
DEFAULT_OFFLINE = {
    e.logical_name: {"enabled": bool(e.offline_commands), "filter": "all", "days": None}
    for e in SYSTEM_ENTITIES
    if e.logical_name != "businessunit"
}


def default_settings() -> dict[str, Any]:
    """A new organisation's settings (offline profile, conflicts, hierarchy, currency)."""
    return {
        "offline": {"enabled": True, "entities": copy.deepcopy(DEFAULT_OFFLINE), "sync_interval_minutes": 15},
        "conflict_detection": False,
        "hierarchy": {"model": "off", "depth": 3},
        "base_currency_symbol": "$",
    }


def system_actor(model: OrgModel) -> Actor:
    """The actor for writes made by the system (CLI, demo data, set-up)."""
    return Actor(model.org_id, None, None)


def create_org(session: Session, registry: Registry, name: str, friendly_name: str | None = None) -> OrgModel:
    """A new organisation with its root business unit and base currency (US Dollar)."""
    if not re.match(ORG_NAME_RE, name):
        raise ValidationFailed(
            "The organisation name must be 2-63 lower-case letters, digits or dashes, starting with a letter.",
            field="name",
        )
    if session.execute(select(organization.c.organizationid).where(organization.c.name == name)).first():
        raise ValidationFailed(f"An organisation named '{name}' already exists.", field="name")
    org_id = str(uuid.uuid4())
    session.execute(
        insert(organization),
        {
            "organizationid": org_id,
            "name": name,
            "friendlyname": friendly_name or name.capitalize(),
            "createdon": utcnow(),
            "metadata_revision": 1,
            "settings": default_settings(),
        },
    )
    model = registry.model(session, org_id)
    actor = system_actor(model)
    insert_record(
        session,
        model,
        actor,
        model.entity("businessunit"),
        {"name": friendly_name or name.capitalize(), "isdisabled": False},
    )
    insert_record(
        session,
        model,
        actor,
        model.entity("transactioncurrency"),
        {"currencyname": "US Dollar", "isocurrencycode": "USD", "currencysymbol": "$", "exchangerate": 1},
    )
    return model


def org_id_by_name(session: Session, name: str) -> str:
    """The id of the organisation called `name`, or NotFound."""
    found = session.execute(select(organization.c.organizationid).where(organization.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"There is no organisation named '{name}'.")
    return str(found)


def access_settings(settings: dict[str, Any]) -> tuple[Any, ...]:
    """The settings that decide what users see and devices hold: offline switches and filters, hierarchy."""
    offline = settings.get("offline", {})
    return offline.get("enabled"), offline.get("entities"), settings.get("hierarchy")


def save_settings(session: Session, org_id: str, settings: dict[str, Any]) -> None:
    """Store new settings and bump the metadata revision (and the security epoch when the
    offline profile or the hierarchy changed: they decide what devices hold)."""
    before = session.execute(select(organization.c.settings).where(organization.c.organizationid == org_id)).scalar()
    if access_settings(before or {}) != access_settings(settings):
        epoch.bump(session, org_id)
    session.execute(
        update(organization)
        .where(organization.c.organizationid == org_id)
        .values(settings=settings, metadata_revision=organization.c.metadata_revision + 1)
    )


def find_id(session: Session, model: OrgModel, entity_name: str, name: str) -> str:
    """The id of the record of `entity_name` whose primary name is `name` (exactly one)."""
    entity = model.entity(entity_name)
    t = model.selectable(entity)
    rows = session.execute(
        select(t.c[entity.primary_id]).where(t.c.organizationid == model.org_id, t.c[entity.primary_name] == name)
    ).all()
    if not rows:
        if entity_name == "systemuser":
            rows = session.execute(
                select(t.c.systemuserid).where(t.c.organizationid == model.org_id, t.c.username == name)
            ).all()
        if not rows:
            raise NotFound(f"There is no {entity.display_name.lower()} named '{name}'.")
    if len(rows) > 1:
        raise ValidationFailed(f"Several {entity.display_collection_name.lower()} are named '{name}'; use the id.")
    return str(rows[0][0])


def root_business_unit(session: Session, model: OrgModel) -> str:
    """The business unit with no parent."""
    t = model.tables["businessunit"]
    return str(
        session.execute(
            select(t.c.businessunitid).where(t.c.organizationid == model.org_id, t.c.parentbusinessunitid.is_(None))
        ).scalar_one()
    )


def create_business_unit(session: Session, model: OrgModel, name: str, parent_id: str | None = None) -> str:
    """A business unit under `parent_id` (default: the root)."""
    parent = parent_id or root_business_unit(session, model)
    row = insert_record(
        session,
        model,
        system_actor(model),
        model.entity("businessunit"),
        {"name": name, "parentbusinessunitid": parent, "isdisabled": False},
    )
    return str(row["businessunitid"])


def create_position(session: Session, model: OrgModel, name: str, parent_id: str | None = None) -> str:
    """A position, optionally under a parent position."""
    row = insert_record(
        session, model, system_actor(model), model.entity("position"), {"name": name, "parentpositionid": parent_id}
    )
    return str(row["positionid"])


def create_team(
    session: Session, model: OrgModel, name: str, business_unit_id: str, member_ids: list[str] | None = None
) -> str:
    """A team in a business unit, with members."""
    row = insert_record(
        session, model, system_actor(model), model.entity("team"), {"name": name, "businessunitid": business_unit_id}
    )
    team_id = str(row["teamid"])
    for user_id in member_ids or []:
        add_team_member(session, model, team_id, user_id)
    return team_id


def add_team_member(session: Session, model: OrgModel, team_id: str, user_id: str) -> None:
    """Make a user a member of a team (idempotent)."""
    exists = session.execute(
        select(teammembership).where(teammembership.c.teamid == team_id, teammembership.c.systemuserid == user_id)
    ).first()
    if exists is None:
        epoch.bump(session, model.org_id, [user_id])
        session.execute(
            insert(teammembership), {"organizationid": model.org_id, "teamid": team_id, "systemuserid": user_id}
        )


def set_team_members(session: Session, model: OrgModel, team_id: str, user_ids: list[str]) -> None:
    """Make exactly these users the members of a team."""
    now = set(
        session.execute(select(teammembership.c.systemuserid).where(teammembership.c.teamid == team_id)).scalars()
    )
    gone = now - set(user_ids)
    if gone:
        epoch.bump(session, model.org_id, gone)
        session.execute(
            delete(teammembership).where(teammembership.c.teamid == team_id, teammembership.c.systemuserid.in_(gone))
        )
    for user_id in user_ids:
        add_team_member(session, model, team_id, user_id)
