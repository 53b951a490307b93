"""Live push inside one process: a commit wakes every connection of that organisation.

Each connection owns a threading.Event; `notify(org)` sets the events of that organisation's
connections, and each connection then reads the change feed for its own device and user.
(Across processes, PostgreSQL LISTEN/NOTIFY feeds `notify` — see the scale work.)
"""

from __future__ import annotations

import threading
from collections import defaultdict


class Hub:
    """Who is connected, by organisation, and a way to wake them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = defaultdict(set)

    def subscribe(self, org_id: str) -> threading.Event:
        """A new connection's wake-up event."""
        event = threading.Event()
        with self._lock:
            self._events[org_id].add(event)
        return event

    def unsubscribe(self, org_id: str, event: threading.Event) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._events[org_id].discard(event)
            if not self._events[org_id]:
                del self._events[org_id]

    def notify(self, org_id: str) -> None:
        """Something in this organisation changed: wake its connections."""
        with self._lock:
            events = list(self._events.get(org_id, ()))
        for event in events:
            event.set()
