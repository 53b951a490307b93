"""Security roles: privileges per entity at a depth, held by users and by teams.

Depths are ordered — none < user < business unit < parent-child business units <
organization — so "may do X at depth D" is a comparison. A grant on entity `*` applies to
every entity, custom ones included (System Administrator holds everything that way).
Organisation-owned entities know only none and organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.changes import utcnow
from webapp.crm.errors import NotFound, ValidationFailed
from webapp.crm.registry import OrgModel
from webapp.security.tables import role, roleprivilege, teamrole, userrole

PRIVILEGES = ("create", "read", "write", "delete", "append", "appendto", "assign", "share")
DEPTHS = {"none": 0, "user": 1, "businessunit": 2, "parentchild": 3, "organization": 4}
NONE, USER, BU, PARENTCHILD, ORG = 0, 1, 2, 3, 4
ADMIN_ROLE = "System Administrator"

SALES_RECORDS = ("account", "contact")
PIPELINE = ("lead", "opportunity", "opportunityproduct")
ACTIVITIES = ("appointment", "phonecall", "task", "email", "activitypointer")
NOTES = ("annotation", "connection")
REFERENCE = (
    "businessunit",
    "systemuser",
    "team",
    "position",
    "transactioncurrency",
    "product",
    "competitor",
    "competitoraddress",
    "connectionrole",
)

Grant = tuple[str, str, int]  # (entity, privilege, depth)


def _grants(entities: Iterable[str], **depths: int) -> list[Grant]:
    return [(e, p, d) for e in entities for p, d in depths.items()]


def _all(entities: Iterable[str], depth: int, **overrides: int) -> list[Grant]:
    return _grants(entities, **{p: overrides.get(p, depth) for p in PRIVILEGES})


DEFAULT_ROLES: dict[str, list[Grant]] = {
    ADMIN_ROLE: _all(["*"], ORG),
    "Sales Manager": [
        *_all(
            SALES_RECORDS + PIPELINE + ACTIVITIES + NOTES,
            BU,
            read=PARENTCHILD,
            append=PARENTCHILD,
            appendto=PARENTCHILD,
        ),
        *_all(["incident"], BU, read=PARENTCHILD, appendto=PARENTCHILD),
        *_grants(REFERENCE, read=ORG, appendto=ORG),
        *_grants(
            ["product", "transactioncurrency", "competitor", "competitoraddress"], create=ORG, write=ORG, append=ORG
        ),
    ],
    "Salesperson": [
        *_all(SALES_RECORDS, USER, read=BU, appendto=BU),
        *_all(PIPELINE + ACTIVITIES + NOTES, USER),
        # A salesperson turns a customer visit into a case (convert activity to case).
        *_grants(["incident"], create=USER, read=BU, write=USER, append=USER, appendto=BU),
        *_grants(REFERENCE, read=ORG, appendto=ORG),
        *_grants(["competitor", "competitoraddress"], create=ORG, write=ORG, append=ORG),
    ],
    "Customer Service Representative": [
        *_all(["incident"], BU, create=USER, delete=USER, share=USER),
        *_all(SALES_RECORDS, USER, read=ORG, appendto=ORG),
        *_all(ACTIVITIES + NOTES, USER),
        *_grants(REFERENCE, read=ORG, appendto=ORG),
    ],
}


def depth_value(name: str) -> int:
    """The number of a depth name, or a validation error listing the names."""
    if name not in DEPTHS:
        raise ValidationFailed(f"The depth must be one of {', '.join(DEPTHS)}.", field="depth")
    return DEPTHS[name]


def create_role(session: Session, model: OrgModel, name: str) -> str:
    """A new, empty role."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("A role needs a name of 1-100 characters.", field="name")
    if session.execute(select(role.c.roleid).where(role.c.organizationid == model.org_id, role.c.name == name)).first():
        raise ValidationFailed(f"A role named '{name}' already exists.", field="name")
    role_id = str(uuid.uuid4())
    session.execute(
        insert(role), {"roleid": role_id, "organizationid": model.org_id, "name": name, "createdon": utcnow()}
    )
    return role_id


def role_id(session: Session, model: OrgModel, name: str) -> str:
    """The id of the role called `name` in this organisation."""
    found = session.execute(
        select(role.c.roleid).where(role.c.organizationid == model.org_id, role.c.name == name)
    ).scalar()
    if found is None:
        raise NotFound(f"There is no role named '{name}'.")
    return str(found)


