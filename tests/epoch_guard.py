"""A guard for the whole test suite: no transaction writes a security table without moving
the security epoch (webapp/crm/epoch.py).

Installed once per test session (tests/conftest.py) on every engine: it reads each statement
sent to the database, notes writes to the tables that decide access, and fails the commit of
a session's transaction that wrote one of them but never bumped the epoch. So a new code path that
changes roles, teams, shares or field security and forgets `epoch.bump` fails whichever test
first exercises it, with the table named.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

SECURITY_TABLES = frozenset(
    {
        "userrole",
        "teamrole",
        "roleprivilege",
        "teammembership",
        "recordshare",
        "securedattribute",
        "fieldpermission",
        "fieldprofilemember",
    }
)
EPOCH_TABLE = "securityepoch"
WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
KEY = "outpost_epoch_guard"


class EpochNotBumped(AssertionError):
    """A transaction changed what users may see without moving the security epoch."""


def _state(conn: Any) -> dict[str, Any]:
    return conn.info.setdefault(KEY, {"wrote": set(), "bumped": False})


def _reset(conn: Any) -> None:
    conn.info[KEY] = {"wrote": set(), "bumped": False}


def _before_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    m = WRITE.match(statement)
    if m is None:
        return
    table = m.group(1).lower()
    state = _state(conn)
    if table == EPOCH_TABLE:
        state["bumped"] = True
    elif table in SECURITY_TABLES:
        state["wrote"].add(table)


def _before_commit(session: Session) -> None:
    if not session.in_transaction():
        return
    conn = session.connection()
    state = _state(conn)
    if state["wrote"] and not state["bumped"]:
        tables = ", ".join(sorted(state["wrote"]))
        raise EpochNotBumped(
            f"This transaction wrote {tables} without moving the security epoch: "
            "call webapp.crm.epoch.bump in the same transaction."
        )


def install() -> None:
    """Watch every engine (idempotent)."""
    if not event.contains(Engine, "before_cursor_execute", _before_execute):
        event.listen(Engine, "before_cursor_execute", _before_execute)
        event.listen(Engine, "begin", _reset)
        event.listen(Engine, "commit", _reset)
        event.listen(Engine, "rollback", _reset)
        event.listen(Session, "before_commit", _before_commit)


def uninstall() -> None:
    """Stop watching (the guard's own test uses this)."""
    if event.contains(Engine, "before_cursor_execute", _before_execute):
        event.remove(Engine, "before_cursor_execute", _before_execute)
        event.remove(Engine, "begin", _reset)
        event.remove(Engine, "commit", _reset)
        event.remove(Engine, "rollback", _reset)
        event.remove(Session, "before_commit", _before_commit)
