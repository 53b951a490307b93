"""Helpers shared by the security matrix and the security property test.

They build organisations through the real set-up functions and ask the real SQL condition
which records a user reaches; they never decide an answer themselves.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.orgs import save_settings
from webapp.crm.records import Actor, Owner, insert_record
from webapp.crm.registry import OrgModel, Registry
from webapp.security.roles import assign_team_role, assign_user_role, create_role, grant
from webapp.security.scope import Principal, condition, load_principal
from webapp.security.tables import recordshare, role, teamrole, userrole

SHARE_RIGHTS = ("read", "write", "delete", "append", "appendto", "assign", "share")
RECORD_PRIVILEGES = SHARE_RIGHTS  # the privileges that apply to an existing record

Grant = tuple[str, str, int]  # (entity, privilege, depth)


def make_role(session: Session, model: OrgModel, name: str, grants: Iterable[Grant]) -> str:
    """A new role holding exactly `grants`."""
    role_id = create_role(session, model, name)
    for entity, privilege, depth in grants:
        grant(session, model, role_id, entity, privilege, depth)
    return role_id


def give_role(session: Session, model: OrgModel, role_id: str, holder_id: str, holder_type: str) -> None:
    """Assign a role to a user (`systemuser`) or to a team (`team`)."""
    if holder_type == "team":
        assign_team_role(session, model, holder_id, role_id)
    else:
        assign_user_role(session, model, holder_id, role_id)


def withdraw_role(session: Session, role_id: str) -> None:
    """Take a role away from every user and team holding it."""
    org_id = session.execute(select(role.c.organizationid).where(role.c.roleid == role_id)).scalar_one()
    epoch.bump(session, org_id)
    session.execute(delete(userrole).where(userrole.c.roleid == role_id))
    session.execute(delete(teamrole).where(teamrole.c.roleid == role_id))


def set_hierarchy(session: Session, registry: Registry, model: OrgModel, kind: str, depth: int) -> OrgModel:
    """Store the hierarchy setting and return the organisation's model as re-read."""
    settings = copy.deepcopy(model.settings)
    settings["hierarchy"] = {"model": kind, "depth": depth}
    save_settings(session, model.org_id, settings)
    return registry.model(session, model.org_id)


def add_account(session: Session, model: OrgModel, name: str, owner: Owner) -> str:
    """An account owned by `owner` (its owning business unit is the owner's)."""
    row = insert_record(
        session, model, Actor(model.org_id, None, None), model.entity("account"), {"name": name}, None, owner
    )
    return str(row["accountid"])


def add_product(session: Session, model: OrgModel, name: str) -> str:
    """A product (organisation-owned)."""
    values = {"name": name, "productnumber": name.upper()}
    row = insert_record(session, model, Actor(model.org_id, None, None), model.entity("product"), values)
    return str(row["productid"])


def add_share(
    session: Session,
    model: OrgModel,
    entity: str,
    record_id: str,
    principal_id: str,
    principal_type: str,
    rights: Iterable[str],
) -> None:
    """A recordshare row granting `rights` on one record to a user or a team."""
    granted = set(rights)
    if principal_type == "team":
        epoch.bump_members(session, model.org_id, principal_id)
    else:
        epoch.bump(session, model.org_id, [principal_id])
    session.execute(
        insert(recordshare),
        {
            "organizationid": model.org_id,
            "entity": entity,
            "recordid": record_id,
            "principalid": principal_id,
            "principaltype": principal_type,
            **{r: r in granted for r in SHARE_RIGHTS},
        },
    )


def reachable(session: Session, model: OrgModel, p: Principal, entity_name: str, privilege: str) -> set[str]:
    """The ids of the records of `entity_name` that the SQL condition lets `p` exercise `privilege` on."""
    entity = model.entity(entity_name)
    src = model.selectable(entity)
    stmt = select(src.c[entity.primary_id]).where(
        src.c.organizationid == model.org_id, condition(p, model, entity, src, privilege)
    )
    return {str(r) for r in session.execute(stmt).scalars()}


def principal(session: Session, model: OrgModel, user_id: str) -> Principal:
    """The user as the security rules see them (the real loader)."""
    return load_principal(session, model, user_id)
