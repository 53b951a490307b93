"""Setting up organisations and users with their security: the shipped roles, a user's role."""

from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from webapp.crm.orgs import create_org
from webapp.crm.registry import OrgModel, Registry
from webapp.security.accounts import create_user
from webapp.security.roles import assign_user_role, install_default_roles, role_id


def new_organization(session: Session, registry: Registry, name: str, friendly_name: str | None = None) -> OrgModel:
    """An organisation with its root business unit, base currency and the shipped roles."""
    model = create_org(session, registry, name, friendly_name)
    install_default_roles(session, model)
    return model


def new_user(
    session: Session,
    model: OrgModel,
    hasher: PasswordHasher,
    username: str,
    password: str,
    lastname: str,
    business_unit_id: str,
    roles: list[str],
    firstname: str | None = None,
    manager_id: str | None = None,
    position_id: str | None = None,
    email: str | None = None,
) -> str:
    """A user who can sign in, holding the named roles."""
    ids = [role_id(session, model, r) for r in roles]
    user_id = create_user(
        session,
        model,
        hasher,
        username,
        password,
        lastname,
        business_unit_id,
        firstname=firstname,
        manager_id=manager_id,
        position_id=position_id,
        email=email,
    )
    for rid in ids:
        assign_user_role(session, model, user_id, rid)
    return user_id
