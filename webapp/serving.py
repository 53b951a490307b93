"""Hooks gunicorn runs around the app under `outpost serve` (`--config python:webapp.serving`).

A graceful stop (SIGTERM: a deploy, a restart) first closes every sync socket with 1012
(Service Restart), so phones come back after a random wait (docs/protocol.md) rather than
holding a socket the old worker is about to cut or all reconnecting in the same instant.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import gevent

from webapp import services


def post_worker_init(worker: Any) -> None:
    """In each worker, once the app is loaded: on SIGTERM, close the sockets, then stop as usual."""
    app = worker.wsgi

    def on_term(signum: int, frame: FrameType | None) -> None:
        worker.handle_exit(signum, frame)  # stop accepting; gunicorn waits for open requests
        # Not inside the handler, which may run in gevent's loop where nothing may block.
        gevent.spawn(services(app).hub.shutdown)

    signal.signal(signal.SIGTERM, on_term)
