"""Security roles: list, create, the privilege grid (entity x privilege -> depth), delete one
nobody holds.
"""

from __future__ import annotations

from typing import Any

from flask import abort, request
from sqlalchemy import delete, func, select

from webapp.admin.context import commit, current, db, done, form_value, page
from webapp.admin.people import bp
from webapp.admin.people.forms import grid_entities, role_options
from webapp.crm import epoch
from webapp.crm.errors import ValidationFailed
from webapp.security.roles import ADMIN_ROLE, DEPTHS, NONE, ORG, PRIVILEGES, create_role, grant, rename_role
from webapp.security.tables import role, roleprivilege, teamrole, userrole

DEPTH_LABELS = {
    "none": "None",
    "user": "User",
    "businessunit": "Business Unit",
    "parentchild": "Parent: Child BUs",
    "organization": "Organization",
}


@bp.get("/roles")
def roles() -> Any:
    """Every role with how many users and teams hold it."""
    m = current().model
    holders: dict[str, int] = dict(
        db()
        .execute(
            select(userrole.c.roleid, func.count())
            .where(userrole.c.organizationid == m.org_id)
            .group_by(userrole.c.roleid)
        )
        .all()
    )
    return page("roles.html", roles=role_options(), holders=holders)


@bp.route("/roles/new", methods=["GET", "POST"])
def role_new() -> Any:
    """Create an empty role, then fill in its privilege grid."""
    errors: dict[str, str] = {}
    name = ""
    if request.method == "POST":
        name = form_value("name", 200)
        try:
            rid = create_role(db(), current().model, name)
        except ValidationFailed as exc:
            errors["name"] = exc.message
        else:
            commit("role.create", f"Role {name}")
            return done("admin.people.role_edit", "Role created: now give it privileges.", role_id=rid)
    return page("role_new.html", 422 if errors else 200, name=name, errors=errors)


@bp.route("/roles/<role_id>", methods=["GET", "POST"])
def role_edit(role_id: str) -> Any:
    """The privilege grid: per entity and privilege, the depth the role holds."""
    m = current().model
    row = db().execute(select(role).where(role.c.roleid == role_id, role.c.organizationid == m.org_id)).first()
    if row is None:
        abort(404, "There is no such role.")
    current_depths = {
        (r.entity, r.privilege): r.depth
        for r in db().execute(select(roleprivilege).where(roleprivilege.c.roleid == role_id))
    }
    names = {v: k for k, v in DEPTHS.items()}
    locked = row.name == ADMIN_ROLE
    errors: dict[str, str] = {}
    grid = {f"{e}.{p}": names[d] for (e, p), d in current_depths.items()}
    name = row.name
    if request.method == "POST" and not locked:
        name = form_value("name", 200)
        changes: list[tuple[str, str, int]] = []
        for entity in grid_entities():
            for privilege in PRIVILEGES:
                key = f"{entity.logical_name}.{privilege}"
                chosen = request.form.get(key, "none")
                grid[key] = chosen
                if chosen not in DEPTHS:
                    errors[key] = f"{entity.display_name} {privilege}: choose a depth from the list."
                    continue
                depth = DEPTHS[chosen]
                if entity.ownership == "organization" and depth not in (NONE, ORG):
                    errors[key] = (
                        f"{entity.display_name} is owned by the organisation: its depth is None or Organization."
                    )
                elif current_depths.get((entity.logical_name, privilege), NONE) != depth:
                    changes.append((entity.logical_name, privilege, depth))
        try:
            if name != row.name:
                rename_role(db(), m, role_id, name)
        except ValidationFailed as exc:
            errors["name"] = exc.message
        if not errors:
            for entity_name, privilege, depth in changes:
                grant(db(), m, role_id, entity_name, privilege, depth)
            commit("role.update", f"Role {name}", {"changes": [list(c) for c in changes], "renamed": name != row.name})
            return done("admin.people.role_edit", f"Role saved ({len(changes)} privilege(s) changed).", role_id=role_id)
    elif request.method == "POST":
        errors["name"] = "The System Administrator role holds every privilege and cannot be changed."
    return page(
        "role.html",
        422 if errors else 200,
        role=row,
        name=name,
        grid=grid,
        errors=errors,
        locked=locked,
        entities=grid_entities(),
        privileges=PRIVILEGES,
        depth_labels=DEPTH_LABELS,
        star=current_depths,
    )


@bp.post("/roles/<role_id>/delete")
def role_delete(role_id: str) -> Any:
    """Delete a role nobody holds (the System Administrator role never)."""
    m = current().model
    row = db().execute(select(role).where(role.c.roleid == role_id, role.c.organizationid == m.org_id)).first()
    if row is None:
        abort(404, "There is no such role.")
    if row.name == ADMIN_ROLE:
        return done("admin.people.role_edit", "The System Administrator role cannot be deleted.", role_id=role_id)
    users = db().execute(select(func.count()).where(userrole.c.roleid == role_id)).scalar_one()
    teams_ = db().execute(select(func.count()).where(teamrole.c.roleid == role_id)).scalar_one()
    if users or teams_:
        msg = f"The role is held by {users} user(s) and {teams_} team(s): take it away from them first."
        return done("admin.people.role_edit", msg, role_id=role_id)
    epoch.bump(db(), m.org_id)
    db().execute(delete(roleprivilege).where(roleprivilege.c.roleid == role_id))
    db().execute(delete(role).where(role.c.roleid == role_id))
    commit("role.delete", f"Role {row.name}")
    return done("admin.people.roles", f"Role {row.name} deleted.")
