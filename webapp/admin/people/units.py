"""The two trees: business units (disable one and its people are signed out) and positions."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from webapp.admin.context import choices, commit, current, db, done, page
from webapp.admin.people import bp
from webapp.admin.people.forms import choice_field, fetch_or_404, text_field
from webapp.crm.orgs import create_business_unit, create_position, system_actor
from webapp.crm.records import delete_record, update_record
from webapp.security.accounts import revoke_business_unit_sessions


def _ancestors(entity_name: str, parent_attr: str, start: str | None) -> set[str]:
    m = current().model
    t = m.tables[entity_name]
    pk = m.entity(entity_name).primary_id
    parents = dict(db().execute(select(t.c[pk], t.c[parent_attr]).where(t.c.organizationid == m.org_id)).all())
    seen: set[str] = set()
    while start and start not in seen:
        seen.add(start)
        start = parents.get(start)
    return seen


@bp.get("/business-units")
def business_units() -> Any:
    """Every business unit with its parent."""
    return _tree_list("businessunit", "parentbusinessunitid", "Business units", "admin.people.business_unit_edit")


@bp.get("/positions")
def positions() -> Any:
    """Every position with its parent."""
    return _tree_list("position", "parentpositionid", "Positions", "admin.people.position_edit")


def _tree_list(entity_name: str, parent_attr: str, title: str, edit_endpoint: str) -> Any:
    m = current().model
    t = m.tables[entity_name]
    rows = db().execute(select(t).where(t.c.organizationid == m.org_id).order_by(t.c.name)).mappings().all()
    names = dict(choices(entity_name))
    return page(
        "tree.html",
        rows=rows,
        names=names,
        title=title,
        entity=m.entity(entity_name),
        parent_attr=parent_attr,
        edit_endpoint=edit_endpoint,
    )


@bp.route("/business-units/new", methods=["GET", "POST"])
@bp.route("/business-units/<record_id>", methods=["GET", "POST"])
def business_unit_edit(record_id: str | None = None) -> Any:
    """Create or edit a business unit (name, parent)."""
    return _tree_edit(
        "businessunit",
        "parentbusinessunitid",
        record_id,
        "Business unit",
        "admin.people.business_unit_edit",
        create_business_unit,
    )


@bp.post("/business-units/<record_id>/status")
def business_unit_status(record_id: str) -> Any:
    """Disable a business unit (its people and those below cannot sign in; their sessions end) or enable it."""
    unit = fetch_or_404("businessunit", record_id)
    disable = request.form.get("action") == "disable"
    endpoint = "admin.people.business_unit_edit"
    if disable and not unit.get("parentbusinessunitid"):
        return done(endpoint, "The root business unit cannot be disabled.", record_id=record_id)
    own_units = _ancestors("businessunit", "parentbusinessunitid", current().principal.business_unit_id)
    if disable and record_id in own_units:
        return done(endpoint, "You cannot disable the business unit you belong to.", record_id=record_id)
    m = current().model
    update_record(db(), m, system_actor(m), m.entity("businessunit"), unit, {"isdisabled": disable})
    people = revoke_business_unit_sessions(db(), m.org_id, record_id) if disable else []
    commit(
        "businessunit.disable" if disable else "businessunit.enable",
        f"Business unit {unit['name']}",
        {"signed_out": len(people)} if disable else None,
        signed_out=people,
    )
    said = f"disabled; {len(people)} people signed out" if disable else "enabled"
    return done(endpoint, f"Business unit {said}.", record_id=record_id)


@bp.route("/positions/new", methods=["GET", "POST"])
@bp.route("/positions/<record_id>", methods=["GET", "POST"])
def position_edit(record_id: str | None = None) -> Any:
    """Create or edit a position (name, parent)."""
    return _tree_edit(
        "position", "parentpositionid", record_id, "Position", "admin.people.position_edit", create_position
    )


def _tree_edit(
    entity_name: str, parent_attr: str, record_id: str | None, label: str, endpoint: str, create: Any
) -> Any:
    m = current().model
    record = fetch_or_404(entity_name, record_id) if record_id else None
    options = [o for o in choices(entity_name) if o[0] != record_id]
    errors: dict[str, str] = {}
    form: dict[str, Any] = dict(record or {})
    is_root = record is not None and entity_name == "businessunit" and not record.get(parent_attr)
    if request.method == "POST":
        form = {
            "name": text_field(errors, entity_name, "name", "Name", required=True),
            parent_attr: choice_field(
                errors, parent_attr, "Parent", options, required=entity_name == "businessunit" and not is_root
            ),
        }
        if record_id and form[parent_attr] and record_id in _ancestors(entity_name, parent_attr, form[parent_attr]):
            errors[parent_attr] = f"A {label.lower()} cannot be placed under itself or one of its children."
        if is_root:
            form[parent_attr] = None
        if not errors:
            if record is None:
                record_id = create(db(), m, form["name"], form[parent_attr])
                action = "create"
            else:
                update_record(db(), m, system_actor(m), m.entity(entity_name), record, form)
                action = "update"
            commit(f"{entity_name}.{action}", f"{label} {form['name']}", {"parent": form[parent_attr]})
            return done(endpoint, f"{label} saved.", record_id=record_id)
    return page(
        "tree_edit.html",
        422 if errors else 200,
        record=record,
        form=form,
        errors=errors,
        label=label,
        parent_attr=parent_attr,
        options=options,
        is_root=is_root,
        entity_name=entity_name,
    )


@bp.post("/positions/<record_id>/delete")
def position_delete(record_id: str) -> Any:
    """Delete a position: its holders and child positions are left without one."""
    position = fetch_or_404("position", record_id)
    m = current().model
    delete_record(db(), m, system_actor(m), m.entity("position"), position)
    commit("position.delete", f"Position {position['name']}")
    return done("admin.people.positions", f"Position {position['name']} deleted.")
