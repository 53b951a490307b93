"""`POST /api/commands/<name>`: the business commands online (the same code the replay runs)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from webapp.api.context import caller, commit, db_session, json_body
from webapp.security.operations import run_command

bp = Blueprint("commands", __name__, url_prefix="/commands")


@bp.post("/<name>")
def command(name: str) -> Any:
    """Run a command in one transaction: `{"created": [...], "updated": [...]}`."""
    c = caller()
    args = json_body()
    result = run_command(db_session(), c.model, c.principal, c.actor, name, args)
    commit()
    return jsonify(result)
