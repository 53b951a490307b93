"""The customizations document (`GET /api/metadata`) and custom entities.

The document's `version` is a hash of its content, so it changes exactly when anything a
device keeps changes: an entity, a view, the offline profile or the conflict setting.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from webapp.crm.changes import utcnow
from webapp.crm.clientscripts import published
from webapp.crm.commanddata import SALES_PROCESS, declaration
from webapp.crm.entities import SYSTEM_ENTITY_NAMES
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Entity, MetadataError, entity_from_dict, entity_to_definition
from webapp.crm.orgs import save_settings
from webapp.crm.registry import OrgModel, Registry
from webapp.crm.remodel import unretire
from webapp.crm.ruledata import write_rules
from webapp.crm.tables import customentity

_doc_cache: dict[tuple[str, int, str], dict[str, Any]] = {}


def customizations(model: OrgModel) -> dict[str, Any]:
    """Every entity's metadata plus the offline profile and conflict setting, with a version."""
    settings = model.settings
    key = (model.org_id, model.revision, json.dumps(settings, sort_keys=True))
    cached = _doc_cache.get(key)
    if cached is not None:
        return cached
    offline = settings.get("offline", {})
    doc: dict[str, Any] = {
        "organization": model.name,
        "entities": [e.to_dict() for e in model.entities.values()],
        "offline_profile": {
            "enabled": offline.get("enabled", False),
            "entities": offline.get("entities", {}),
        },
        "conflict_detection": bool(settings.get("conflict_detection", False)),
        "base_currency_symbol": settings.get("base_currency_symbol", "$"),
        "processes": [SALES_PROCESS],
        "sync_interval_minutes": offline.get("sync_interval_minutes", 15),
        "client_scripts": published(model),
        "write_rules": write_rules(),
        "commands": declaration(),
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    doc = {"version": digest, **doc}
    _doc_cache.clear()  # one live document per process is plenty; keeps the cache bounded
    _doc_cache[key] = doc
    return doc


def add_entity(session: Session, registry: Registry, model: OrgModel, definition: Any) -> Entity:
    """Add a custom entity to an organisation: its table now, its API and metadata at once."""
    try:
        entity = entity_from_dict(definition, set(SYSTEM_ENTITY_NAMES) | set(model.entities))
    except MetadataError as exc:
        raise ValidationFailed(str(exc), field="definition") from exc
    if entity.entity_set in model.by_set:
        raise ValidationFailed(f"The entity set '{entity.entity_set}' is taken.", field="entity_set")
    table_name = f"cx_{model.org_id.replace('-', '')[:12]}_{entity.logical_name}"[:63]
    existing = session.execute(select(customentity.c.table_name).where(customentity.c.table_name == table_name)).first()
    if existing is not None:
        raise ValidationFailed(f"The entity '{entity.logical_name}' already exists.", field="logical_name")
    table = registry.custom_table(entity, table_name)
    table.create(session.connection(), checkfirst=True)
    session.execute(
        insert(customentity),
        {
            "organizationid": model.org_id,
            "logical_name": entity.logical_name,
            "table_name": table_name,
            "definition": entity_to_definition(entity),
            "createdon": utcnow(),
        },
    )
    settings = copy.deepcopy(model.settings)
    unretire(settings, entity.logical_name)
    settings.setdefault("offline", {}).setdefault("entities", {})[entity.logical_name] = {
        "enabled": bool(entity.offline_commands),
        "filter": "all",
        "days": None,
    }
    save_settings(session, model.org_id, settings)
    registry.forget(model.org_id)
    return entity
