"""The change log and the one global, increasing change number.

Every write takes a change number; it becomes the record's `versionnumber` and the row's
key in `changelog`, with the fields the write changed (field-level conflicts need them).
On PostgreSQL a transaction-scoped advisory lock serialises numbering with commit order,
so a sync cursor that has read up to N never later meets a change below N committing late
(DESIGN.md §5). SQLite writers are serialised by BEGIN IMMEDIATE already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from webapp.crm import epoch
from webapp.crm.tables import changelog

CHANGE_LOCK_KEY = 7_420_001  # advisory lock id reserved for change numbering
LOCK_HOLDER = "change_lock_transaction"  # session.info: the transaction the lock was taken in


def utcnow() -> dt.datetime:
    """Now, naive UTC, whole seconds (the precision the wire format carries)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def serialise_numbering(session: Session) -> None:
    """Hold the numbering lock for the rest of this transaction (PostgreSQL).

    The lock belongs to the (sub)transaction that took it: rolling back a savepoint releases
    one taken inside it, and a commit releases it for good. So what we remember is the
    innermost transaction it was taken in, and we take it again (it is re-entrant: cheap)
    whenever that one is no longer active — a savepoint rolled back or released, or the
    session's transaction over. A plain flag on the session outlived both and let a
    transaction number changes without the lock: a cursor skip.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    taken_in = session.info.get(LOCK_HOLDER)
    if taken_in is not None and taken_in.is_active:
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHANGE_LOCK_KEY})
    session.info[LOCK_HOLDER] = session.get_nested_transaction() or session.get_transaction()


def log_change(
    session: Session,
    org_id: str,
    entity: str,
    record_id: str,
    operation: str,
    fields: Iterable[str],
    owner: tuple[str | None, str | None, str | None],
    actor_id: str | None,
    when: dt.datetime,
) -> int:
    """Record one write and return its change number (the record's new versionnumber)."""
    serialise_numbering(session)
    fields = list(fields)
    epoch.bump_for_record_write(session, org_id, entity, operation, fields)
    ownerid, owner_type, bu = owner
    result = session.execute(
        insert(changelog).returning(changelog.c.changenum),
        {
            "organizationid": org_id,
            "entity": entity,
            "recordid": record_id,
            "operation": operation,
            "changedfields": sorted(fields),
            "ownerid": ownerid,
            "ownerid__type": owner_type,
            "owningbusinessunit": bu,
            "changedon": when,
            "changedby": actor_id,
        },
    )
    return int(result.scalar_one())


def reserve_changes(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Log many creates at once (bulk loads); returns their change numbers in order."""
    serialise_numbering(session)
    if not rows:
        return []
    orgs = {r["organizationid"] for r in rows if epoch.changes_access(r["entity"], r["operation"], r["changedfields"])}
    for org_id in sorted(orgs):
        epoch.bump(session, org_id)
    start = session.execute(select(func.coalesce(func.max(changelog.c.changenum), 0))).scalar_one() + 1
    numbered = [{**r, "changenum": start + i} for i, r in enumerate(rows)]
    session.execute(insert(changelog), numbered)
    if session.get_bind().dialect.name == "postgresql":
        # Keep the identity sequence ahead of the numbers we assigned by hand.
        session.execute(
            text("SELECT setval(pg_get_serial_sequence('changelog', 'changenum'), :n)"),
            {"n": start + len(rows) - 1},
        )
    return [r["changenum"] for r in numbered]


def current_change(session: Session) -> int:
    """The highest change number committed so far (0 for an empty log)."""
    return int(session.execute(select(func.coalesce(func.max(changelog.c.changenum), 0))).scalar_one())
