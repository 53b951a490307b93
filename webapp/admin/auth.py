"""Signing in to the console (desktop), and out again. The session is the app's usual one."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Blueprint, Response, current_app, make_response, redirect, request, url_for

from webapp.admin.context import current, db, page
from webapp.cookies import clear_session_cookie, set_session_cookie
from webapp.sameorigin import from_another_site
from webapp.security.accounts import end_session
from webapp.services import services
from webapp.signin import SignInRefused, sign_in

bp = Blueprint("auth", __name__)
SIGNIN_COOKIE = "outpost_signin"  # the sign-in form's token, repeated by the form (login CSRF)
SIGNIN_TOKEN_SECONDS = 3600
CSRF_REFUSED = "This sign-in did not come from this page's own form; try again here."


def _safe_next(target: str | None) -> str:
    """Only a path inside the console (never another site) is a place to go back to."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("admin.dashboard")


def _form_token() -> str:
    """The token of this browser's sign-in form: the one its cookie holds, else a new one."""
    token = request.cookies.get(SIGNIN_COOKIE, "")
    return token if 32 <= len(token) <= 100 else secrets.token_urlsafe(32)


def _form(status: int, next_url: str, error: str = "", values: dict[str, str] | None = None) -> Response:
    """The sign-in page, its form carrying a token that this browser's own cookie repeats.

    A page on another site can neither read the token nor send the cookie (SameSite=Strict),
    so it cannot post the form for the visitor (login CSRF, issue 17)."""
    token = _form_token()
    html, code = page("signin.html", status, next=next_url, error=error, values=values or {}, signin_token=token)
    resp = make_response(html, code)
    resp.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=SIGNIN_TOKEN_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
        path=url_for("admin.auth.signin"),
    )
    return resp


def _from_own_form() -> bool:
    """Whether this POST comes from the console's own form in this browser."""
    if from_another_site():
        return False
    sent, kept = request.form.get("csrf_token", ""), request.cookies.get(SIGNIN_COOKIE, "")
    return bool(sent) and bool(kept) and hmac.compare_digest(sent, kept)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    """The sign-in form; on success a session cookie and back to the page asked for."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return _form(200, next_url)
    values = {k: (request.form.get(k) or "").strip()[:256] for k in ("org", "username")}
    if not _from_own_form():
        return _form(403, next_url, CSRF_REFUSED, values)
    password = (request.form.get("password") or "")[:256]
    missing = [label for key, label in (("org", "Organisation"), ("username", "Username")) if not values[key]]
    if not password:
        missing.append("Password")
    if missing:
        return _form(422, next_url, f"Fill in: {', '.join(missing)}.", values)
    try:
        signed = sign_in(current_app, values["org"], values["username"], password, request.remote_addr or "unknown")
    except SignInRefused as exc:
        refused = _form(exc.status, next_url, exc.message, values)
        if exc.retry_after:
            refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    token = signed.token
    resp = set_session_cookie(redirect(next_url), token)
    resp.delete_cookie(SIGNIN_COOKIE, path=url_for("admin.auth.signin"))
    return resp


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
