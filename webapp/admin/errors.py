"""The sync error log: every rejected or automatically resolved operation, with who, when,
what the device sent and what the server kept; filtered by user, entity and device."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from sqlalchemy import select

from webapp.admin.context import choices, current, db, page
from webapp.sync.tables import syncerror

bp = Blueprint("errors", __name__, url_prefix="/sync-errors")
LIMIT = 200


@bp.get("/")
def index() -> Any:
    """The newest sync errors, filtered."""
    m = current().model
    args = {k: (request.args.get(k) or "").strip()[:64] for k in ("user", "entity", "device")}
    stmt = select(syncerror).where(syncerror.c.organizationid == m.org_id)
    if args["user"]:
        stmt = stmt.where(syncerror.c.systemuserid == args["user"])
    if args["entity"]:
        stmt = stmt.where(syncerror.c.entity == args["entity"])
    if args["device"]:
        stmt = stmt.where(syncerror.c.deviceid.startswith(args["device"].lower()))
    rows = (
        db().execute(stmt.order_by(syncerror.c.createdon.desc(), syncerror.c.id.desc()).limit(LIMIT)).mappings().all()
    )
    entities = sorted(e for e in m.entities if not m.entities[e].union_of)
    return page(
        "sync_errors.html",
        rows=rows,
        args=args,
        users=choices("systemuser", "fullname"),
        entities=entities,
        limit=LIMIT,
    )
