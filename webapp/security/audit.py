"""The audit log of administrators' changes: who changed what, when, with the details.

Every change made through the administrator's pages writes one row in the same transaction
as the change itself, so the log never claims a change that was rolled back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, func, insert, select
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.crm.tables import ID
from webapp.db import metadata

adminaudit = Table(
    "adminaudit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("organizationid", ID, nullable=False),
    Column("systemuserid", ID, nullable=False),  # the administrator who made the change
    Column("action", String(64), nullable=False),  # e.g. offline.save, user.create, device.revoke
    Column("target", String(200), nullable=False),  # what was changed, as people read it
    Column("details", JSON, nullable=False),
    Column("createdon", DateTime, nullable=False),
    Index("ix_adminaudit_org", "organizationid", "createdon"),
)


def record(
    session: Session, org_id: str, user_id: str, action: str, target: str, details: dict[str, Any] | None = None
) -> None:
    """Note one administrator's change (in the caller's transaction)."""
    session.execute(
        insert(adminaudit),
        {
            "organizationid": org_id,
            "systemuserid": user_id,
            "action": action[:64],
            "target": target[:200],
            "details": details or {},
            "createdon": utcnow(),
        },
    )


def entries(
    session: Session, org_id: str, limit: int = 200, action: str | None = None, user_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest audit entries of an organisation, newest first."""
    stmt = select(adminaudit).where(adminaudit.c.organizationid == org_id)
    if action:
        stmt = stmt.where(adminaudit.c.action.startswith(action))
    if user_id:
        stmt = stmt.where(adminaudit.c.systemuserid == user_id)
    stmt = stmt.order_by(adminaudit.c.createdon.desc(), adminaudit.c.id.desc()).limit(limit)
    return [dict(r) for r in session.execute(stmt).mappings()]


def count_since(session: Session, org_id: str, since: dt.datetime) -> int:
    """How many changes were made since a moment (for the dashboard)."""
    return int(
        session.execute(
            select(func.count()).where(adminaudit.c.organizationid == org_id, adminaudit.c.createdon >= since)
        ).scalar_one()
    )
