"""`GET /api/sync`: the WebSocket handler — a thin loop around `Channel`.

The handshake is checked before the upgrade (a session cookie, and an Origin equal to the
app's own), so a foreign page or a signed-out browser is refused with 403 and never gets a
socket. Frames over 1 MiB close the socket with 1009 (simple-websocket enforces the limit).
A second thread per connection waits for live changes and pushes them at once.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask, current_app, g, request
from flask_sock import ConnectionClosed, Sock

from webapp import services
from webapp.api.errors import ApiError
from webapp.security.accounts import load_session
from webapp.sync.channel import Channel, Closing

MAX_FRAME = 1 << 20
HEARTBEAT_SECONDS = 25
sock = Sock()


def check_handshake() -> None:
    """Refuse the upgrade without a live session or from a foreign origin (403, no socket)."""
    if request.path != "/api/sync":
        return
    origin = request.headers.get("Origin")
    own = request.host_url.rstrip("/")
    if origin != own:
        raise ApiError(403, "forbidden_origin", "The sync channel only accepts this app's own pages.")
    token = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
    with services(current_app).db.session() as s:
        info = load_session(s, token) if token else None
    if info is None:
        raise ApiError(403, "unauthenticated", "Sign in before opening the sync channel.")
    g.sync_session = (token, info)


def register_sync(app: Flask) -> None:
    """Install the socket route and its handshake check."""
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": MAX_FRAME, "ping_interval": None})
    app.before_request(check_handshake)
    sock.init_app(app)


@sock.route("/api/sync")
def sync_socket(ws: Any) -> None:
    """Receive frames, answer them, and push live changes until the socket closes."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    token, info = g.sync_session
    channel = Channel(app, token, info.org_id, info.user_id)
    hub = services(app).hub
    wake = hub.subscribe(info.org_id)
    lock = threading.Lock()  # one sender and one Channel user at a time
    closed = threading.Event()

    def send(frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            ws.send(json.dumps(frame, separators=(",", ":")))

    def pusher() -> None:
        while not closed.is_set():
            if not wake.wait(timeout=HEARTBEAT_SECONDS):
                with lock:
                    send([{"type": "ping"}])
                continue
            wake.clear()
            if closed.is_set():
                return
            with app.app_context(), lock:
                try:
                    send(channel.wake())
                except Closing as exc:
                    send(exc.frames)
                    ws.close(reason=exc.code)
                    closed.set()

    worker = threading.Thread(target=pusher, name="sync-push", daemon=True)
    worker.start()
    try:
        while not closed.is_set():
            text = ws.receive()
            if text is None:
                continue
            with lock:
                try:
                    send(channel.receive(text))
                except Closing as exc:
                    send(exc.frames)
                    ws.close(reason=exc.code)
                    break
    except ConnectionClosed:
        pass
    finally:
        closed.set()
        wake.set()
        hub.unsubscribe(info.org_id, wake)
        channel.close_log()
