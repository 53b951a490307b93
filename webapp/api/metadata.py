"""`GET /api/metadata`: the customizations a device downloads (entities, views, forms, profile)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from webapp.api.context import caller
from webapp.crm.customizations import customizations

bp = Blueprint("metadata", __name__)


@bp.get("/metadata")
def get_metadata() -> Any:
    """The organisation's customizations; answers 304 when the device's version is current."""
    doc = customizations(caller().model)
    etag = f'"{doc["version"]}"'
    if request.headers.get("If-None-Match") == etag:
        return "", 304, {"ETag": etag}
    resp = jsonify(doc)
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "no-cache"
    return resp
