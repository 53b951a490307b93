"""Devices: who uses each, its app version, last sync, the operations it last reported as
pending, its recent sync errors; "Revoke and wipe" (at its next connection the device deletes
the organisation's data, metadata and queue, and signs out)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort
from sqlalchemy import func, select

from webapp.admin.context import choices, commit, current, db, done, page
from webapp.sync.devices import revoke
from webapp.sync.tables import device, syncerror

bp = Blueprint("devices", __name__, url_prefix="/devices")


@bp.get("/")
def index() -> Any:
    """Every device of the organisation, most recently seen first."""
    m = current().model
    rows = (
        db()
        .execute(select(device).where(device.c.organizationid == m.org_id).order_by(device.c.last_seen.desc()))
        .mappings()
        .all()
    )
    errors: dict[str, int] = dict(
        db()
        .execute(
            select(syncerror.c.deviceid, func.count())
            .where(syncerror.c.organizationid == m.org_id)
            .group_by(syncerror.c.deviceid)
        )
        .all()
    )
    return page("devices.html", rows=rows, users=dict(choices("systemuser", "fullname")), errors=errors)


def _device(device_id: str) -> Any:
    row = (
        db()
        .execute(
            select(device).where(device.c.deviceid == device_id, device.c.organizationid == current().model.org_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        abort(404, "There is no such device.")
    return row


@bp.get("/<device_id>")
def show(device_id: str) -> Any:
    """One device with its recent sync errors and the revoke form."""
    row = _device(device_id)
    recent = (
        db()
        .execute(
            select(syncerror)
            .where(syncerror.c.deviceid == device_id)
            .order_by(syncerror.c.createdon.desc(), syncerror.c.id.desc())
            .limit(20)
        )
        .mappings()
        .all()
    )
    return page("device.html", device=row, users=dict(choices("systemuser", "fullname")), recent=recent)


@bp.post("/<device_id>/revoke")
def revoke_device(device_id: str) -> Any:
    """Revoke and wipe: the device deletes this organisation's data at its next connection."""
    row = _device(device_id)
    if row["status"] == "revoked":
        return done("admin.devices.show", "This device is already revoked.", device_id=device_id)
    revoke(db(), device_id)
    users = dict(choices("systemuser", "fullname"))
    commit("device.revoke", f"Device {device_id[:8]} of {users.get(row['systemuserid'], row['systemuserid'])}")
    return done("admin.devices.show", "Device revoked: it wipes itself at its next connection.", device_id=device_id)
