"""Custom entities from the browser: attributes, views, form and offline commands; removing a
custom entity or one of its attributes, and the moves between statuses (`webapp.crm.remodel`).

The form becomes the same JSON definition `outpost add-entity` reads, and goes through the
same checks (`entity_from_dict`), so a bad definition is refused whole with a message naming
the part at fault. A new entity changes the metadata version: devices get it at their next
update.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, request

from webapp.admin.context import commit, current, db, done, form_value, page
from webapp.crm.customizations import add_entity
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import ATTRIBUTE_TYPES, SYSTEM_ATTRIBUTES, Entity
from webapp.crm.remodel import remove_attribute, remove_entity, set_transitions
from webapp.services import services
from webapp.sync.profile import is_offline

bp = Blueprint("entities", __name__, url_prefix="/entities")
ATTRIBUTE_ROWS = 10
COMMANDS = ("create", "read", "update", "delete")
TYPES = [t for t in ATTRIBUTE_TYPES if t != "uniqueidentifier"]


@bp.get("/")
def index() -> Any:
    """Every entity: system or custom, offline or not, its commands."""
    m = current().model
    rows = sorted(m.entities.values(), key=lambda e: (not e.is_custom, e.display_name))
    return page("entities.html", rows=rows, offline={e.logical_name for e in rows if is_offline(m, e)})


def _lines(name: str) -> list[str]:
    return [line.strip() for line in (request.form.get(name) or "").splitlines() if line.strip()]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def definition_from_form(errors: dict[str, str]) -> dict[str, Any]:
    """The JSON definition the form describes (rows left empty are skipped)."""
    attributes: list[dict[str, Any]] = []
    for i in range(ATTRIBUTE_ROWS):
        name = form_value(f"attr{i}.name", 64)
        if not name:
            continue
        kind = form_value(f"attr{i}.type", 32)
        attr: dict[str, Any] = {"logical_name": name, "type": kind}
        label = form_value(f"attr{i}.label", 100)
        if label:
            attr["display_name"] = label
        if request.form.get(f"attr{i}.required") == "on":
            attr["required"] = True
        length = form_value(f"attr{i}.max_length", 10)
        if length:
            if length.isdigit() and kind in ("string", "memo"):
                attr["max_length"] = int(length)
            else:
                errors[f"attr{i}.max_length"] = f"{name}: a maximum length is a whole number, for text fields only."
        extra = form_value(f"attr{i}.extra", 2000)
        if kind == "lookup":
            attr["targets"] = _split(extra)
        elif kind == "optionset":
            options = []
            for part in [p.strip() for p in extra.split(";") if p.strip()]:
                value, _, text = part.partition("=")
                if not value.strip().lstrip("-").isdigit() or not text.strip():
                    errors[f"attr{i}.extra"] = f"{name}: write options as 1=Label; 2=Other label."
                    break
                options.append({"value": int(value), "label": text.strip()})
            attr["options"] = options
        elif extra:
            errors[f"attr{i}.extra"] = f"{name}: targets and options apply to lookups and option sets only."
        attributes.append(attr)
    if not attributes:
        errors["attr0.name"] = "An entity needs at least one attribute."
    views = []
    for line in _lines("views"):
        parts = [p.strip() for p in line.split("|")]
        view: dict[str, Any] = {"name": parts[0]}
        if len(parts) > 1 and parts[1]:
            view["columns"] = _split(parts[1])
        if len(parts) > 2 and parts[2]:
            view["orderby"] = parts[2]
        views.append(view)
    form_sections = []
    for line in _lines("form"):
        section, sep, fields = line.partition(":")
        if not sep:
            errors["form"] = "Write each form section as Section name: field, field."
            break
        form_sections.append({"name": section.strip(), "fields": _split(fields)})
    out: dict[str, Any] = {
        "logical_name": form_value("logical_name", 64),
        "display_name": form_value("display_name", 100),
        "display_collection_name": form_value("display_collection_name", 100),
        "primary_name": form_value("primary_name", 64),
        "ownership": form_value("ownership", 20) or "user",
        "attributes": attributes,
        "offline_commands": [c for c in COMMANDS if request.form.get(f"command.{c}") == "on"],
    }
    if views:
        out["views"] = views
    if form_sections:
        out["form"] = form_sections
    quick_find = _split(form_value("quick_find", 500))
    if quick_find:
        out["quick_find"] = quick_find
    for key in ("display_name", "display_collection_name"):
        if not out[key]:
            errors[key] = "Required."
    return out


@bp.route("/new", methods=["GET", "POST"])
def new() -> Any:
    """The new-entity form; on success the entity exists, with its table, API and metadata."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        definition = definition_from_form(errors)
        if not errors:
            m = current().model
            try:
                entity = add_entity(db(), services(current_app).registry, m, definition)
            except ValidationFailed as exc:
                errors["definition"] = exc.message
            else:
                commit("entity.create", f"Entity {entity.logical_name}", {"definition": definition})
                return done(
                    "admin.entities.index", f"Entity {entity.display_name} added; devices get it at their next update."
                )
    form = (
        request.form if request.method == "POST" else {"ownership": "user", **{f"command.{c}": "on" for c in COMMANDS}}
    )
    return page(
        "entity_new.html",
        422 if errors else 200,
        form=form,
        errors=errors,
        rows=range(ATTRIBUTE_ROWS),
        types=TYPES,
        commands=COMMANDS,
    )


