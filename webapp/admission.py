"""Admission: at most a few requests and socket frames do their work at once in a process.

Under `outpost serve` every connection is a greenlet, and a greenlet running Python and SQLite
work does not yield until it waits on the network. When 2,000 phones reconnect at once after a
restart, each one's `GET /api/auth/me`, hello and pull are all runnable together, and a plain
`GET /healthz` (a load balancer deciding whether this process lives) waits behind every one of
them. Through the gate, at most `slots` of them run at a time and the rest wait parked, in
arrival order; what stands between a light request and its turn is a few units of work, not
thousands. The same total work is done, with less switching between greenlets.

Gated: every HTTP request except `/healthz`, static files and the socket upgrade itself (whose
greenlet lives as long as the socket); the socket handler gates its handshake check and each
frame and live push (webapp/sync/socket.py). Never held while waiting on the network.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

EXTENSION = "outpost_admission"
UNGATED = frozenset({"/healthz", "/api/sync"})  # paths that never wait for a slot
UNGATED_UNDER = "/static/"


class Admission:
    """A counting gate: `slot()` waits for one of `slots` places (arrival order) while the block runs."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._places = _semaphore(slots)
        self._mine = threading.local()  # greenlet-local under gevent: whether this one holds a place

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a place while the block runs."""
        with self._places:
            self._mine.held = True
            try:
                yield
            finally:
                self._mine.held = False

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Give this request's place back while the block runs, and wait for one again after it.

        For work that queues behind a gate of its own (a sign-in waiting for a password check,
        webapp/signin.py): held places would let a crowd of sign-ins stall every other request."""
        if not getattr(self._mine, "held", False):
            yield
            return
        self._mine.held = False
        self._places.release()
        try:
            yield
        finally:
            self._places.acquire()
            self._mine.held = True


def _semaphore(slots: int) -> Any:
    """gevent's own semaphore in a gevent worker (the patched `threading` one builds a lock per
    waiter and costs more than the work it guards in a storm); the standard one elsewhere."""
    try:
        from gevent import monkey
        from gevent.lock import BoundedSemaphore
    except ImportError:  # pragma: no cover - gevent is a dependency; tests run without patching
        return threading.BoundedSemaphore(slots)
    return BoundedSemaphore(slots) if monkey.is_module_patched("threading") else threading.BoundedSemaphore(slots)


def admission(app: Any) -> Admission:
    """The app's gate, sized by its ADMISSION_SLOTS (made on first use)."""
    found = app.extensions.get(EXTENSION)
    if found is None:
        found = app.extensions.setdefault(EXTENSION, Admission(int(app.config["ADMISSION_SLOTS"])))
    return found  # type: ignore[no-any-return]


def gate_requests(app: Any) -> None:
    """Run each HTTP request (but the UNGATED) through the app's gate, up to its response."""
    inner: Callable[..., Iterable[bytes]] = app.wsgi_app
    gate = admission(app)

    def gated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path in UNGATED or path.startswith(UNGATED_UNDER):
            return inner(environ, start_response)
        with gate.slot():
            return inner(environ, start_response)

    app.wsgi_app = gated
