"""The sync server's metrics, and `GET /metrics` in Prometheus's text format.

Every metric is defined here; the code that does the work calls one function of this module
(one line each: socket.py, channel.py, hub.py, replay.py, reconcile.py). Counts that belong to
a transaction (operations replayed, reconciliations finished) are taken only when it commits:
a frame rolled back and replayed again is counted once.

Under `outpost serve` gunicorn runs several processes: `outpost serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, each worker writes its
values there, and `/metrics` (whichever worker answers) sums them all. The open-socket gauge
counts live workers only (`livesum`): a worker that dies is marked dead by gunicorn's
`child_exit` hook (webapp/serving.py), while its counters keep counting in the totals.

Labels carry no record data, no user, device or organisation: frame types, operation
statuses and close codes. What a device chooses (the type of a frame it sends, a close code)
is kept to a fixed set, anything else counted as "other", so no device can grow the series.
Who may read: with OUTPOST_METRICS_TOKEN set, a request with `Authorization: Bearer <token>`;
without it, only a client on the loopback that came through no proxy (a request carrying a
forwarding header is refused, so a proxy on the same host does not open it to the world).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import choose_encoder
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNED_ENV = "OUTPOST_METRICS_DIR_MADE"  # set when `outpost serve` made the folder (removed on exit)
TOKEN_ENV = "OUTPOST_METRICS_TOKEN"
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
# What prometheus_client writes in the folder: only these are removed at start.
VALUE_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_\d+\.db$")

RECEIVED_TYPES = frozenset({"hello", "push", "download", "stream", "stream_ack", "pull", "reconcile", "ping", "pong"})
CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1013})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REMOVED_BUCKETS = (0, 1, 10, 100, 1000, 10000, 100000)

SESSIONS_OPENED = Counter("outpost_sync_sessions_opened", "Sync sockets accepted (past the handshake and the cap).")
SESSIONS_CLOSED = Counter("outpost_sync_sessions_closed", "Sync sockets closed, by close code.", ["code"])
CONNECTED = Gauge(
    "outpost_sync_connected_devices",
    "Sync sockets open now (one per connected device or tab), over every live worker.",
    multiprocess_mode="livesum",
)
FRAMES_RECEIVED = Counter("outpost_sync_frames_received", "Frames received from devices, by type.", ["type"])
FRAMES_SENT = Counter("outpost_sync_frames_sent", "Frames sent to devices, by type.", ["type"])
OPS = Counter("outpost_sync_ops", "Operations replayed for the first time, by result status.", ["status"])
REPLAY_SECONDS = Histogram(
    "outpost_sync_replay_seconds",
    "Server time to replay one push (a socket frame or an HTTP push), commit included.",
    ["way"],
    buckets=LATENCY_BUCKETS,
)
LIVE_PUSH_SECONDS = Histogram(
    "outpost_sync_live_push_seconds",
    "From the commit of a change (as this process learns of it) to the live changes frame sent to a device.",
    buckets=LATENCY_BUCKETS,
)
RECONCILIATIONS = Counter("outpost_sync_reconciliations", "Scope reconciliations a device finished.")
RECONCILE_REMOVED = Histogram(
    "outpost_sync_reconcile_removed_records",
    "Records the server told the device to remove, per finished scope reconciliation.",
    buckets=REMOVED_BUCKETS,
)


# --- hooks: one call each from the code that does the work ---------------------------------


def session_opened() -> None:
    """A sync socket was accepted."""
    SESSIONS_OPENED.inc()
    CONNECTED.inc()


def session_closed(code: int) -> None:
    """A sync socket closed with `code`."""
    SESSIONS_CLOSED.labels(str(code) if code in CLOSE_CODES else "other").inc()
    CONNECTED.dec()


def frame_received(kind: str | None) -> None:
    """A frame arrived: its type (None: not a readable frame)."""
    FRAMES_RECEIVED.labels("invalid" if kind is None else kind if kind in RECEIVED_TYPES else "other").inc()


def frame_sent(frame: dict[str, Any]) -> None:
    """A frame was written to a device (the server's own types only)."""
    FRAMES_SENT.labels(frame["type"]).inc()


@contextmanager
def replay_timer(way: str) -> Iterator[None]:
    """Time one push: `way` is "socket" or "http"."""
    started = time.perf_counter()
    try:
        yield
    finally:
        REPLAY_SECONDS.labels(way).observe(time.perf_counter() - started)


def live_pushed(woken: float | None, frames: list[dict[str, Any]]) -> None:
    """A wake sent `frames`; `woken` is when the first commit behind it was heard (time.monotonic)."""
    if woken is not None and any(f["type"] == "changes" for f in frames):
        LIVE_PUSH_SECONDS.observe(time.monotonic() - woken)


def ops_replayed(session: Session, statuses: list[str]) -> None:
    """Operations applied for the first time in `session`'s transaction: counted if it commits."""
    counts = {s: statuses.count(s) for s in set(statuses)}

    def count() -> None:
        for status, n in counts.items():
            OPS.labels(status).inc(n)  # the server's own statuses (the ledger's)

    on_commit(session, count)


def reconciled(session: Session, removed: int) -> None:
    """A device finished a scope reconciliation that removed `removed` records: counted on commit."""

    def count() -> None:
        RECONCILIATIONS.inc()
        RECONCILE_REMOVED.observe(removed)

    on_commit(session, count)


# --- counting on commit ----------------------------------------------------------------------

_PENDING = "outpost_metrics_pending"


def on_commit(session: Session, count: Callable[[], None]) -> None:
    """Run `count` when `session`'s transaction commits; forget it if it ends otherwise."""
    session.info.setdefault(_PENDING, []).append(count)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for count in session.info.pop(_PENDING, ()):
        count()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a rollback or close: nothing it counted happened
        session.info.pop(_PENDING, None)


# --- serving ---------------------------------------------------------------------------------


def prepare_multiprocess_dir() -> str:
    """For `outpost serve`, before gunicorn starts: the folder the workers share (the one in
    PROMETHEUS_MULTIPROC_DIR, emptied of earlier runs' values; else a new one, removed on exit)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.iterdir():
            if VALUE_FILE.match(old.name):
                old.unlink()
    else:
        folder = tempfile.mkdtemp(prefix="outpost-metrics-")
        os.environ[OWNED_ENV] = folder
    os.environ[MULTIPROC_ENV] = folder
    return folder


def worker_exited(pid: int) -> None:
    """A gunicorn worker is gone: its open sockets no longer count (its counters still do)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


def exposition(accept: str | None) -> tuple[bytes, str]:
    """Every metric, summed over the workers in multiprocess mode, and its content type: Prometheus's
    text format (version 0.0.4), or OpenMetrics to a scraper whose Accept header asks for it."""
    encode, content_type = choose_encoder(accept or "")
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated __init__
        return encode(registry), content_type
    return encode(REGISTRY), content_type


def may_read() -> bool:
    """Whether this request may read /metrics (see the module's docstring)."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def register_metrics(app: Flask) -> None:
    """Install `GET /metrics`."""
    from webapp.httperror import ApiError

    @app.get("/metrics")
    def metrics() -> Response:
        """The metrics, to a reader allowed by `may_read`."""
        if not may_read():
            raise ApiError(
                403,
                "forbidden",
                f"/metrics answers the loopback only, or a request with 'Authorization: Bearer' and {TOKEN_ENV}.",
            )
        body, content_type = exposition(request.headers.get("Accept"))
        resp = Response(body, content_type=content_type)
        resp.headers["Cache-Control"] = "no-store"
        return resp
