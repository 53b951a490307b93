"""Live push: a commit reaches the connections that may see it, in this process and others.

Each open socket holds a `Subscription` (a threading.Event plus who it belongs to). With a
fan-out (`use_fanout`, as the app has), `notify(org)` hands the commit to this process's
reader (webapp/sync/fanout.py): it reads the change log once and queues on each receiving
subscription the frames its device may see (`inbox`), then wakes only those. A subscription
marked `full` reads the change feed for its own device instead (a device not caught up, a
scope change, the listener's gap); without a fan-out every connection of the organisation is
woken that way. `end_session` / `end_user` mark the connections of a signed-out session or user
so they close with 1008.

Across processes (PostgreSQL only): a writer calls `publish(session, …)` before it commits,
which queues a `pg_notify` in the same transaction, so the message goes out only if the
commit does. One `Listener` per process (webapp/sync/notify.py), started when the first
socket subscribes, LISTENs on the channel and replays other processes' messages here. On
SQLite the feed stays in-process (one serving process).

A security change (webapp/crm/epoch.py) announces itself as kind "scope" with origin "-" from
inside its own transaction; `scope_changed` wakes the connections of the users it names (or
of the whole organisation), which then compare the epoch and reconcile their devices.

Under gunicorn's gevent worker the standard library is monkey-patched before the app is
built, so these threading primitives are gevent's: a wait parks a greenlet, not a thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.crm.epoch import NOTIFY_CHANNEL, parse_scope_key

CHANNEL = NOTIFY_CHANNEL  # the PostgreSQL NOTIFY channel
RESTART_CODE = 1012  # Service Restart: the device comes back after a random wait (docs/protocol.md)
LISTEN_WAIT_SECONDS = 5.0


class TooManyConnections(Exception):
    """The user already holds `cap` sockets in this process (PROTOCOL.md §5, close code 1013)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"at most {cap} sync connections per user")
        self.cap = cap


@dataclass(eq=False)
class Subscription:
    """One open socket: whose it is, its wake-up event, and whether its session has ended."""

    org_id: str
    user_id: str
    token_hash: str
    event: threading.Event = field(default_factory=threading.Event)
    ended: bool = False
    restarting: bool = False  # the process is stopping: close with RESTART_CODE
    woken: float | None = None  # time.monotonic() of the first change notified since the last wake
    fanout: Any = None  # the hub's FanOut (webapp/sync/fanout.py), if it has one
    follower: Any = None  # set while the fan-out decides for this device
    inbox: list[Any] = field(default_factory=list)  # fan-out Deliveries not yet sent
    full: bool = False  # the device must read the feed for itself at its next wake

    def take(self) -> tuple[list[Any], bool]:
        """The queued deliveries, and whether the device must read for itself (then reset)."""
        inbox, self.inbox = self.inbox, []
        full, self.full = self.full, False
        return inbox, full

    def read_for_itself(self) -> None:
        """Leave the fan-out; the next wake reads the feed from the device's own cursor."""
        if self.fanout is not None:
            self.fanout.unfollow(self)
        self.full = True
        self.event.set()


