"""Form fields and lookups the people pages share: a record or 404, a text or choice field
checked against the metadata, the organisation's roles, the entities of a privilege grid.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from sqlalchemy import select

from webapp.admin.context import current, db, form_value
from webapp.crm.records import fetch
from webapp.security.tables import role


def fetch_or_404(entity_name: str, record_id: str) -> dict[str, Any]:
    """The record of this organisation, or a 404 page that names the entity."""
    m = current().model
    row = fetch(db(), m, m.entity(entity_name), record_id)
    if row is None:
        abort(404, f"There is no such {m.entity(entity_name).display_name.lower()}.")
    return row


def text_field(errors: dict[str, str], entity_name: str, field: str, label: str, required: bool = False) -> str | None:
    """A text field checked against the attribute's length; None when left empty."""
    value = form_value(field, 10_000)
    attr = current().model.entity(entity_name).attribute(field)
    limit = (attr.max_length if attr else None) or 100
    if required and not value:
        errors[field] = f"{label} is required."
    elif len(value) > limit:
        errors[field] = f"{label} may have at most {limit} characters."
    return value or None


def choice_field(errors: dict[str, str], field: str, label: str, options: list[tuple[str, str]], required: bool) -> Any:
    value = form_value(field, 64)
    if not value:
        if required:
            errors[field] = f"Choose a {label.lower()}."
        return None
    if value not in {k for k, _ in options}:
        errors[field] = f"Choose a {label.lower()} from the list."
        return None
    return value


def role_options() -> list[tuple[str, str]]:
    """(id, name) of every role of the organisation, by name: the choices of a roles field."""
    m = current().model
    return [
        (str(r.roleid), str(r.name))
        for r in db().execute(
            select(role.c.roleid, role.c.name).where(role.c.organizationid == m.org_id).order_by(role.c.name)
        )
    ]


def held_roles(table: Any, key: str, principal_id: str) -> set[str]:
    """The role ids a user (`userrole`) or team (`teamrole`) holds."""
    return set(db().execute(select(table.c.roleid).where(table.c[key] == principal_id)).scalars())


def grid_entities() -> list[Any]:
    """The entities a privilege grid or field security lists: every real (not union) entity."""
    m = current().model
    return sorted((e for e in m.entities.values() if not e.union_of), key=lambda e: e.display_name)
