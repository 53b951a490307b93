"""The hub's bookkeeping, in-process: who is woken, whose sessions end, what crosses processes."""

from __future__ import annotations

from typing import Any

from webapp.sync.hub import Hub


class RecordingSession:
    """Stands in for a SQLAlchemy session: records what would be executed in its transaction."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, dict[str, Any]]] = []

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        self.executed.append((str(statement), params))


def test_notify_wakes_only_that_organisations_connections() -> None:
    hub = Hub()
    a = hub.subscribe("org-a", "u1", "t1")
    b = hub.subscribe("org-b", "u2", "t2")
    hub.notify("org-a")
    assert a.event.is_set() and not b.event.is_set()
    assert not a.ended
    hub.unsubscribe(a)
    hub.unsubscribe(b)
    assert hub.connections() == 0


def test_ending_a_session_or_a_user_marks_and_wakes_only_their_connections() -> None:
    hub = Hub()
    mine = [hub.subscribe("org", "u1", "t1"), hub.subscribe("org", "u1", "t1")]
    same_user_other_session = hub.subscribe("org", "u1", "t2")
    someone_else = hub.subscribe("org", "u2", "t3")
    assert hub.end_session("t1") == 2
    assert all(s.ended and s.event.is_set() for s in mine)
    assert not same_user_other_session.ended and not someone_else.ended
    assert hub.end_user("u1") == 3
    assert same_user_other_session.ended and not someone_else.ended


def test_on_sqlite_nothing_is_published_and_on_postgresql_a_notify_joins_the_transaction() -> None:
    local = Hub()
    local.attach("sqlite:////tmp/x.db")
    session = RecordingSession()
    local.publish(session, "changed", "org")  # type: ignore[arg-type]
    assert session.executed == [] and not local.crosses_processes
    shared = Hub()
    shared.attach("postgresql+psycopg://postgres@127.0.0.1/test")
    shared.publish(session, "session_ended", "hash")  # type: ignore[arg-type]
    ((sql, params),) = session.executed
    assert "pg_notify" in sql
    assert params == {"channel": "outpost_sync", "payload": f"{shared.origin} session_ended hash"}


def test_messages_from_other_processes_are_applied_and_our_own_ignored() -> None:
    hub = Hub()
    sub = hub.subscribe("org", "u1", "t1")
    hub.receive(f"{hub.origin} changed org")  # our own: the local wake already happened
    assert not sub.event.is_set()
    hub.receive("elsewhere changed org")
    assert sub.event.is_set() and not sub.ended
    hub.receive("elsewhere bogus")  # malformed: ignored
    hub.receive("elsewhere session_ended t1")
    assert sub.ended
