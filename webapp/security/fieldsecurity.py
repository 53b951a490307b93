"""Field security: which attributes are secured, and the profiles that grant them.

Beyond the reference product (which drops field security offline): a secured value is
never returned to, written by, filtered on by, or (later) synced to anyone without a grant.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.errors import NotFound, ValidationFailed
from webapp.crm.registry import OrgModel
from webapp.security.tables import fieldpermission, fieldprofile, fieldprofilemember, securedattribute


def set_secured(session: Session, model: OrgModel, entity_name: str, attribute: str, secured: bool = True) -> None:
    """Mark an attribute secured (or no longer secured)."""
    entity = model.entity(entity_name)
    if entity.attribute(attribute) is None or attribute == entity.primary_id:
        raise ValidationFailed(f"{attribute} is not a field of {entity_name} that can be secured.", field="attribute")
    key = (
        securedattribute.c.organizationid == model.org_id,
        securedattribute.c.entity == entity_name,
        securedattribute.c.attribute == attribute,
    )
    session.execute(delete(securedattribute).where(*key))
    epoch.bump(session, model.org_id)
    if secured:
        session.execute(
            insert(securedattribute), {"organizationid": model.org_id, "entity": entity_name, "attribute": attribute}
        )


def create_profile(session: Session, model: OrgModel, name: str) -> str:
    """A new field security profile."""
    exists = session.execute(
        select(fieldprofile.c.profileid).where(
            fieldprofile.c.organizationid == model.org_id, fieldprofile.c.name == name
        )
    ).first()
    if exists is not None:
        raise ValidationFailed(f"A field security profile named '{name}' already exists.", field="name")
    profile_id = str(uuid.uuid4())
    session.execute(insert(fieldprofile), {"profileid": profile_id, "organizationid": model.org_id, "name": name})
    return profile_id


def set_permission(
    session: Session,
    model: OrgModel,
    profile_id: str,
    entity_name: str,
    attribute: str,
    read: bool,
    create: bool,
    update: bool,
) -> None:
    """What a profile allows on one secured attribute."""
    found = session.execute(
        select(fieldprofile.c.profileid).where(
            fieldprofile.c.organizationid == model.org_id, fieldprofile.c.profileid == profile_id
        )
    ).first()
    if found is None:
        raise NotFound("There is no such field security profile.")
    if model.entity(entity_name).attribute(attribute) is None:
        raise ValidationFailed(f"{attribute} is not a field of {entity_name}.", field="attribute")
    key = (
        fieldpermission.c.profileid == profile_id,
        fieldpermission.c.entity == entity_name,
        fieldpermission.c.attribute == attribute,
    )
    session.execute(delete(fieldpermission).where(*key))
    epoch.bump(session, model.org_id)
    session.execute(
        insert(fieldpermission),
        {
            "profileid": profile_id,
            "entity": entity_name,
            "attribute": attribute,
            "canread": read,
            "cancreate": create,
            "canupdate": update,
        },
    )


def add_member(session: Session, model: OrgModel, profile_id: str, principal_id: str, principal_type: str) -> None:
    """Give a user or team a profile's grants."""
    if principal_type not in ("systemuser", "team"):
        raise ValidationFailed("A profile's members are users or teams.", field="principaltype")
    exists = session.execute(
        select(fieldprofilemember).where(
            fieldprofilemember.c.profileid == profile_id, fieldprofilemember.c.principalid == principal_id
        )
    ).first()
    if exists is None:
        epoch.bump(session, model.org_id)
        session.execute(
            insert(fieldprofilemember),
            {
                "profileid": profile_id,
                "principalid": principal_id,
                "principaltype": principal_type,
                "organizationid": model.org_id,
            },
        )


def set_members(session: Session, model: OrgModel, profile_id: str, members: list[tuple[str, str]]) -> None:
    """Make exactly these (principal id, systemuser | team) the profile's members."""
    epoch.bump(session, model.org_id)
    session.execute(
        delete(fieldprofilemember).where(
            fieldprofilemember.c.profileid == profile_id, fieldprofilemember.c.organizationid == model.org_id
        )
    )
    for principal_id, principal_type in members:
        add_member(session, model, profile_id, principal_id, principal_type)


def clear_permission(session: Session, profile_id: str, entity_name: str, attribute: str) -> None:
    """Take away everything a profile allows on one attribute."""
    org_id = session.execute(
        select(fieldprofile.c.organizationid).where(fieldprofile.c.profileid == profile_id)
    ).scalar()
    if org_id is not None:
        epoch.bump(session, org_id)
    session.execute(
        delete(fieldpermission).where(
            fieldpermission.c.profileid == profile_id,
            fieldpermission.c.entity == entity_name,
            fieldpermission.c.attribute == attribute,
        )
    )
