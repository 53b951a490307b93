"""`POST /api/sync/push`: the queue's HTTP way in, for the service worker's Background Sync.

When the tab is closed the worker cannot hold the WebSocket, so it posts the queued operations
here (session cookie + CSRF header, as any write). The replay is the socket's: same order,
same ledger, same checks. The worker does not touch the device's records: when the app opens
again it re-sends the same operations and the ledger answers with these first results.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, current_app, jsonify

from webapp import metrics
from webapp.api.context import caller, db_session, json_body
from webapp.httperror import ApiError
from webapp.services import services
from webapp.sync import devices
from webapp.sync.replay import PushError, Replay, over_rate, push_batch

bp = Blueprint("syncpush", __name__, url_prefix="/sync")


@bp.post("/push")
def push_ops() -> Any:
    """Replay a batch for one of the caller's devices: `{results, error?}`."""
    c = caller()
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "bad_message", "The body is {device_id, ops}.")
    wait = over_rate(current_app, c.model.org_id, c.actor.user_id or "", body.get("ops"))
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            "Too many operations in a short time; nothing was applied. Send them again later.",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    dbs = db_session()
    try:
        row = devices.register(
            dbs, c.model.org_id, c.actor.user_id or "", body.get("device_id"), body.get("app_version")
        )
    except devices.DeviceError as exc:
        status = {"device_mismatch": 403, "too_many_devices": 429}.get(exc.code, 400)
        raise ApiError(status, exc.code, exc.message) from exc
    replay = Replay(dbs, c.model, c.principal, c.actor, row["deviceid"])
    try:
        with metrics.replay_timer("http"):
            results, stopped = push_batch(services(current_app).hub, replay, body.get("ops"))
    except devices.Revoked as exc:
        raise ApiError(403, "revoked", str(exc)) from None
    except PushError as exc:
        dbs.rollback()
        return jsonify({"results": [], "error": exc.frame}), 400
    out: dict[str, Any] = {"results": results}
    if stopped is not None:
        out["error"] = stopped.frame
    return jsonify(out)
