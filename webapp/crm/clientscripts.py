"""Client scripts: JavaScript an administrator attaches to an entity's form (on load, on save).

The source lives in the `clientscript` table; the organisation's settings hold, per entity
and event, the script's content hash, so the customizations document (and its version)
changes when a script does and devices are offered the update. The phone loads a script
from a same-origin, content-addressed URL (`script_url`), so it can be cached for offline
use and the Content-Security-Policy needs no 'unsafe-inline'.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from sqlalchemy import Column, DateTime, String, Table, Text, delete, insert, select
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.crm.errors import NotFound, ValidationFailed
from webapp.crm.orgs import save_settings
from webapp.crm.registry import OrgModel
from webapp.crm.tables import ID
from webapp.db import metadata

EVENTS = ("onload", "onsave")
MAX_SCRIPT_BYTES = 256 * 1024

clientscript = Table(
    "clientscript",
    metadata,
    Column("organizationid", ID, primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("event", String(16), primary_key=True),
    Column("filename", String(200), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("uploadedon", DateTime, nullable=False),
    Column("uploadedby", ID),
)


def script_hash(source: str) -> str:
    """The short content hash that names a script version in its URL."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def script_url(org_name: str, entity: str, event: str, digest: str) -> str:
    """Where the phone loads a script from (same origin, content-addressed)."""
    return f"/scripts/{org_name}/{entity}/{event}.js?v={digest}"


def published(model: OrgModel) -> dict[str, dict[str, str]]:
    """`{entity: {event: url}}` for the customizations document."""
    out: dict[str, dict[str, str]] = {}
    for entity, events in sorted(model.settings.get("client_scripts", {}).items()):
        for event, info in sorted(events.items()):
            out.setdefault(entity, {})[event] = script_url(model.name, entity, event, info["hash"])
    return out


def _check(model: OrgModel, entity: str, event: str) -> None:
    if entity not in model.entities or model.entities[entity].union_of:
        raise ValidationFailed(f"There is no entity '{entity}' with a form.", field="entity")
    if event not in EVENTS:
        raise ValidationFailed(f"The event must be one of {', '.join(EVENTS)}.", field="event")


def save_script(
    session: Session, model: OrgModel, entity: str, event: str, filename: str, data: bytes, user_id: str | None
) -> str:
    """Store (or replace) the script of an entity's form event; returns its hash."""
    _check(model, entity, event)
    if not data.strip():
        raise ValidationFailed("The script file is empty.", field="file")
    if len(data) > MAX_SCRIPT_BYTES:
        raise ValidationFailed(f"A script may be at most {MAX_SCRIPT_BYTES // 1024} KB.", field="file")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("The script must be a UTF-8 text file.", field="file") from None
    if "\x00" in source:
        raise ValidationFailed("The script must be a text file.", field="file")
    digest = script_hash(source)
    key = (
        clientscript.c.organizationid == model.org_id,
        clientscript.c.entity == entity,
        clientscript.c.event == event,
    )
    session.execute(delete(clientscript).where(*key))
    session.execute(
        insert(clientscript),
        {
            "organizationid": model.org_id,
            "entity": entity,
            "event": event,
            "filename": (filename or f"{entity}-{event}.js")[:200],
            "hash": digest,
            "source": source,
            "uploadedon": utcnow(),
            "uploadedby": user_id,
        },
    )
    settings = copy.deepcopy(model.settings)
    settings.setdefault("client_scripts", {}).setdefault(entity, {})[event] = {"hash": digest}
    save_settings(session, model.org_id, settings)
    return digest


def remove_script(session: Session, model: OrgModel, entity: str, event: str) -> None:
    """Detach a script from an entity's form event."""
    _check(model, entity, event)
    session.execute(
        delete(clientscript).where(
            clientscript.c.organizationid == model.org_id,
            clientscript.c.entity == entity,
            clientscript.c.event == event,
        )
    )
    settings = copy.deepcopy(model.settings)
    scripts = settings.setdefault("client_scripts", {})
    scripts.get(entity, {}).pop(event, None)
    if not scripts.get(entity):
        scripts.pop(entity, None)
    save_settings(session, model.org_id, settings)


def load_script(session: Session, org_id: str, entity: str, event: str) -> dict[str, Any]:
    """A stored script (source, hash, filename), or NotFound."""
    row = (
        session.execute(
            select(clientscript).where(
                clientscript.c.organizationid == org_id,
                clientscript.c.entity == entity,
                clientscript.c.event == event,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"There is no {event} script for {entity}.")
    return dict(row)


def list_scripts(session: Session, org_id: str) -> list[dict[str, Any]]:
    """Every script of an organisation (without its source)."""
    cols = [c for c in clientscript.c if c.name != "source"]
    stmt = select(*cols).where(clientscript.c.organizationid == org_id)
    rows = session.execute(stmt.order_by(clientscript.c.entity, clientscript.c.event)).mappings()
    return [dict(r) for r in rows]
