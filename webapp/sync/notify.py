"""The change feed across processes: one PostgreSQL LISTEN connection per process.

A background thread (a greenlet under gevent, where psycopg waits cooperatively) holds its
own autocommit connection, LISTENs on `NOTIFY_CHANNEL` and hands every message to the hub. If
the connection drops it reconnects with back-off and then wakes every local socket, so each
re-reads its feed from its own cursor and nothing sent while it was away is missed.

The hub starts the listener (webapp/sync/hub.py imports this module, never the other way):
here the hub is only a `Receiver`, whatever has `receive` and `wake_all`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from webapp.crm.epoch import NOTIFY_CHANNEL

log = logging.getLogger("outpost.sync")
POLL_SECONDS = 1.0  # how often the thread looks at its stop flag while no message comes
MAX_BACKOFF = 10.0


class Receiver(Protocol):
    """What the listener feeds: the hub of this process."""

    def receive(self, payload: str) -> None:
        """Handle one message published by any process."""

    def wake_all(self) -> None:
        """Wake every local socket (messages may have been missed)."""


def conninfo(database_url: str) -> str:
    """A libpq connection string from the app's SQLAlchemy URL (driver name dropped)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """LISTEN on the channel and feed `hub.receive` until stopped."""

    def __init__(self, database_url: str, hub: Receiver) -> None:
        self.conninfo = conninfo(database_url)
        self.hub = hub
        self.listening = threading.Event()  # set while a LISTEN connection is up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outpost-listen", daemon=True)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish (it notices within POLL_SECONDS)."""
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                name = f"outpost-listen {os.getpid()}"  # findable in pg_stat_activity
                with psycopg.connect(self.conninfo, autocommit=True, application_name=name) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    self.listening.set()
                    if not first:
                        self.hub.wake_all()  # messages may have been lost while we were away
                    first = False
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            self.hub.receive(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("change feed listener lost its connection (%s); retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
            except Exception:  # a bug must not end live push for the whole process silently
                self.listening.clear()
                log.exception("change feed listener failed; retrying in %.1f s", backoff)
                time.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
        self.listening.clear()