class Hub:
    """Who is connected, by organisation, and a way to wake them (and to end their sessions)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self.origin = uuid.uuid4().hex[:12]  # this process's mark on what it publishes
        self._listen_url: str | None = None
        self._listener: Any = None
        self.fanout: Any = None

    def use_fanout(self, db: Any, registry: Any) -> None:
        """Read each commit once for this process's devices (webapp/sync/fanout.py)."""
        from webapp.sync.fanout import FanOut

        self.fanout = FanOut(db, registry)

    def attach(self, database_url: str) -> None:
        """Use PostgreSQL LISTEN/NOTIFY at `database_url` to cross processes (no-op for SQLite)."""
        if database_url.startswith("postgresql"):
            self._listen_url = database_url

    @property
    def crosses_processes(self) -> bool:
        """Whether changes reach other processes (PostgreSQL) or stay in this one (SQLite)."""
        return self._listen_url is not None

    def subscribe(self, org_id: str, user_id: str = "", token_hash: str = "", cap: int | None = None) -> Subscription:
        """A new connection's subscription (starts this process's listener on first use).

        With `cap`: raises TooManyConnections when the user already holds that many sockets
        in this process (counted and added under one lock, so a burst cannot overshoot)."""
        sub = Subscription(org_id, user_id, token_hash, fanout=self.fanout)
        with self._lock:
            if cap is not None and sum(1 for s in self._subs.get(org_id, ()) if s.user_id == user_id) >= cap:
                raise TooManyConnections(cap)
            self._subs[org_id].add(sub)
            start = self._listen_url is not None and self._listener is None
            if start:
                from webapp.sync.notify import Listener

                self._listener = Listener(self._listen_url or "", self)
        if start:
            self._listener.start()
        if self._listener is not None:
            # The first socket waits (briefly) for LISTEN to be up, so no commit after its first
            # pull can slip by unheard; later sockets find it up already.
            self._listener.listening.wait(LISTEN_WAIT_SECONDS)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a closed connection."""
        if self.fanout is not None:
            self.fanout.unfollow(sub)
        with self._lock:
            subs = self._subs.get(sub.org_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.org_id]

    def connections(self) -> int:
        """How many sockets this process holds."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def _matching(self, org_id: str | None = None) -> list[Subscription]:
        with self._lock:
            if org_id is not None:
                return list(self._subs.get(org_id, ()))
            return [s for subs in self._subs.values() for s in subs]

    def notify(self, org_id: str) -> None:
        """Something in this organisation changed: the fan-out reads it once for the followed
        devices; the others (or all, without a fan-out) are woken to read for themselves."""
        heard = time.monotonic()
        with self._lock:
            followed = self.fanout.followers(org_id) if self.fanout is not None else 0
            loose = [] if followed == len(self._subs.get(org_id, ())) else list(self._subs.get(org_id, ()))
        for sub in loose:  # none when every device is followed: a change costs its receivers only
            if sub.follower is None:
                sub.woken = sub.woken or heard  # the live push latency starts here (webapp/metrics.py)
                sub.full = True
                sub.event.set()
        if self.fanout is not None:
            self.fanout.changed(org_id)

    def scope_changed(self, org_id: str, user_ids: list[str] | None = None) -> None:
        """What some users may see changed (the security epoch moved): wake their connections.

        `user_ids` None means everyone in the organisation. Each woken connection compares the
        epoch it last saw with `webapp.crm.epoch.current` and reconciles what its device holds.
        """
        wanted = None if user_ids is None else set(user_ids)
        for sub in self._matching(org_id):
            if wanted is None or sub.user_id in wanted:
                sub.read_for_itself()

    def wake_all(self) -> None:
        """Wake every connection (after the listener lost messages, each re-reads its feed)."""
        for sub in self._matching():
            sub.read_for_itself()

    def _end(self, subs: Iterable[Subscription]) -> int:
        ended = 0
        for sub in subs:
            sub.ended = True
            sub.event.set()
            ended += 1
        return ended

    def end_session(self, token_hash: str) -> int:
        """A session was signed out: its sockets in this process close (1008)."""
        return self._end(s for s in self._matching() if s.token_hash == token_hash)

    def end_user(self, user_id: str) -> int:
        """Every session of a user was revoked: their sockets in this process close (1008)."""
        return self._end(s for s in self._matching() if s.user_id == user_id)

    def shutdown(self) -> int:
        """The process is stopping (SIGTERM): every socket closes with RESTART_CODE, so devices
        come back spread over a few seconds instead of all at once to the next process."""
        subs = self._matching()
        for sub in subs:
            sub.restarting = True
            sub.event.set()
        return len(subs)

    def publish(self, session: Session, kind: str, key: str) -> None:
        """Tell the other processes, when `session` commits: kind "changed" (an organisation id),
        "session_ended" (a session's token hash) or "user_ended" (a user id). No-op on SQLite.

        (Kind "scope" is published by `webapp.crm.epoch.bump` itself, with the origin "-", so
        every process hears it, this one included.)"""
        if self._listen_url is None:
            return
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": f"{self.origin} {kind} {key}"},
        )

    def receive(self, payload: str) -> None:
        """A message from another process (the listener calls this)."""
        parts = payload.split(" ")
        if len(parts) != 3 or parts[0] == self.origin:
            return  # malformed, or our own: the local wake already happened
        _, kind, key = parts
        if kind == "changed":
            self.notify(key)
        elif kind == "session_ended":
            self.end_session(key)
        elif kind == "user_ended":
            self.end_user(key)
        elif kind == "scope":
            self.scope_changed(*parse_scope_key(key))

    def close(self) -> None:
        """Stop the listener (if one runs)."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        if self.fanout is not None:
            self.fanout.stop()
