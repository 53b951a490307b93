"""Per-request state of the administrator's pages: database session, the signed-in
administrator, the form's CSRF token, the audit entry, and error pages in HTML.

The pages share the app's server-side sessions (the same cookie as the phone app and the
API). Without a session a page redirects to the sign-in page; a signed-in user without the
System Administrator role gets 403 on every page; every POST carries the session's CSRF
token as the hidden field `csrf_token` (PROTOCOL.md §3).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Response, abort, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm.registry import OrgModel
from webapp.security import audit
from webapp.security.accounts import SessionInfo
from webapp.security.caller import NotSignedIn, resolve, with_principal
from webapp.security.principals import principals
from webapp.security.scope import Principal
from webapp.services import services

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_ENDPOINTS = {"admin.auth.signin"}
CSRF_REFUSED = "The form's security token is missing or out of date; reload the page and try again."


@dataclass
class Admin:
    """The signed-in administrator of this request."""

    info: SessionInfo
    model: OrgModel
    principal: Principal
    username: str


def db() -> Session:
    """This request's database session (a write session for POST)."""
    if "admin_dbs" not in g:
        g.admin_dbs = services(current_app).db.session(write=request.method in WRITE_METHODS)
    return g.admin_dbs  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    """Roll back anything uncommitted and release the connection."""
    dbs = g.pop("admin_dbs", None)
    if dbs is not None:
        dbs.close()


def current() -> Admin:
    """The administrator (the guard has checked there is one)."""
    return g.admin  # type: ignore[no-any-return]


def guard() -> Any:
    """Before every admin page: a session (else sign-in), the admin role (else 403), CSRF on POST."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    token = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
    try:
        who = resolve(db(), services(current_app).registry, token)  # webapp.security.caller
    except NotSignedIn as exc:
        if exc.reason == "account":
            return redirect(url_for("admin.auth.signin"))
        target = request.full_path if request.method == "GET" else url_for("admin.dashboard")
        return redirect(url_for("admin.auth.signin", next=target.rstrip("?")))
    c = with_principal(db(), principals(current_app), who)
    if not c.principal.is_admin:
        abort(403)
    g.admin = Admin(c.session_info, c.model, c.principal, c.username)
    if request.method in WRITE_METHODS:
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, c.session_info.csrf_token):
            abort(403, CSRF_REFUSED)
    return None


def template_globals() -> dict[str, Any]:
    """What every admin template sees: the administrator and the CSRF token."""
    admin = g.get("admin")
    return {"admin": admin, "csrf_token": admin.info.csrf_token if admin else ""}


def commit(action: str, target: str, details: dict[str, Any] | None = None, signed_out: Iterable[str] = ()) -> None:
    """Write the audit entry for this change and commit both together, then wake the devices.

    `signed_out`: users whose sessions the change ended; their open sockets close (1008), in
    this process and, through the hub's NOTIFY, in the others.
    """
    admin = current()
    dbs = db()
    hub = services(current_app).hub
    ended = list(signed_out)
    audit.record(dbs, admin.model.org_id, admin.info.user_id, action, target, details)
    hub.publish(dbs, "changed", admin.model.org_id)  # other processes, on commit
    for user_id in ended:
        hub.publish(dbs, "user_ended", user_id)
    dbs.commit()
    services(current_app).registry.forget(admin.model.org_id)
    hub.notify(admin.model.org_id)
    for user_id in ended:
        hub.end_user(user_id)


def model() -> OrgModel:
    """The administrator's organisation as it is now (reloaded after a change)."""
    return services(current_app).registry.model(db(), current().model.org_id)


def done(endpoint: str, notice: str, **values: Any) -> Response:
    """Redirect after a successful POST, with a notice for the next page."""
    url = url_for(endpoint, **values)
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}{urlencode({'notice': notice})}")  # type: ignore[return-value]


def page(template: str, status: int = 200, **values: Any) -> tuple[str, int]:
    """Render an admin page."""
    return render_template(f"admin/{template}", notice=request.args.get("notice", "")[:300], **values), status


def form_value(name: str, limit: int = 200) -> str:
    """A trimmed form field (empty when absent), cut to `limit` characters."""
    return (request.form.get(name) or "").strip()[:limit]


def error_page(exc: Any) -> tuple[str, int]:
    """HTML for 403, 404 and other HTTP errors on admin pages."""
    code = getattr(exc, "code", 500) or 500
    titles = {403: "Forbidden", 404: "Not found", 405: "Not allowed", 422: "Not accepted"}
    description = getattr(exc, "description", "") or ""
    if code == 403 and "token" not in description:
        description = "These pages are for users with the System Administrator role."
    return (
        render_template(
            "admin/error.html", code=code, title=titles.get(code, "Something went wrong"), message=description
        ),
        code,
    )


def choices(entity_name: str, label: str | None = None) -> list[tuple[str, str]]:
    """(id, name) of every record of a structure entity (users, teams, units, positions), by name."""
    m = current().model
    entity = m.entity(entity_name)
    t = m.tables[entity_name]
    name_col = t.c[label or entity.primary_name]
    rows = db().execute(
        select(t.c[entity.primary_id], name_col).where(t.c.organizationid == m.org_id).order_by(name_col)
    )
    return [(str(r[0]), str(r[1] or r[0])) for r in rows]
