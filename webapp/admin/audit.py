"""The audit log of every administrator's change, and the console's home page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, request
from sqlalchemy import func, select

from webapp.admin.context import choices, current, db, page
from webapp.crm.changes import utcnow
from webapp.security.audit import count_since, entries
from webapp.sync.profile import downloadable
from webapp.sync.tables import device, syncerror

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.get("/")
def index() -> Any:
    """The newest changes, optionally for one administrator or one kind of action."""
    args = {k: (request.args.get(k) or "").strip()[:64] for k in ("user", "action")}
    rows = entries(db(), current().model.org_id, action=args["action"] or None, user_id=args["user"] or None)
    return page("audit.html", rows=rows, args=args, users=choices("systemuser", "fullname"))


def dashboard() -> Any:
    """Figures for the console's home page."""
    m = current().model
    dbs = db()
    week = utcnow() - dt.timedelta(days=7)
    figures = {
        "offline_entities": len(downloadable(m)),
        "devices": dbs.execute(
            select(func.count()).where(device.c.organizationid == m.org_id, device.c.status == "active")
        ).scalar_one(),
        "errors_week": dbs.execute(
            select(func.count()).where(syncerror.c.organizationid == m.org_id, syncerror.c.createdon >= week)
        ).scalar_one(),
        "changes_week": count_since(dbs, m.org_id, week),
    }
    return page("dashboard.html", figures=figures, offline_on=bool(m.settings.get("offline", {}).get("enabled")))
