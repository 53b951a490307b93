"""Hooks gunicorn runs around the app under `outpost serve` (`--config python:webapp.serving`).

A graceful stop (SIGTERM: a deploy, a restart) first closes every sync socket with 1012
(Service Restart), so phones come back after a random wait (docs/protocol.md) rather than
holding a socket the old worker is about to cut or all reconnecting in the same instant.
The metrics' shared folder (webapp/metrics.py) follows the workers: a dead worker's open
sockets stop counting, and a folder `outpost serve` made is removed when the server stops.
"""

from __future__ import annotations

import os
import shutil
import signal
from types import FrameType
from typing import Any

import gevent

from webapp import metrics
from webapp.services import services


def post_worker_init(worker: Any) -> None:
    """In each worker, once the app is loaded: on SIGTERM, close the sockets, then stop as usual."""
    app = worker.wsgi

    def on_term(signum: int, frame: FrameType | None) -> None:
        worker.handle_exit(signum, frame)  # stop accepting; gunicorn waits for open requests
        # Not inside the handler, which may run in gevent's loop where nothing may block.
        gevent.spawn(services(app).hub.shutdown)

    signal.signal(signal.SIGTERM, on_term)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exits: its open sockets leave the connected-devices gauge."""
    metrics.worker_exited(worker.pid)


def on_exit(server: Any) -> None:
    """In the master, at the very end: remove the metrics folder if `outpost serve` made it."""
    folder = os.environ.get(metrics.OWNED_ENV)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