def grant(session: Session, model: OrgModel, role_id_: str, entity: str, privilege: str, depth: int) -> None:
    """Set the depth at which a role holds a privilege on an entity (`none` removes it)."""
    if privilege not in PRIVILEGES:
        raise ValidationFailed(f"The privilege must be one of {', '.join(PRIVILEGES)}.", field="privilege")
    if entity != "*":
        target = model.entity(entity)
        if target.ownership == "organization" and depth not in (NONE, ORG):
            raise ValidationFailed(
                f"{entity} is owned by the organisation: its depth is none or organization.", field="depth"
            )
    session.execute(
        delete(roleprivilege).where(
            roleprivilege.c.roleid == role_id_, roleprivilege.c.entity == entity, roleprivilege.c.privilege == privilege
        )
    )
    epoch.bump(session, model.org_id)
    if depth > NONE:
        session.execute(
            insert(roleprivilege), {"roleid": role_id_, "entity": entity, "privilege": privilege, "depth": depth}
        )


def install_default_roles(session: Session, model: OrgModel) -> dict[str, str]:
    """Create the shipped roles in an organisation; returns their ids by name."""
    ids = {}
    rows: dict[tuple[str, str, str], int] = {}
    for name, grants in DEFAULT_ROLES.items():
        rid = create_role(session, model, name)
        for entity, privilege, depth in grants:
            rows[(rid, entity, privilege)] = depth  # the last grant wins, as with `grant`
        ids[name] = rid
    epoch.bump(session, model.org_id)
    session.execute(
        insert(roleprivilege),
        [{"roleid": r, "entity": e, "privilege": p, "depth": d} for (r, e, p), d in rows.items() if d > NONE],
    )
    return ids


def assign_user_role(session: Session, model: OrgModel, user_id: str, role_id_: str) -> None:
    """Give a user a role (idempotent)."""
    exists = session.execute(
        select(userrole).where(userrole.c.systemuserid == user_id, userrole.c.roleid == role_id_)
    ).first()
    if exists is None:
        epoch.bump(session, model.org_id, [user_id])
        session.execute(insert(userrole), {"systemuserid": user_id, "roleid": role_id_, "organizationid": model.org_id})


def assign_team_role(session: Session, model: OrgModel, team_id: str, role_id_: str) -> None:
    """Give a team a role (its members hold it through the team)."""
    exists = session.execute(
        select(teamrole).where(teamrole.c.teamid == team_id, teamrole.c.roleid == role_id_)
    ).first()
    if exists is None:
        epoch.bump_members(session, model.org_id, team_id)
        session.execute(insert(teamrole), {"teamid": team_id, "roleid": role_id_, "organizationid": model.org_id})


def set_user_roles(session: Session, model: OrgModel, user_id: str, role_ids: Iterable[str]) -> None:
    """Make a user hold exactly these roles."""
    epoch.bump(session, model.org_id, [user_id])
    session.execute(
        delete(userrole).where(userrole.c.systemuserid == user_id, userrole.c.organizationid == model.org_id)
    )
    for rid in dict.fromkeys(role_ids):
        assign_user_role(session, model, user_id, rid)


def set_team_roles(session: Session, model: OrgModel, team_id: str, role_ids: Iterable[str]) -> None:
    """Make a team hold exactly these roles."""
    epoch.bump_members(session, model.org_id, team_id)
    session.execute(delete(teamrole).where(teamrole.c.teamid == team_id, teamrole.c.organizationid == model.org_id))
    for rid in dict.fromkeys(role_ids):
        assign_team_role(session, model, team_id, rid)


def rename_role(session: Session, model: OrgModel, role_id_: str, name: str) -> None:
    """Give a role a new (unique) name."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("A role needs a name of 1-100 characters.", field="name")
    clash = session.execute(
        select(role.c.roleid).where(
            role.c.organizationid == model.org_id, role.c.name == name, role.c.roleid != role_id_
        )
    ).first()
    if clash:
        raise ValidationFailed(f"A role named '{name}' already exists.", field="name")
    session.execute(update(role).where(role.c.roleid == role_id_).values(name=name))
