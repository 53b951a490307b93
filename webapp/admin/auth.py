"""Signing in to the console (desktop), and out again. The session is the app's usual one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, request, url_for

from webapp import services
from webapp.admin.context import current, db, page
from webapp.cookies import clear_session_cookie, set_session_cookie
from webapp.security.accounts import (
    authenticate,
    clear_failures,
    end_session,
    is_throttled,
    record_failure,
    start_session,
)

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path inside the console (never another site) is a place to go back to."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("admin.dashboard")


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    """The sign-in form; on success a session cookie and back to the page asked for."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return page("signin.html", next=next_url, error="", values={})
    values = {k: (request.form.get(k) or "").strip()[:256] for k in ("org", "username")}
    password = (request.form.get("password") or "")[:256]
    missing = [label for key, label in (("org", "Organisation"), ("username", "Username")) if not values[key]]
    if not password:
        missing.append("Password")
    if missing:
        return page("signin.html", 422, next=next_url, error=f"Fill in: {', '.join(missing)}.", values=values)
    dbs = db()
    remote = request.remote_addr or "unknown"
    if is_throttled(dbs, values["org"], values["username"], remote):
        msg = "Too many failed sign-ins; wait a few minutes and try again."
        return page("signin.html", 429, next=next_url, error=msg, values=values)
    svc = services(current_app)
    found = authenticate(dbs, svc.hasher, values["org"], values["username"], password)
    if found is None:
        record_failure(dbs, values["org"], values["username"], remote)
        dbs.commit()
        msg = "The organisation, username or password is wrong."
        return page("signin.html", 401, next=next_url, error=msg, values=values)
    clear_failures(dbs, values["org"], values["username"])
    token, _ = start_session(dbs, *found)
    dbs.commit()
    return set_session_cookie(redirect(next_url), token)


@bp.post("/signout")
def signout() -> Any:
    """End this session everywhere and go back to the sign-in page."""
    dbs = db()
    token_hash = current().info.token_hash
    hub = services(current_app).hub
    end_session(dbs, token_hash)
    hub.publish(dbs, "session_ended", token_hash)  # other processes close its sockets on commit
    dbs.commit()
    hub.end_session(token_hash)
    return clear_session_cookie(redirect(url_for("admin.auth.signin")))
