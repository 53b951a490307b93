"""Sign-in, sign-out and "who am I" (PROTOCOL.md §3: sessions live on the server)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from webapp.api.context import db_session, json_body, session_info, signed_in
from webapp.cookies import clear_session_cookie, set_session_cookie
from webapp.crm.tables import organization
from webapp.httperror import ApiError
from webapp.sameorigin import from_another_site
from webapp.security.accounts import end_session, user_summary
from webapp.services import services
from webapp.signin import SignInRefused, sign_in

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _org_summary(org_id: str) -> dict[str, Any]:
    row = (
        db_session()
        .execute(
            select(
                organization.c.organizationid, organization.c.name, organization.c.friendlyname, organization.c.settings
            ).where(organization.c.organizationid == org_id)
        )
        .one()
    )
    # pin_required rides with the identity, so the app knows before it opens the store offline.
    settings = row.settings or {}
    pin = bool(settings.get("offline", {}).get("pin_required", False))
    return {"id": row.organizationid, "name": row.name, "friendly_name": row.friendlyname, "pin_required": pin}


@bp.post("/login")
def login() -> Any:
    """Check the credentials; on success start a session and set its cookie.

    Never from another site's page (login CSRF): a page elsewhere must not sign the visitor's
    browser into an account of its choosing."""
    if from_another_site():
        raise ApiError(403, "forbidden_origin", "Sign in from this app's own pages.")
    body = json_body()
    fields = {}
    for key in ("org", "username", "password"):
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, str) or not value or len(value) > 256:
            raise ApiError(400, "bad_request", f"'{key}' is required (a non-empty string).")
        fields[key] = value
    try:
        signed = sign_in(
            current_app, fields["org"], fields["username"], fields["password"], request.remote_addr or "unknown"
        )
    except SignInRefused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise ApiError(exc.status, exc.code, exc.message, headers) from None
    dbs = db_session()
    org_id, user_id = signed.info.org_id, signed.info.user_id
    model = services(current_app).registry.model(dbs, org_id)
    body_out = {
        "user": user_summary(dbs, model, user_id),
        "org": _org_summary(org_id),
        "csrf_token": signed.info.csrf_token,
    }
    return set_session_cookie(jsonify(body_out), signed.token)


@bp.post("/logout")
def logout() -> Any:
    """End this session (the cookie stops working everywhere at once, and its sockets close)."""
    info = session_info()
    if info is not None:
        dbs = db_session()
        hub = services(current_app).hub
        end_session(dbs, info.token_hash)
        hub.publish(dbs, "session_ended", info.token_hash)  # other processes close theirs on commit
        dbs.commit()
        hub.end_session(info.token_hash)
    return clear_session_cookie(jsonify({"signed_out": True}))


@bp.get("/me")
def me() -> Any:
    """Who is signed in, their organisation, and the CSRF token for state-changing calls."""
    who = signed_in()  # no principal: a phone asks this before every reconnect
    info, model = who.session_info, who.model
    return jsonify(
        {
            "user": user_summary(db_session(), model, info.user_id),
            "org": _org_summary(model.org_id),
            "csrf_token": info.csrf_token,
        }
    )
