"""Per-request state: the database session, the signed-in user, CSRF.

A request that may write gets a write session (BEGIN IMMEDIATE on SQLite); views commit
explicitly, and whatever was not committed is rolled back at teardown.
"""

from __future__ import annotations

import hmac
import math
from typing import Any

from flask import current_app, g, request
from sqlalchemy.orm import Session

from webapp.httperror import ApiError
from webapp.jsonvalues import BadValue, check_value
from webapp.ratelimit import limits
from webapp.security.accounts import SessionInfo, load_session
from webapp.security.caller import Caller, NotSignedIn, SignedIn, with_principal
from webapp.security.caller import signed_in as active_user
from webapp.security.principals import principals
from webapp.services import services

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_EXEMPT = {"api.auth.login"}
RATE_EXEMPT = {"api.auth.logout"}  # signing out always works


def db_session() -> Session:
    """This request's database session (created on first use)."""
    if "dbs" not in g:
        g.dbs = services(current_app).db.session(write=request.method in WRITE_METHODS)
    return g.dbs  # type: ignore[no-any-return]


def close_db_session(_exc: BaseException | None = None) -> None:
    """Roll back anything uncommitted and release the connection."""
    dbs = g.pop("dbs", None)
    if dbs is not None:
        dbs.close()


def session_info() -> SessionInfo | None:
    """The live session named by the cookie, if any."""
    if "session_info" not in g:
        token = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
        g.session_info = load_session(db_session(), token) if token else None
    return g.session_info  # type: ignore[no-any-return]


def signed_in() -> SignedIn:
    """The signed-in, still active user (webapp.security.caller), or a 401; without their
    security principal, for a request that needs no security check."""
    info = session_info()
    if info is None:
        raise ApiError(401, "unauthenticated", "Sign in first.")
    try:
        return active_user(db_session(), services(current_app).registry, info)
    except NotSignedIn:
        raise ApiError(401, "unauthenticated", "This account is no longer active; sign in again.") from None


def caller() -> Caller:
    """The signed-in caller with their security principal (kept per process, per user), or a 401."""
    if "caller" in g:
        return g.caller  # type: ignore[no-any-return]
    g.caller = with_principal(db_session(), principals(current_app), signed_in())
    return g.caller  # type: ignore[no-any-return]


def commit() -> None:
    """Commit this request's writes, then wake the organisation's sync connections (in this
    process at once; in other processes through PostgreSQL NOTIFY, sent only if the commit is)."""
    c = g.get("caller")
    hub = services(current_app).hub
    if c is not None:
        hub.publish(db_session(), "changed", c.model.org_id)
    db_session().commit()
    if c is not None:
        hub.notify(c.model.org_id)


def check_csrf() -> Any:
    """Every state-changing call needs a session and the session's X-CSRF-Token."""
    if request.method not in WRITE_METHODS or request.endpoint in CSRF_EXEMPT:
        return None
    info = session_info()
    if info is None:
        raise ApiError(401, "unauthenticated", "Sign in first.")
    sent = request.headers.get("X-CSRF-Token", "")
    if not sent or not hmac.compare_digest(sent, info.csrf_token):
        raise ApiError(403, "csrf_failed", "The X-CSRF-Token header is missing or wrong; nothing was changed.")
    if current_app.config["RATE_LIMITS"] and request.endpoint not in RATE_EXEMPT:
        wait = limits(current_app).http_writes.take((info.org_id, info.user_id))
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                "Too many changes in a short time; nothing was changed. Try again shortly.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
    return None


def check_read_rate(c: Caller) -> None:
    """Before a page is read: 429 while the user's bucket of records read is in debt (issue 17:
    `$top=5000` in a tight loop). `charge_reads` spends what each page returned."""
    if not current_app.config["RATE_LIMITS"]:
        return
    wait = limits(current_app).http_reads.ready((c.model.org_id, c.actor.user_id or ""))
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            "Too many records read in a short time; try again shortly.",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )


def charge_reads(c: Caller, records: int) -> None:
    """Spend the records a page returned from the user's bucket."""
    if current_app.config["RATE_LIMITS"]:
        limits(current_app).http_reads.charge((c.model.org_id, c.actor.user_id or ""), records)


def json_body() -> Any:
    """The request's JSON body, or a 400 that says why it is not acceptable."""
    if not request.data:
        raise ApiError(400, "bad_request", "The request needs a JSON body.")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes (silent covers only ValueError)
        data = None
    if data is None:
        raise ApiError(400, "bad_request", "The body is not valid JSON.")
    try:
        check_value(data)  # numbers and text every column and encoder can hold
    except BadValue as exc:
        raise ApiError(400, "bad_request", f"The body holds a value the server cannot store: {exc.message}") from None
    return data
