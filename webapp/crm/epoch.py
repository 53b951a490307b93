"""The security epoch: a version number of everything that decides what a user may see or do.

Record writes have their change numbers (`webapp.crm.changes`); the rules around the records
have this. Every change that can alter a user's access — a role's privileges or depth, a
user's or team's roles, team membership, a manager, a position, a business unit (of a user or
a team; created, moved, disabled or enabled), a share granted or revoked, an owner assigned,
field security (secured fields, profiles, grants, members), the offline profile's entities
and filters, the hierarchy settings — calls `bump` in the SAME transaction as the change, so
the number moves exactly when the change commits and never when it rolls back.

Rows in `securityepoch`: one per organisation (`principalid` = `ORG`, i.e. ""), bumped by
changes whose reach is the whole organisation (a role's grid, the business unit tree, the
hierarchy, field security, the offline profile), and one per user, bumped by changes that
touch only some users (their roles or teams, a share to them or to their team, an owner).

How to use it:

- `current(session, org_id, user_id) -> int` is the user's epoch: the organisation's row plus
  the user's row (two primary-key reads). Both only grow, so the sum grows whenever either
  does: a cache of anything derived from the rules (a loaded `Principal`, a device's verified
  scope) stores the number it was built at and is stale as soon as `current` differs. This is
  how a consumer notices a change made in another process without any message — on SQLite an
  `outpost` command is another process with no NOTIFY.
- `bump(session, org_id, users=None)`: call it inside the writing transaction. `users=None`
  means everyone in the organisation. On PostgreSQL it also queues, in the same transaction,
  `pg_notify(NOTIFY_CHANNEL, "- scope <org_id>[:<user>,<user>…]")` (see `scope_payload`), so
  every serving process hears it once the change commits (`webapp.sync.hub` handles the
  "scope" kind); the "-" origin means "from no serving process": every process, the
  writer's included, acts on it.
- `bump_members(session, org_id, team_id)`: bump the users of a team (a team's roles, a share
  to a team).

A change that forgets to bump is caught by the test suite: `tests/epoch_guard.py` fails any
transaction that writes a security table without bumping, and `tests/test_security_epoch.py`
checks, per kind of change and per admin page and CLI command, that the number moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from webapp.crm.tables import securityepoch, teammembership

ORG = ""  # the principal id of an organisation's own row
NOTIFY_CHANNEL = "outpost_sync"  # the PostgreSQL NOTIFY channel the hub listens on
MAX_NOTIFY_USERS = 100  # more users than this are announced as the whole organisation
# Structure entities whose writes change access, and the attributes that matter (creates and
# deletes always do). A change to anything else (a name, an email) leaves access as it was.
STRUCTURE_FIELDS: dict[str, frozenset[str]] = {
    "systemuser": frozenset({"businessunitid", "parentsystemuserid", "positionid", "isdisabled"}),
    "team": frozenset({"businessunitid"}),
    "businessunit": frozenset({"parentbusinessunitid", "isdisabled"}),
    "position": frozenset({"parentpositionid"}),
}


# Built once: a statement read on every frame should not pay for being built each time.
_CURRENT = select(func.coalesce(func.sum(securityepoch.c.epoch), 0)).where(
    securityepoch.c.organizationid == bindparam("org"),
    securityepoch.c.principalid.in_([bindparam("everyone"), bindparam("user")]),
)


def current(session: Session, org_id: str, user_id: str) -> int:
    """The user's epoch: grows whenever anything deciding their access changes (0 before any)."""
    found = session.execute(_CURRENT, {"org": org_id, "everyone": ORG, "user": user_id}).scalar_one()
    return int(found)


def bump(session: Session, org_id: str, users: Iterable[str] | None = None) -> None:
    """Move the epoch of these users (None: of the whole organisation), in the caller's transaction."""
    principals = [ORG] if users is None else sorted(set(users))  # sorted: a stable lock order
    if not principals:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(securityepoch).values(
        [{"organizationid": org_id, "principalid": p, "epoch": 1, "changedon": now} for p in principals]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["organizationid", "principalid"],
        set_={"epoch": securityepoch.c.epoch + 1, "changedon": now},
    )
    session.execute(stmt)
    if dialect == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": scope_payload(org_id, None if users is None else principals)},
        )


def bump_members(session: Session, org_id: str, team_id: str) -> None:
    """Move the epoch of every member of a team."""
    members = session.execute(select(teammembership.c.systemuserid).where(teammembership.c.teamid == team_id)).scalars()
    bump(session, org_id, list(members))


def changes_access(entity: str, operation: str, fields: Iterable[str]) -> bool:
    """Whether this record write changes access: a structure record created, deleted or moved."""
    watched = STRUCTURE_FIELDS.get(entity)
    return watched is not None and (operation in ("create", "delete") or bool(watched.intersection(fields)))


def bump_for_record_write(session: Session, org_id: str, entity: str, operation: str, fields: Iterable[str]) -> None:
    """Bump the organisation when a structure record (user, team, unit, position) changes access."""
    if changes_access(entity, operation, fields):
        bump(session, org_id)


def scope_payload(org_id: str, users: list[str] | None) -> str:
    """The NOTIFY payload: `- scope <org>` or `- scope <org>:<user>,<user>` (see `parse_scope_key`)."""
    if users is None or len(users) > MAX_NOTIFY_USERS:
        return f"- scope {org_id}"
    return f"- scope {org_id}:{','.join(users)}"


def parse_scope_key(key: str) -> tuple[str, list[str] | None]:
    """(organisation, users or None for everyone) from the key of a "scope" message."""
    org_id, _, users = key.partition(":")
    return org_id, [u for u in users.split(",") if u] if users else None
