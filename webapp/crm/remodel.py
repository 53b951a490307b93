"""An administrator's changes to metadata that devices already hold: removing a custom entity or
an attribute of one, and changing which states a plain update may move a record to.

Devices may have operations queued under the metadata as it was; the replay refuses exactly the
parts that no longer apply (`webapp.sync.stale`). So what was removed is remembered, with its
label, in the organisation's settings (`retired`): a refusal names it in the user's words after
it is gone, and a name that was removed is told from one that never existed. Every change here
saves the settings, so the metadata version moves and devices offer the update.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from webapp.crm.entities import SYSTEM_ENTITY_NAMES
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Entity, MetadataError, entity_from_dict
from webapp.crm.orgs import save_settings
from webapp.crm.tables import customentity

if TYPE_CHECKING:
    from webapp.crm.registry import OrgModel, Registry


def retired_entity(model: OrgModel, name: str) -> dict[str, str] | None:
    """The labels of a removed entity ({display_name, display_collection_name}), or None."""
    found = model.settings.get("retired", {}).get("entities", {}).get(name)
    return found if isinstance(found, dict) else None


def retired_attributes(model: OrgModel, entity_name: str) -> dict[str, str]:
    """The removed attributes of an entity: logical name -> label."""
    found = model.settings.get("retired", {}).get("attributes", {}).get(entity_name)
    return dict(found) if isinstance(found, dict) else {}


def _custom(session: Session, model: OrgModel, entity_name: str) -> tuple[Entity, dict[str, Any]]:
    """A custom entity and its stored definition; a clear error for anything else."""
    entity = model.entities.get(entity_name)
    if entity is None:
        raise ValidationFailed(f"There is no entity '{entity_name}'.", field="entity")
    if not entity.is_custom:
        raise ValidationFailed(
            f"{entity.display_name} is a system entity; only custom entities and their attributes can be removed.",
            field="entity",
        )
    definition = session.execute(
        select(customentity.c.definition).where(
            customentity.c.organizationid == model.org_id, customentity.c.logical_name == entity_name
        )
    ).scalar_one()
    return entity, copy.deepcopy(definition)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def remove_attribute(session: Session, registry: Registry, model: OrgModel, entity_name: str, name: str) -> Entity:
    """Remove an attribute of a custom entity: from its definition, views, form and quick find.

    The column and its values stay in the table (nothing reads them); the attribute is retired,
    so a device's queued value for it is refused by name rather than as an unknown field.
    """
    entity, definition = _custom(session, model, entity_name)
    attr = entity.attribute(name)
    if attr is None or name == entity.primary_id:
        raise ValidationFailed(f"{entity.display_name} has no attribute '{name}' to remove.", field="attribute")
    if name == entity.primary_name:
        raise ValidationFailed(
            f"{attr.display_name} is the primary name of {entity.display_collection_name}; it cannot be removed.",
            field="attribute",
        )
    for view in definition.get("views", []):
        if _mentions(view.get("filter", ""), name) or _mentions(view.get("orderby", ""), name):
            raise ValidationFailed(
                f"The view '{view['name']}' filters or sorts on {attr.display_name}; change the view first.",
                field="attribute",
            )
        view["columns"] = [c for c in view.get("columns", []) if c != name] or [entity.primary_name]
    definition["attributes"] = [a for a in definition["attributes"] if a["logical_name"] != name]
    definition["form"] = [{**s, "fields": [f for f in s["fields"] if f != name]} for s in definition.get("form", [])]
    definition["quick_find"] = [q for q in definition.get("quick_find", []) if q != name] or [entity.primary_name]
    others = set(SYSTEM_ENTITY_NAMES) | (set(model.entities) - {entity_name})
    try:
        changed = entity_from_dict(definition, others)
    except MetadataError as exc:
        raise ValidationFailed(str(exc), field="attribute") from exc
    session.execute(
        update(customentity)
        .where(customentity.c.organizationid == model.org_id, customentity.c.logical_name == entity_name)
        .values(definition=definition)
    )
    settings = copy.deepcopy(model.settings)
    retired = settings.setdefault("retired", {}).setdefault("attributes", {})
    retired.setdefault(entity_name, {})[name] = attr.display_name or name
    save_settings(session, model.org_id, settings)
    registry.forget(model.org_id)
    return changed


def remove_entity(session: Session, registry: Registry, model: OrgModel, entity_name: str) -> None:
    """Remove a custom entity with its table and records, its offline settings and its API.

    Refused while another entity's lookup points at it (the message names them).
    """
    entity, _ = _custom(session, model, entity_name)
    pointing = sorted(
        f"{e.display_name}.{a.display_name}"
        for e in model.entities.values()
        if e.logical_name != entity_name
        for a in e.lookups()
        if entity_name in a.targets
    )
    if pointing:
        raise ValidationFailed(
            f"{entity.display_collection_name} cannot be removed: {', '.join(pointing)} point at it.", field="entity"
        )
    table = model.table(entity)
    session.execute(
        delete(customentity).where(
            customentity.c.organizationid == model.org_id, customentity.c.logical_name == entity_name
        )
    )
    table.drop(session.connection(), checkfirst=True)
    registry.custom_metadata.remove(table)
    settings = copy.deepcopy(model.settings)
    settings.get("offline", {}).get("entities", {}).pop(entity_name, None)
    retired = settings.setdefault("retired", {})
    retired.get("attributes", {}).pop(entity_name, None)
    retired.setdefault("entities", {})[entity_name] = {
        "display_name": entity.display_name,
        "display_collection_name": entity.display_collection_name,
    }
    save_settings(session, model.org_id, settings)
    registry.forget(model.org_id)


def unretire(settings: dict[str, Any], entity_name: str) -> None:
    """An entity added again under a removed name is a new one: forget what was removed of it."""
    retired = settings.get("retired", {})
    retired.get("entities", {}).pop(entity_name, None)
    retired.get("attributes", {}).pop(entity_name, None)


def set_transitions(
    session: Session, registry: Registry, model: OrgModel, entity_name: str, moves: dict[int, list[int]]
) -> Entity:
    """Change the states a plain update may move an entity's records to: for each state given,
    the states it may move to from now on (an empty list: none). Other states keep theirs."""
    entity = model.entities.get(entity_name)
    if entity is None or not entity.has_state:
        raise ValidationFailed(f"'{entity_name}' is not an entity with a status.", field="entity")
    state_attr = entity.attribute("statecode")
    assert state_attr is not None
    labels = {o.value: o.label for o in state_attr.options}
    for start, targets in moves.items():
        unknown = [v for v in [start, *targets] if v not in labels]
        if unknown:
            raise ValidationFailed(
                f"{entity.display_name} has no status {unknown[0]}; its statuses are "
                + ", ".join(f"{v} ({label})" for v, label in labels.items())
                + ".",
                field="transitions",
            )
        if start in targets:
            raise ValidationFailed(f"{labels[start]} cannot move to itself.", field="transitions")
    settings = copy.deepcopy(model.settings)
    kept = settings.setdefault("transitions", {}).setdefault(entity_name, {})
    kept.update({str(start): sorted(set(targets)) for start, targets in moves.items()})
    save_settings(session, model.org_id, settings)
    registry.forget(model.org_id)
    return with_transitions(entity, kept)


def with_transitions(entity: Entity, moves: dict[str, list[int]]) -> Entity:
    """The entity with its statecode's `next_states` as an organisation set them."""
    state_attr = entity.attribute("statecode")
    if state_attr is None or not moves:
        return entity
    options = tuple(
        dataclasses.replace(o, next_states=tuple(moves[str(o.value)])) if str(o.value) in moves else o
        for o in state_attr.options
    )
    attrs = tuple(
        dataclasses.replace(a, options=options) if a.logical_name == "statecode" else a for a in entity.attributes
    )
    return dataclasses.replace(entity, attributes=attrs)


def apply_transitions(entities: dict[str, Entity], settings: dict[str, Any]) -> None:
    """Give every entity the transitions its organisation set (`set_transitions`)."""
    for name, moves in (settings.get("transitions") or {}).items():
        if name in entities and isinstance(moves, dict):
            entities[name] = with_transitions(entities[name], moves)