QUEUED = "devices get the change at their next update; changes already queued for it are refused with a message."


def _entity(name: str) -> Entity:
    found = current().model.entities.get(name)
    if found is None:
        abort(404, "There is no such entity.")
    return found


def _show(entity: Entity, errors: dict[str, str], status: int = 200) -> Any:
    state = entity.attribute("statecode")
    fixed = {entity.primary_id, entity.primary_name, *SYSTEM_ATTRIBUTES}
    return page(
        "entity.html",
        status,
        entity=entity,
        errors=errors,
        states=state.options if state is not None else (),
        removable={a.logical_name for a in entity.attributes if entity.is_custom and a.logical_name not in fixed},
    )


@bp.get("/<name>")
def show(name: str) -> Any:
    """One entity: its attributes and status moves, with what an administrator may change."""
    return _show(_entity(name), {})


@bp.post("/<name>/remove")
def remove(name: str) -> Any:
    """Remove a custom entity with its records."""
    entity = _entity(name)
    try:
        remove_entity(db(), services(current_app).registry, current().model, name)
    except ValidationFailed as exc:
        return _show(entity, {"entity": exc.message}, 422)
    commit("entity.remove", f"Entity {name}")
    return done("admin.entities.index", f"Entity {entity.display_name} removed; {QUEUED}")


@bp.post("/<name>/attributes/<attribute>/remove")
def remove_field(name: str, attribute: str) -> Any:
    """Remove an attribute of a custom entity."""
    entity = _entity(name)
    try:
        remove_attribute(db(), services(current_app).registry, current().model, name, attribute)
    except ValidationFailed as exc:
        return _show(entity, {"attribute": exc.message}, 422)
    commit("entity.attribute.remove", f"Entity {name}", {"attribute": attribute})
    attr = entity.attribute(attribute)
    label = attr.display_name if attr is not None else attribute
    return done("admin.entities.show", f"{label} removed; {QUEUED}", name=name)


@bp.post("/<name>/transitions")
def transitions(name: str) -> Any:
    """Save the statuses a plain update may move this entity's records to (the whole grid)."""
    entity = _entity(name)
    state = entity.attribute("statecode")
    if state is None:
        abort(404, "This entity has no status.")
    moves = {
        start.value: [t.value for t in state.options if request.form.get(f"move.{start.value}.{t.value}") == "on"]
        for start in state.options
    }
    try:
        set_transitions(db(), services(current_app).registry, current().model, name, moves)
    except ValidationFailed as exc:
        return _show(entity, {"transitions": exc.message}, 422)
    commit("entity.transitions", f"Entity {name}", {"moves": {str(k): v for k, v in moves.items()}})
    return done("admin.entities.show", f"Status moves of {entity.display_collection_name} saved; {QUEUED}", name=name)
