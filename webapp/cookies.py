"""The session cookie, set at sign-in and cleared at sign-out, the same for the API and the console."""

from __future__ import annotations

from typing import TypeVar

from flask import current_app
from werkzeug.wrappers import Response

from webapp.security.accounts import SESSION_LIFETIME

R = TypeVar("R", bound=Response)  # a Flask or a plain Werkzeug response (a redirect), handed back as it came


def set_session_cookie(resp: R, token: str) -> R:
    """HttpOnly, SameSite=Lax, the whole site, for the session's lifetime; Secure when configured."""
    resp.set_cookie(
        current_app.config["SESSION_COOKIE_NAME"],
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
        path="/",
    )
    return resp


def clear_session_cookie(resp: R) -> R:
    """Delete the cookie and tell the browser to drop the site's cookies.

    Only cookies: "storage" would also delete the device's queue of unsynced work and the
    offline app; "Sign out and clear this device" deletes the organisation's store itself.
    """
    resp.delete_cookie(current_app.config["SESSION_COOKIE_NAME"], path="/")
    resp.headers["Clear-Site-Data"] = '"cookies"'
    return resp
