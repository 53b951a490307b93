"""Who is calling: the one resolver the Web API, the console and the sync socket's handshake use.

Each transport reads the credential its own way and refuses in its own words (the API a 401
JSON error, the console a redirect to sign-in, the handshake a 403 before the upgrade); this
module alone decides who the caller is: a live session (not expired, not revoked — moving a
user to another unit or resetting their password revokes it) of a user who is still an
active member of that organisation. A transport that checks privileges then takes the
caller's principal from the process's cache (`with_principal`, webapp/security/principals.py);
one that needs none (who-am-I, the handshake) loads none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm.records import Actor
from webapp.crm.registry import OrgModel, Registry
from webapp.security.accounts import SessionInfo, load_session
from webapp.security.principals import Principals
from webapp.security.scope import Principal


class NotSignedIn(Exception):
    """No caller. `reason`: "session" (none, unknown, expired or revoked) or "account" (the
    session is live but its user is disabled or no longer in the organisation)."""

    def __init__(self, reason: Literal["session", "account"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedIn:
    """A live session of an active user: who, in which organisation, acting as whom."""

    session_info: SessionInfo
    model: OrgModel
    actor: Actor
    username: str


@dataclass(frozen=True)
class Caller:
    """A signed-in user with their security principal."""

    session_info: SessionInfo
    model: OrgModel
    actor: Actor
    principal: Principal
    username: str


def signed_in(session: Session, registry: Registry, info: SessionInfo) -> SignedIn:
    """The active user a live session names, or NotSignedIn("account")."""
    model = registry.model(session, info.org_id)
    users = model.tables["systemuser"]
    row = session.execute(
        select(users.c.username, users.c.businessunitid, users.c.isdisabled).where(
            users.c.organizationid == info.org_id, users.c.systemuserid == info.user_id
        )
    ).first()
    if row is None or row.isdisabled:
        raise NotSignedIn("account")
    return SignedIn(info, model, Actor(info.org_id, info.user_id, row.businessunitid), row.username)


def resolve(session: Session, registry: Registry, token: str | None) -> SignedIn:
    """The active user a session token names, or NotSignedIn with the reason."""
    info = load_session(session, token)
    if info is None:
        raise NotSignedIn("session")
    return signed_in(session, registry, info)


def with_principal(session: Session, principals: Principals, who: SignedIn) -> Caller:
    """The caller with their principal (kept per process and user while their epoch stands)."""
    principal = principals.get(session, who.model, who.session_info.user_id)
    return Caller(who.session_info, who.model, who.actor, principal, who.username)
