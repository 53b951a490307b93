"""Users, passwords, server-side sessions and sign-in throttling.

Passwords are hashed with argon2id (slow and salted). A session lives in the database; the
cookie holds only a random token whose SHA-256 is the row's key, so sign-out, expiry and
revocation end it everywhere, and a stolen database holds no usable cookie. Repeated failed
sign-ins for one (organisation, username) or from one address are throttled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, DateTime, Index, Integer, String, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.crm.errors import ValidationFailed
from webapp.crm.orgs import system_actor
from webapp.crm.records import insert_record
from webapp.crm.registry import OrgModel
from webapp.crm.tables import ID, SYSTEM_TABLES, organization
from webapp.db import metadata

credential = Table(
    "credential",
    metadata,
    Column("systemuserid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("changedon", DateTime, nullable=False),
)

usersession = Table(
    "usersession",
    metadata,
    Column("tokenhash", String(64), primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("systemuserid", ID, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("createdon", DateTime, nullable=False),
    Column("expireson", DateTime, nullable=False),
    Column("revokedon", DateTime),
    Index("ix_usersession_user", "systemuserid"),
)

loginattempt = Table(
    "loginattempt",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("orgname", String(64), nullable=False),
    Column("username", String(100), nullable=False),
    Column("remote", String(64), nullable=False),
    Column("at", DateTime, nullable=False),
    Index("ix_loginattempt_user", "orgname", "username", "at"),
    Index("ix_loginattempt_remote", "remote", "at"),
)

SESSION_LIFETIME = dt.timedelta(days=14)
THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_REMOTE = 30
_DUMMY_HASHES: dict[int, str] = {}  # per hasher: a hash to verify against for unknown users


@dataclass(frozen=True)
class SessionInfo:
    """A live session: who, in which organisation, and its CSRF token."""

    token_hash: str
    org_id: str
    user_id: str
    csrf_token: str
    expires: dt.datetime


def password_hasher(fast: bool = False) -> PasswordHasher:
    """argon2id; `fast` only for tests, where hashing cost is noise."""
    if fast:
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


def hash_token(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    session: Session,
    model: OrgModel,
    hasher: PasswordHasher,
    username: str,
    password: str,
    lastname: str,
    business_unit_id: str,
    firstname: str | None = None,
    manager_id: str | None = None,
    position_id: str | None = None,
    email: str | None = None,
) -> str:
    """A user (a systemuser record) with a password."""
    if len(password) < 8:
        raise ValidationFailed("The password must have at least 8 characters.", field="password")
    t = model.tables["systemuser"]
    taken = session.execute(
        select(t.c.systemuserid).where(t.c.organizationid == model.org_id, func.lower(t.c.username) == username.lower())
    ).first()
    if taken is not None:
        raise ValidationFailed(f"The username '{username}' is taken.", field="username")
    row = insert_record(
        session,
        model,
        system_actor(model),
        model.entity("systemuser"),
        {
            "username": username,
            "firstname": firstname,
            "lastname": lastname,
            "internalemailaddress": email,
            "businessunitid": business_unit_id,
            "parentsystemuserid": manager_id,
            "positionid": position_id,
            "isdisabled": False,
        },
    )
    user_id = str(row["systemuserid"])
    session.execute(
        insert(credential),
        {
            "systemuserid": user_id,
            "organizationid": model.org_id,
            "password_hash": hasher.hash(password),
            "changedon": utcnow(),
        },
    )
    return user_id


def is_throttled(session: Session, orgname: str, username: str, remote: str) -> bool:
    """Whether too many sign-ins failed lately for this user or from this address."""
    since = utcnow() - THROTTLE_WINDOW
    per_user = session.execute(
        select(func.count()).where(
            loginattempt.c.orgname == orgname.lower(),
            loginattempt.c.username == username.lower(),
            loginattempt.c.at >= since,
        )
    ).scalar_one()
    per_remote = session.execute(
        select(func.count()).where(loginattempt.c.remote == remote, loginattempt.c.at >= since)
    ).scalar_one()
    return per_user >= MAX_FAILURES_PER_USER or per_remote >= MAX_FAILURES_PER_REMOTE


def record_failure(session: Session, orgname: str, username: str, remote: str) -> None:
    """Note a failed sign-in (old entries are pruned as we go)."""
    now = utcnow()
    session.execute(delete(loginattempt).where(loginattempt.c.at < now - THROTTLE_WINDOW))
    session.execute(
        insert(loginattempt),
        {"orgname": orgname.lower()[:64], "username": username.lower()[:100], "remote": remote[:64], "at": now},
    )


def clear_failures(session: Session, orgname: str, username: str) -> None:
    """Forget failures after a successful sign-in."""
    session.execute(
        delete(loginattempt).where(
            loginattempt.c.orgname == orgname.lower(), loginattempt.c.username == username.lower()
        )
    )


@dataclass(frozen=True)
class Credentials:
    """What a sign-in checks a password against: the user's hash, and whether they may sign in."""

    org_id: str
    user_id: str
    password_hash: str
    enabled: bool  # the user and every business unit above them enabled


def find_credentials(session: Session, orgname: str, username: str) -> Credentials | None:
    """The credentials of (organisation, username), or None. Reads only: the password is
    checked afterwards, outside any transaction (hashing is slow on purpose)."""
    users = SYSTEM_TABLES["systemuser"]
    row = session.execute(
        select(
            users.c.systemuserid,
            users.c.organizationid,
            users.c.businessunitid,
            users.c.isdisabled,
            credential.c.password_hash,
        )
        .join(organization, organization.c.organizationid == users.c.organizationid)
        .join(credential, credential.c.systemuserid == users.c.systemuserid)
        .where(organization.c.name == orgname.lower(), func.lower(users.c.username) == username.lower())
    ).first()
    if row is None:
        return None
    disabled = row.isdisabled or in_disabled_business_unit(session, str(row.organizationid), row.businessunitid)
    return Credentials(str(row.organizationid), str(row.systemuserid), row.password_hash, not disabled)


