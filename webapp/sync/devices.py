"""Devices: registered at their first `hello`, bound to one user, revocable."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, cast

from flask import current_app, has_app_context
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.sync.tables import device, devicekey, opledger

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

PENDING_OPS_MAX = 2**31 - 1
MAX_DEVICES_PER_USER = 50  # the defaults of the app's MAX_DEVICES_PER_USER and DEVICE_CAP_DAYS
DEVICE_CAP_DAYS = 30
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


REVOKED = "This device was revoked by an administrator."


class Revoked(Exception):
    """A push from a device an administrator revoked: nothing of it applies, and the device is
    told to wipe itself (the socket's `wipe`, HTTP's 403 `revoked`)."""


class DeviceError(Exception):
    """A hello that cannot be accepted: `code` is the error frame's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def register(
    session: Session,
    org_id: str,
    user_id: str,
    device_id: Any,
    app_version: Any,
    max_devices: int | None = None,
    cap_days: int | None = None,
) -> dict[str, Any]:
    """The device's row, created at its first hello; refuses another user's or a revoked id,
    and a new device beyond the user's cap: `max_devices` active and seen in the last
    `cap_days` (default: the app's MAX_DEVICES_PER_USER and DEVICE_CAP_DAYS)."""
    if not isinstance(device_id, str) or not UUID_RE.match(device_id):
        raise DeviceError("bad_message", "device_id must be a lower-case UUID.")
    version = app_version if isinstance(app_version, str) else None
    now = utcnow()
    row = session.execute(select(device).where(device.c.deviceid == device_id)).mappings().first()
    if row is None:
        config = current_app.config if has_app_context() else {}
        if config.get("RATE_LIMITS", True):  # OUTPOST_RATE_LIMITS=off lifts the caps too
            cap = max_devices if max_devices is not None else config.get("MAX_DEVICES_PER_USER", MAX_DEVICES_PER_USER)
            days = cap_days if cap_days is not None else config.get("DEVICE_CAP_DAYS", DEVICE_CAP_DAYS)
            recent = session.execute(
                select(func.count()).where(
                    device.c.organizationid == org_id,
                    device.c.systemuserid == user_id,
                    device.c.status == "active",
                    device.c.last_seen >= now - dt.timedelta(days=days),
                )
            ).scalar_one()
            if recent >= cap:
                raise DeviceError(
                    "too_many_devices",
                    f"This account already uses {cap} devices; an administrator can revoke old ones "
                    "(Devices page), or wait until unused ones stop counting.",
                )
        values = {
            "deviceid": device_id,
            "organizationid": org_id,
            "systemuserid": user_id,
            "app_version": (version or "")[:64],
            "first_seen": now,
            "last_seen": now,
            "status": "active",
            "pending_ops": 0,
            "cursor": 0,
        }
        session.execute(insert(device), values)
        return values
    if row["organizationid"] != org_id or row["systemuserid"] != user_id:
        raise DeviceError("device_mismatch", "This device id belongs to another user; reconfigure the device.")
    session.execute(
        update(device)
        .where(device.c.deviceid == device_id)
        .values(last_seen=now, app_version=(version or row["app_version"] or "")[:64])
    )
    return dict(row)


def next_seq(session: Session, device_id: str) -> int:
    """The seq the server expects next from this device (last applied + 1)."""
    last = session.execute(select(func.max(opledger.c.seq)).where(opledger.c.deviceid == device_id)).scalar()
    return int(last or 0) + 1


def touch(session: Session, device_id: str, **values: Any) -> None:
    """Record a sync (last sync time, cursor, pending operations reported)."""
    if "pending_ops" in values:  # as the device says: kept within its column, however large the claim
        values["pending_ops"] = max(0, min(int(values["pending_ops"]), PENDING_OPS_MAX))
    session.execute(update(device).where(device.c.deviceid == device_id).values(last_seen=utcnow(), **values))


def start_push(session: Session, device_id: str) -> None:
    """The first write of every push, socket or HTTP: note the device's sync, or raise Revoked.

    One statement that both checks and writes, so a device revoked after its hello (or between
    two HTTP pushes) gets nothing applied, and on PostgreSQL it locks the device's row: two
    pushes of one device on two connections replay one after the other.
    """
    now = utcnow()
    done = session.execute(
        update(device)
        .where(device.c.deviceid == device_id, device.c.status == "active")
        .values(last_seen=now, last_sync=now)
    )
    if cast("CursorResult[Any]", done).rowcount == 0:
        raise Revoked(REVOKED)


def revoke(session: Session, device_id: str) -> None:
    """Revoke a device: at its next connection it is told to wipe itself. The server's copy of
    its data key goes at once, so a PIN it had can no longer be reset."""
    session.execute(update(device).where(device.c.deviceid == device_id).values(status="revoked"))
    session.execute(delete(devicekey).where(devicekey.c.deviceid == device_id))
