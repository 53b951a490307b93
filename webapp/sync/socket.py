"""`GET /api/sync`: the WebSocket handler — a thin loop around `Channel`.

The handshake is checked before the upgrade (a session cookie, and an Origin equal to the
app's own), so a foreign page or a signed-out browser is refused with 403 and never gets a
socket. Frames over 1 MiB close the socket with 1009 (simple-websocket enforces the limit).
A second thread per connection (a greenlet under `outpost serve`'s gevent worker) waits on the
hub for live changes and pushes them at once; it also closes the socket with 1008 after an
`unauthenticated` error frame when the session is signed out (here or in another process)
or expires, and with 1012 (Service Restart) when the process is stopping (`Hub.shutdown`).
"""

from __future__ import annotations

import json
import threading
from functools import partial
from typing import Any

from flask import Flask, current_app, g, request
from flask_sock import ConnectionClosed, Sock

from webapp import metrics
from webapp.admission import admission
from webapp.crm.changes import utcnow
from webapp.httperror import ApiError
from webapp.security.caller import NotSignedIn, resolve
from webapp.sync.channel import Channel, Closing, error
from webapp.sync.hub import RESTART_CODE, TooManyConnections
from webapp.sync.wiring import SyncServices

MAX_FRAME = 1 << 20
TRY_AGAIN_LATER = 1013  # too many sockets for this user: the device backs off (docs/protocol.md)
TOO_MANY_MESSAGE = "This account already has {cap} sync connections open; close some apps or tabs."
HEARTBEAT_SECONDS = 25
SESSION_ENDED = error("unauthenticated", "The session has ended; sign in again.")


def check_handshake(svc: SyncServices) -> None:
    """Refuse the upgrade without a live session or from a foreign origin (403, no socket)."""
    if request.path != "/api/sync":
        return
    origin = request.headers.get("Origin")
    own = request.host_url.rstrip("/")
    if origin != own:
        raise ApiError(403, "forbidden_origin", "The sync channel only accepts this app's own pages.")
    token = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
    try:
        with admission(current_app).slot(), svc.db.session() as s:
            g.sync_caller = resolve(s, svc.registry, token)  # webapp.security.caller (no principal)
    except NotSignedIn:
        raise ApiError(403, "unauthenticated", "Sign in before opening the sync channel.") from None
    g.sync_session = (token, g.sync_caller.session_info)
    offer = request.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")
    if offer:
        narrowed = deflate_without_context_takeover(offer)
        if narrowed:
            request.environ["HTTP_SEC_WEBSOCKET_EXTENSIONS"] = narrowed
        else:
            del request.environ["HTTP_SEC_WEBSOCKET_EXTENSIONS"]


def deflate_without_context_takeover(offer: str) -> str:
    """The device's permessage-deflate offer, narrowed to no context takeover either way.

    simple-websocket accepts whatever deflate the device offers, and browsers offer it with
    context takeover: a zlib compressor (~256 KB) and decompressor kept for the whole life of
    every idle socket. Without takeover each message is compressed on its own and nothing is
    kept between messages, while a download page (one large message) still shrinks as much.
    The RFC 7692 parameters this adds may be answered by any server; other extensions, which
    the server does not implement, are dropped.
    """
    for extension in offer.split(","):
        params = [p.strip() for p in extension.split(";")]
        if params[0].lower() != "permessage-deflate":
            continue
        names = {p.split("=", 1)[0].strip().lower() for p in params[1:]}
        params += [p for p in ("server_no_context_takeover", "client_no_context_takeover") if p not in names]
        return "; ".join(params)
    return ""


def register_sync(app: Flask, svc: SyncServices) -> None:
    """Install the socket route and its handshake check, both given the app's services."""
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": MAX_FRAME, "ping_interval": None})
    app.before_request(partial(check_handshake, svc))
    sock = Sock()  # one per app, so its route holds this app's services
    sock.route("/api/sync", endpoint="sync_socket")(partial(sync_socket, svc=svc))
    sock.init_app(app)
    svc.hub.attach(app.config["DATABASE_URL"])


