"""The server-held copy of each device store's data key (DESIGN.md §6: encryption at rest).

A device with the app PIN on encrypts its store under a random data key, which it keeps only
wrapped by a key derived from the PIN. The raw key is also kept here, per (user, device), so
"Forgot PIN" works: the device's own user, signed in and giving the password again, gets it
back and sets a new PIN. A revoked device's key is deleted here, as is the key of a store the
device deleted (Reconfigure, sign-out with clearing).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select, update
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.sync.devices import UUID_RE
from webapp.sync.tables import device, devicekey

KEY_BYTES = 32


class DeviceKeyError(Exception):
    """A request about a device key that cannot be granted: `status` and `code` for the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_device_id(device_id: str) -> str:
    """The device id, if it is a lower-case UUID; else a 400."""
    if not UUID_RE.match(device_id):
        raise DeviceKeyError(400, "bad_request", "The device id must be a lower-case UUID.")
    return device_id


def check_key(value: object) -> str:
    """The key as sent (base64 of 32 bytes); else a 400 naming the field."""
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise DeviceKeyError(400, "bad_request", "'key' must be the base64 of a 32-byte key.")
    return base64.b64encode(raw).decode()


def _owner_check(session: Session, org_id: str, user_id: str, device_id: str) -> None:
    """Refuse a device id that belongs to someone else or was revoked."""
    row = session.execute(
        select(device.c.organizationid, device.c.systemuserid, device.c.status).where(device.c.deviceid == device_id)
    ).first()
    if row is not None and (row.organizationid != org_id or row.systemuserid != user_id):
        raise DeviceKeyError(403, "device_mismatch", "This device id belongs to another user.")
    if row is not None and row.status == "revoked":
        raise DeviceKeyError(403, "revoked", "This device was revoked by an administrator.")
    held = session.execute(
        select(devicekey.c.organizationid, devicekey.c.systemuserid).where(devicekey.c.deviceid == device_id)
    ).first()
    if held is not None and (held.organizationid != org_id or held.systemuserid != user_id):
        raise DeviceKeyError(403, "device_mismatch", "This device id belongs to another user.")


def store_key(session: Session, org_id: str, user_id: str, device_id: str, key: object) -> bool:
    """Keep (or replace) the data key of one of the user's devices; True when it is new."""
    check_device_id(device_id)
    clean = check_key(key)
    _owner_check(session, org_id, user_id, device_id)
    exists = session.execute(select(devicekey.c.deviceid).where(devicekey.c.deviceid == device_id)).first()
    if exists is None:
        session.execute(
            insert(devicekey),
            {
                "deviceid": device_id,
                "organizationid": org_id,
                "systemuserid": user_id,
                "datakey": clean,
                "createdon": utcnow(),
            },
        )
        return True
    session.execute(update(devicekey).where(devicekey.c.deviceid == device_id).values(datakey=clean))
    return False


def recover_key(session: Session, org_id: str, user_id: str, device_id: str) -> str:
    """The data key of one of the user's devices (the caller has checked the password)."""
    check_device_id(device_id)
    _owner_check(session, org_id, user_id, device_id)
    key = session.execute(
        select(devicekey.c.datakey).where(
            devicekey.c.deviceid == device_id,
            devicekey.c.organizationid == org_id,
            devicekey.c.systemuserid == user_id,
        )
    ).scalar()
    if key is None:
        raise DeviceKeyError(404, "not_found", "The server holds no key for this device; reconfigure it.")
    return str(key)


def delete_key(session: Session, org_id: str, user_id: str, device_id: str) -> bool:
    """Forget the key of one of the user's devices; True when there was one."""
    check_device_id(device_id)
    result = session.execute(
        delete(devicekey).where(
            devicekey.c.deviceid == device_id,
            devicekey.c.organizationid == org_id,
            devicekey.c.systemuserid == user_id,
        )
    )
    return bool(cast(CursorResult[Any], result).rowcount)
