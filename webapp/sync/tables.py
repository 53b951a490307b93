"""The sync engine's tables: devices, the idempotency ledger, and the sync error log."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, String, Table

from webapp.crm.tables import ID
from webapp.db import metadata

# A device = one (organisation, user) store on a phone. A new store (after Reconfigure or a
# wipe) mints a new id, so a revoked id stays revoked.
device = Table(
    "device",
    metadata,
    Column("deviceid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("systemuserid", ID, nullable=False),
    Column("app_version", String(64)),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("last_sync", DateTime),
    Column("status", String(16), nullable=False),  # active | revoked
    Column("pending_ops", Integer, nullable=False, default=0),  # as the device last reported
    Column("cursor", BigInteger, nullable=False, default=0),
    Index("ix_device_user", "organizationid", "systemuserid"),
)

# (device, seq) -> the first result: a re-sent op gets it back and is never applied twice.
opledger = Table(
    "opledger",
    metadata,
    Column("deviceid", ID, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("op_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("recordid", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # applied | conflict | rejected
    Column("result", JSON, nullable=False),
    Column("appliedon", DateTime, nullable=False),
    # Each push reads the device's rejected creates (what later ops may depend on): few rows,
    # found through this index instead of a scan of the device's whole ledger.
    Index("ix_opledger_status", "deviceid", "status"),
)

# Every rejected or automatically resolved operation: what was sent and what the server kept.
syncerror = Table(
    "syncerror",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("organizationid", ID, nullable=False),
    Column("deviceid", ID, nullable=False),
    Column("systemuserid", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("entity", String(64), nullable=False),
    Column("recordid", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("code", String(64), nullable=False),
    Column("message", String(1000), nullable=False),
    Column("sent", JSON, nullable=False),
    Column("kept", JSON),
    Column("createdon", DateTime, nullable=False),
    Index("ix_syncerror_org", "organizationid", "createdon"),
)

# The server-held copy of a device store's data key (DESIGN.md §6), so a signed-in user who
# forgot the app PIN can set a new one. Only the device's own user gets it back, and only with
# the password again; revoking the device, Reconfigure and sign-out with clearing delete it.
devicekey = Table(
    "devicekey",
    metadata,
    Column("deviceid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("systemuserid", ID, nullable=False),
    Column("datakey", String(64), nullable=False),  # base64 of the 32-byte AES-256 data key
    Column("createdon", DateTime, nullable=False),
    Index("ix_devicekey_user", "organizationid", "systemuserid"),
)

# What the server last verified a device holds (webapp/sync/reconcile.py): the user's security
# epoch and change number it was verified at, when a full check last ran, and per entity the
# fingerprint of the scope rule and the start of a `modified` window it was verified with.
devicescope = Table(
    "devicescope",
    metadata,
    Column("deviceid", ID, primary_key=True),
    Column("organizationid", ID, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("checkedon", DateTime, nullable=False),
    Column("state", JSON, nullable=False),
)
