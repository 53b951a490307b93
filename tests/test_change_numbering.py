"""Change numbers follow commit order (DESIGN.md §5): a cursor that has read up to N never later
meets a change below N committing late — even after a savepoint was rolled back.

On PostgreSQL a transaction numbers its changes under an advisory lock. Rolling back a
savepoint releases a lock taken inside it; a transaction that went on numbering after that
without taking the lock again let a second writer commit a higher number first, so a sync
cursor skipped the first one's change for ever (a replayed command that wrote and was then
refused, followed by an op that applied, did exactly that).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.conftest import Org
from webapp.crm import changes
from webapp.crm.changes import current_change, log_change, utcnow
from webapp.crm.tables import changelog
from webapp.services import services

A2 = "00000000-0000-0000-0000-0000000000a2"
B = "00000000-0000-0000-0000-00000000000b"


def _log(s: Session, org: Org, record_id: str) -> int:
    return log_change(
        s, org.org_id, "account", record_id, "update", ["name"], (org.alice, "systemuser", org.east_bu), None, utcnow()
    )


@pytest.fixture(autouse=True)
def own_lock_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock key of this test's own: other test runs on the same server number under the real one."""
    monkeypatch.setattr(changes, "CHANGE_LOCK_KEY", random.randrange(1 << 40, 1 << 50))


def _postgres(app: Flask) -> None:
    if services(app).db.is_sqlite:
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE; the lock is PostgreSQL's")


def _lock_free_elsewhere(app: Flask) -> bool:
    """Whether another connection could take the numbering lock right now (and lets it go)."""
    with services(app).db.write_engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": changes.CHANGE_LOCK_KEY}).scalar())
        conn.rollback()
        return got


def test_a_change_numbered_after_a_savepoint_rolled_back_holds_the_lock_again(app: Flask, org: Org) -> None:
    _postgres(app)
    with services(app).db.session(write=True) as s:
        savepoint = s.begin_nested()
        _log(s, org, "00000000-0000-0000-0000-000000000001")
        assert not _lock_free_elsewhere(app)
        savepoint.rollback()  # releases the lock taken inside the savepoint
        _log(s, org, "00000000-0000-0000-0000-000000000002")
        assert not _lock_free_elsewhere(app), "numbering went on without the lock"
        s.commit()
    assert _lock_free_elsewhere(app)


def test_a_session_used_again_after_a_commit_takes_the_lock_again(app: Flask, org: Org) -> None:
    _postgres(app)
    with services(app).db.session(write=True) as s:
        _log(s, org, "00000000-0000-0000-0000-000000000001")
        s.commit()
        _log(s, org, "00000000-0000-0000-0000-000000000002")
        assert not _lock_free_elsewhere(app), "the second transaction numbered without the lock"
        s.rollback()


def test_no_cursor_skips_a_change_after_a_savepoint_rolled_back(app: Flask, org: Org) -> None:
    """Writer A: savepoint, change, roll back; change. Writer B: one change. A reader's cursor
    taken in between must never be above a change that commits after it."""
    _postgres(app)
    db = services(app).db
    b_pid: list[int] = []
    b_done = threading.Event()
    errors: list[BaseException] = []

    def writer_b() -> None:
        try:
            with db.session(write=True) as s:
                b_pid.append(int(s.execute(text("SELECT pg_backend_pid()")).scalar_one()))
                _log(s, org, B)
                s.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            b_done.set()

    with db.session(write=True) as a:
        savepoint = a.begin_nested()
        _log(a, org, "00000000-0000-0000-0000-0000000000a1")
        savepoint.rollback()
        _log(a, org, A2)
        thread = threading.Thread(target=writer_b)
        thread.start()
        assert _wait_until(lambda: b_done.is_set() or _waits_for_lock(app, b_pid)), "writer B neither ran nor waited"
        with db.session() as reader:
            cursor = current_change(reader)
        a.commit()
    thread.join(timeout=30)
    assert not errors, errors
    with db.session() as s:
        numbers = s.execute(select(changelog.c.changenum).where(changelog.c.recordid.in_([A2, B]))).scalars().all()
    assert len(numbers) == 2
    assert all(n > cursor for n in numbers), f"a change numbered at or below the cursor {cursor} committed after it"


def _waits_for_lock(app: Flask, pid: list[int]) -> bool:
    if not pid:
        return False
    with services(app).db.session() as s:
        waiting = s.execute(
            text("SELECT count(*) FROM pg_locks WHERE pid = :p AND locktype = 'advisory' AND NOT granted"),
            {"p": pid[0]},
        ).scalar_one()
    return bool(waiting)


def _wait_until(condition: Any, limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