class WholeFrames:
    """The socket simple-websocket writes frames to, made to write each frame whole and alone.

    simple-websocket 1.1 sends a frame with one `socket.send()`, which may write only part of
    a large frame (a feed page over a busy connection; any frame under gevent) and silently
    drop the rest, corrupting the stream ("reserved bits must be 0" on the device). Here every
    frame goes out with `sendall`, one frame at a time.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        """Write the whole frame before any other."""
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def sync_socket(ws: Any, svc: SyncServices) -> None:
    """Receive frames, answer them, and push live changes until the socket closes."""
    ws.sock = WholeFrames(ws.sock)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    token, info = g.sync_session
    channel = Channel(app, token, info.org_id, info.user_id, services=svc)
    hub = svc.hub
    gate = admission(app)  # each frame's work waits its turn (webapp/admission.py); sending does not
    try:  # counted and added under one lock: a burst of sockets cannot overshoot the cap
        cap = app.config["MAX_SOCKETS_PER_USER"] if app.config["RATE_LIMITS"] else None
        sub = hub.subscribe(info.org_id, info.user_id, info.token_hash, cap=cap)
        channel.subscription = sub  # its wakes carry what the fan-out prepared (webapp/sync/fanout.py)
    except TooManyConnections as exc:
        ws.send(json.dumps(error("too_many_connections", TOO_MANY_MESSAGE.format(cap=exc.cap))))
        ws.close(reason=TRY_AGAIN_LATER)
        channel.close_log(frames_sent=1, close_code=TRY_AGAIN_LATER)
        return
    expires = info.expires.replace(tzinfo=None) if info.expires.tzinfo else info.expires
    lock = threading.Lock()  # one sender and one Channel user at a time
    closed = threading.Event()
    stats = {"sent": 0, "close_code": 1000}

    def send(frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            text = getattr(frame, "text", None)  # a fan-out frame comes serialised once for all
            ws.send(text or json.dumps(frame, separators=(",", ":")))
            stats["sent"] += 1
            metrics.frame_sent(frame)

    def close(code: int, frames: list[dict[str, Any]]) -> None:
        send(frames)
        stats["close_code"] = code
        ws.close(reason=code)
        closed.set()

    def session_over() -> bool:
        return sub.ended or utcnow() >= expires

    def pusher() -> None:
        while not closed.is_set():
            left = (expires - utcnow()).total_seconds()
            woke = sub.event.wait(timeout=max(0.0, min(HEARTBEAT_SECONDS, left)))
            if closed.is_set():
                return
            with lock:
                try:
                    if sub.restarting:
                        close(RESTART_CODE, [])
                    elif session_over():
                        close(1008, [SESSION_ENDED])
                    elif not woke:
                        send([{"type": "ping"}])
                    else:
                        sub.event.clear()
                        woken, sub.woken = sub.woken, None  # when the first commit behind this wake was heard
                        with app.app_context(), gate.slot():
                            pushed = channel.wake()
                        send(pushed)
                        metrics.live_pushed(woken, pushed)
                except Closing as exc:
                    close(exc.code, exc.frames)
                except ConnectionClosed:
                    closed.set()

    worker = threading.Thread(target=pusher, name="sync-push", daemon=True)
    worker.start()
    metrics.session_opened()
    try:
        while not closed.is_set():
            text = ws.receive()
            if text is None:
                continue
            with lock:
                if closed.is_set():
                    break
                try:
                    with gate.slot():
                        answer = channel.receive(text)
                    send(answer)
                except Closing as exc:
                    close(exc.code, exc.frames)
    except ConnectionClosed:
        if not closed.is_set():
            stats["close_code"] = int(getattr(ws, "close_reason", None) or 1005)
    finally:
        closed.set()
        sub.event.set()
        hub.unsubscribe(sub)
        channel.close_log(frames_sent=stats["sent"], close_code=stats["close_code"])
        metrics.session_closed(stats["close_code"])
