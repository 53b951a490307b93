"""`/api/device-keys/<device_id>`: the server-held copy of a device store's data key (DESIGN.md §6).

PUT keeps it when the user sets the app PIN; POST .../recover gives it back for "Forgot PIN"
to the device's own user, who must give the password again (a phone left signed in does not
hand its key to whoever holds it); DELETE forgets it when the device deletes the store.
Every call needs the session and the CSRF header, like any other write.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from webapp.api.context import caller, db_session, json_body
from webapp.httperror import ApiError
from webapp.security.accounts import (
    THROTTLE_WINDOW,
    clear_failures,
    find_credentials,
    is_throttled,
    password_matches,
    record_failure,
)
from webapp.services import services
from webapp.sync.devicekeys import DeviceKeyError, delete_key, recover_key, store_key

bp = Blueprint("devicekeys", __name__, url_prefix="/device-keys")


def _fail(exc: DeviceKeyError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@bp.put("/<device_id>")
def put_key(device_id: str) -> Any:
    """Keep the data key of one of the caller's devices: 201 when new, 200 when replaced."""
    c = caller()
    body = json_body()
    dbs = db_session()
    try:
        created = store_key(
            dbs, c.model.org_id, c.actor.user_id or "", device_id, body.get("key") if isinstance(body, dict) else None
        )
    except DeviceKeyError as exc:
        raise _fail(exc) from exc
    dbs.commit()
    return jsonify({"device_id": device_id, "stored": True}), 201 if created else 200


@bp.post("/<device_id>/recover")
def recover(device_id: str) -> Any:
    """The data key back, for the signed-in owner of the device who gives the password again."""
    c = caller()
    body = json_body()
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(password, str) or not password or len(password) > 256:
        raise ApiError(400, "bad_request", "'password' is required (a non-empty string).")
    dbs = db_session()
    users = c.model.tables["systemuser"]
    username = dbs.execute(
        users.select().with_only_columns(users.c.username).where(users.c.systemuserid == c.actor.user_id)
    ).scalar_one()
    orgname = c.model.name
    remote = request.remote_addr or "unknown"
    if is_throttled(dbs, orgname, username, remote):
        retry = str(int(THROTTLE_WINDOW.total_seconds()))
        raise ApiError(429, "throttled", "Too many failed attempts; wait and try again.", {"Retry-After": retry})
    found = find_credentials(dbs, orgname, username)
    dbs.rollback()  # end the transaction (on SQLite, the write lock) before the slow hash: issue 17
    right = password_matches(services(current_app).hasher, found, password)
    if not right or found is None or (found.org_id, found.user_id) != (c.model.org_id, c.actor.user_id):
        record_failure(dbs, orgname, username, remote)
        dbs.commit()
        raise ApiError(403, "invalid_credentials", "The password is wrong.")
    clear_failures(dbs, orgname, username)
    try:
        key = recover_key(dbs, c.model.org_id, c.actor.user_id or "", device_id)
    except DeviceKeyError as exc:
        dbs.commit()
        raise _fail(exc) from exc
    dbs.commit()
    resp = jsonify({"device_id": device_id, "key": key})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.delete("/<device_id>")
def forget(device_id: str) -> Any:
    """Forget the data key of one of the caller's devices (its store was deleted): 204."""
    c = caller()
    dbs = db_session()
    try:
        delete_key(dbs, c.model.org_id, c.actor.user_id or "", device_id)
    except DeviceKeyError as exc:
        raise _fail(exc) from exc
    dbs.commit()
    return "", 204
