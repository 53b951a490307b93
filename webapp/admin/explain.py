"""Dry run (what the profile would put on a user's device, and its size, before publishing)
and "Why is this record (not) on this user's device?"."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from webapp.admin.context import choices, current, db, page
from webapp.crm.errors import NotFound
from webapp.sync.explain import dry_run, why
from webapp.sync.profile import downloadable

bp = Blueprint("explain", __name__, url_prefix="/offline")


def human_size(n: int) -> str:
    """Bytes as people read them."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


@bp.get("/dry-run")
def dry_run_page() -> Any:
    """Choose a user; see per entity how many records their device would download."""
    users = choices("systemuser", "fullname")
    user_id = request.args.get("user", "")
    result = None
    error = ""
    if user_id:
        if user_id not in {u for u, _ in users}:
            error = "Choose a user of this organisation."
        else:
            result = dry_run(db(), current().model, user_id)
    return page(
        "dryrun.html",
        422 if error else 200,
        users=users,
        user_id=user_id,
        result=result,
        error=error,
        human_size=human_size,
    )


@bp.get("/why")
def why_page() -> Any:
    """Choose a user, an entity and a record id; see the rules that include or exclude it."""
    model = current().model
    users = choices("systemuser", "fullname")
    entities = sorted(
        (e for e in model.entities.values() if e.logical_name != "businessunit"),
        key=lambda e: e.display_name,
    )
    args = {k: (request.args.get(k) or "").strip() for k in ("user", "entity", "record")}
    errors: dict[str, str] = {}
    result = None
    if any(args.values()):
        if args["user"] not in {u for u, _ in users}:
            errors["user"] = "Choose a user of this organisation."
        if args["entity"] not in model.entities:
            errors["entity"] = "Choose an entity."
        if not args["record"]:
            errors["record"] = "Enter the record's id."
        if not errors:
            try:
                result = why(db(), model, args["user"], args["entity"], args["record"].lower())
            except NotFound as exc:
                errors["record"] = exc.message
    offline = {e.logical_name for e in downloadable(model)}
    return page(
        "why.html",
        422 if errors else 200,
        users=users,
        entities=entities,
        args=args,
        errors=errors,
        result=result,
        offline=offline,
    )