def password_matches(hasher: PasswordHasher, found: Credentials | None, password: str) -> bool:
    """Whether `password` is the user's (and the user may sign in). Takes as long for an
    unknown user, so timing does not reveal which usernames exist."""
    if found is None:
        with contextlib.suppress(VerificationError):
            hasher.verify(_DUMMY_HASHES.setdefault(id(hasher), hasher.hash("not-a-password")), password)
        return False
    try:
        hasher.verify(found.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return found.enabled


def authenticate(
    session: Session, hasher: PasswordHasher, orgname: str, username: str, password: str
) -> tuple[str, str] | None:
    """(org id, user id) when the credentials are right and the user enabled; else None.

    Hashes inside the caller's transaction: sign-in itself uses `webapp.signin`, which does not."""
    found = find_credentials(session, orgname, username)
    if not password_matches(hasher, found, password) or found is None:
        return None
    return found.org_id, found.user_id


def in_disabled_business_unit(session: Session, org_id: str, business_unit_id: str | None) -> bool:
    """Whether a business unit, or one above it, is disabled (its people cannot sign in)."""
    units = SYSTEM_TABLES["businessunit"]
    seen: set[str] = set()
    while business_unit_id and business_unit_id not in seen:
        seen.add(business_unit_id)
        row = session.execute(
            select(units.c.parentbusinessunitid, units.c.isdisabled).where(
                units.c.organizationid == org_id, units.c.businessunitid == business_unit_id
            )
        ).first()
        if row is None:
            return False
        if row.isdisabled:
            return True
        business_unit_id = row.parentbusinessunitid
    return False


def revoke_business_unit_sessions(session: Session, org_id: str, business_unit_id: str) -> list[str]:
    """End every session of the people in a business unit and the units below it; returns who they are."""
    units, users = SYSTEM_TABLES["businessunit"], SYSTEM_TABLES["systemuser"]
    parents = dict(
        session.execute(
            select(units.c.businessunitid, units.c.parentbusinessunitid).where(units.c.organizationid == org_id)
        ).all()
    )
    below = {business_unit_id}
    grew = True
    while grew:
        more = {bu for bu, parent in parents.items() if parent in below} - below
        below |= more
        grew = bool(more)
    people = session.execute(
        select(users.c.systemuserid).where(users.c.organizationid == org_id, users.c.businessunitid.in_(below))
    ).scalars()
    ended = [str(user_id) for user_id in people]
    for user_id in ended:
        revoke_user_sessions(session, user_id)
    return ended


def start_session(session: Session, org_id: str, user_id: str) -> tuple[str, SessionInfo]:
    """A new session: returns the cookie token (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    info = SessionInfo(hash_token(token), org_id, user_id, secrets.token_urlsafe(32), now + SESSION_LIFETIME)
    session.execute(
        insert(usersession),
        {
            "tokenhash": info.token_hash,
            "organizationid": org_id,
            "systemuserid": user_id,
            "csrf_token": info.csrf_token,
            "createdon": now,
            "expireson": info.expires,
        },
    )
    return token, info


# Built once: every socket frame and request resolves its session, and building a statement
# costs more than running this one.
_LIVE_SESSION = select(
    usersession.c.tokenhash,
    usersession.c.organizationid,
    usersession.c.systemuserid,
    usersession.c.csrf_token,
    usersession.c.expireson,
).where(
    usersession.c.tokenhash == bindparam("hash"),
    usersession.c.revokedon.is_(None),
    usersession.c.expireson > bindparam("now"),
)


def load_session(session: Session, token: str | None) -> SessionInfo | None:
    """The live session a cookie token names, or None (unknown, expired or revoked)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(_LIVE_SESSION, {"hash": hash_token(token), "now": utcnow()}).first()
    if row is None:
        return None
    return SessionInfo(row.tokenhash, row.organizationid, row.systemuserid, row.csrf_token, row.expireson)


def end_session(session: Session, token_hash: str) -> None:
    """Revoke one session (sign-out)."""
    session.execute(update(usersession).where(usersession.c.tokenhash == token_hash).values(revokedon=utcnow()))


def revoke_user_sessions(session: Session, user_id: str) -> None:
    """Revoke every session of a user (password change, user disabled)."""
    session.execute(
        update(usersession)
        .where(usersession.c.systemuserid == user_id, usersession.c.revokedon.is_(None))
        .values(revokedon=utcnow())
    )


def user_summary(session: Session, model: OrgModel, user_id: str) -> dict[str, Any]:
    """Who a user is, as `GET /api/auth/me` tells it."""
    t = model.tables["systemuser"]
    row = (
        session.execute(select(t).where(t.c.organizationid == model.org_id, t.c.systemuserid == user_id))
        .mappings()
        .one()
    )
    return {
        "id": row["systemuserid"],
        "username": row["username"],
        "fullname": row["fullname"],
        "business_unit_id": row["businessunitid"],
    }


def set_password(session: Session, hasher: PasswordHasher, user_id: str, password: str) -> None:
    """Give a user a new password and end their sessions (a reset signs them out everywhere)."""
    if len(password) < 8:
        raise ValidationFailed("The password must have at least 8 characters.", field="password")
    session.execute(
        update(credential)
        .where(credential.c.systemuserid == user_id)
        .values(password_hash=hasher.hash(password), changedon=utcnow())
    )
    revoke_user_sessions(session, user_id)
