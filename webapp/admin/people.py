"""Users, teams, business units, positions, security roles (a privilege grid each) and field
security profiles: list, create, edit; disable and enable users; reset a password.

Structure records are ordinary entity records written by the system actor, so they are
change-logged and reach devices like any other record.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, current_app, request
from sqlalchemy import delete, func, select

from webapp import services
from webapp.admin.context import choices, commit, current, db, done, form_value, page
from webapp.crm import epoch
from webapp.crm.errors import CrmError, ValidationFailed
from webapp.crm.orgs import create_business_unit, create_position, create_team, set_team_members, system_actor
from webapp.crm.records import delete_record, fetch, update_record
from webapp.crm.tables import teammembership
from webapp.security import fieldsecurity
from webapp.security.accounts import (
    in_disabled_business_unit,
    revoke_business_unit_sessions,
    revoke_user_sessions,
    set_password,
)
from webapp.security.roles import (
    ADMIN_ROLE,
    DEPTHS,
    NONE,
    ORG,
    PRIVILEGES,
    create_role,
    grant,
    rename_role,
    set_team_roles,
    set_user_roles,
)
from webapp.security.setup import new_user
from webapp.security.tables import (
    fieldpermission,
    fieldprofile,
    fieldprofilemember,
    recordshare,
    role,
    roleprivilege,
    securedattribute,
    teamrole,
    userrole,
)

bp = Blueprint("people", __name__)
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
DEPTH_LABELS = {
    "none": "None",
    "user": "User",
    "businessunit": "Business Unit",
    "parentchild": "Parent: Child BUs",
    "organization": "Organization",
}


def _record(entity_name: str, record_id: str) -> dict[str, Any]:
    m = current().model
    row = fetch(db(), m, m.entity(entity_name), record_id)
    if row is None:
        abort(404, f"There is no such {m.entity(entity_name).display_name.lower()}.")
    return row


def _text(errors: dict[str, str], entity_name: str, field: str, label: str, required: bool = False) -> str | None:
    """A text field checked against the attribute's length; None when left empty."""
    value = form_value(field, 10_000)
    attr = current().model.entity(entity_name).attribute(field)
    limit = (attr.max_length if attr else None) or 100
    if required and not value:
        errors[field] = f"{label} is required."
    elif len(value) > limit:
        errors[field] = f"{label} may have at most {limit} characters."
    return value or None


def _choice(errors: dict[str, str], field: str, label: str, options: list[tuple[str, str]], required: bool) -> Any:
    value = form_value(field, 64)
    if not value:
        if required:
            errors[field] = f"Choose a {label.lower()}."
        return None
    if value not in {k for k, _ in options}:
        errors[field] = f"Choose a {label.lower()} from the list."
        return None
    return value


def _role_rows() -> list[tuple[str, str]]:
    m = current().model
    return [
        (str(r.roleid), str(r.name))
        for r in db().execute(
            select(role.c.roleid, role.c.name).where(role.c.organizationid == m.org_id).order_by(role.c.name)
        )
    ]


def _held_roles(table: Any, key: str, principal_id: str) -> set[str]:
    return set(db().execute(select(table.c.roleid).where(table.c[key] == principal_id)).scalars())


# --- users ----------------------------------------------------------------------------------


@bp.get("/users")
def users() -> Any:
    """Every user with unit, roles and status."""
    m = current().model
    t = m.tables["systemuser"]
    bus = dict(choices("businessunit"))
    held: dict[str, list[str]] = {}
    for r in db().execute(
        select(userrole.c.systemuserid, role.c.name)
        .join(role, role.c.roleid == userrole.c.roleid)
        .where(userrole.c.organizationid == m.org_id)
        .order_by(role.c.name)
    ):
        held.setdefault(r.systemuserid, []).append(r.name)
    rows = db().execute(select(t).where(t.c.organizationid == m.org_id).order_by(t.c.fullname)).mappings().all()
    return page("users.html", rows=rows, bus=bus, held=held)


def _user_form(errors: dict[str, str], creating: bool, user_id: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "firstname": _text(errors, "systemuser", "firstname", "First name"),
        "lastname": _text(errors, "systemuser", "lastname", "Last name", required=True),
        "internalemailaddress": _text(errors, "systemuser", "internalemailaddress", "Email"),
        "businessunitid": _choice(errors, "businessunitid", "Business unit", choices("businessunit"), True),
        "parentsystemuserid": _choice(
            errors, "parentsystemuserid", "Manager", choices("systemuser", "fullname"), False
        ),
        "positionid": _choice(errors, "positionid", "Position", choices("position"), False),
    }
    if values["parentsystemuserid"] and values["parentsystemuserid"] == user_id:
        errors["parentsystemuserid"] = "A user cannot be their own manager."
    email = values["internalemailaddress"]
    if email and not re.match(r"^[^@\s]+@[^@\s]+$", email):
        errors["internalemailaddress"] = "Enter an email address like name@example.com."
    role_ids = [r for r in request.form.getlist("roles") if r in dict(_role_rows())]
    values["roles"] = role_ids
    if creating:
        values["username"] = form_value("username", 200)
        if not USERNAME_RE.match(values["username"]):
            errors["username"] = "A username has 2-100 letters, digits or . _ @ - (no spaces)."
        password = request.form.get("password") or ""
        if len(password) < 8:
            errors["password"] = "The password must have at least 8 characters."
        values["password"] = password
    return values


# A serious CRM does not place people in a unit that is switched off: they could not sign in,
# and enabling the unit later should not quietly bring in people nobody placed there then.
DISABLED_UNIT = "This business unit is disabled (or is under a disabled one): enable it first, or choose another."


@bp.route("/users/new", methods=["GET", "POST"])
def user_new() -> Any:
    """Create a user who can sign in, with roles."""
    form: dict[str, Any] = {"roles": []}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = _user_form(errors, creating=True)
        if form["businessunitid"] and in_disabled_business_unit(db(), current().model.org_id, form["businessunitid"]):
            errors["businessunitid"] = DISABLED_UNIT
        if not errors:
            m = current().model
            role_names = [dict(_role_rows())[r] for r in form["roles"]]
            try:
                user_id = new_user(
                    db(),
                    m,
                    services(current_app).hasher,
                    form["username"],
                    form["password"],
                    form["lastname"],
                    form["businessunitid"],
                    role_names,
                    firstname=form["firstname"],
                    manager_id=form["parentsystemuserid"],
                    position_id=form["positionid"],
                    email=form["internalemailaddress"],
                )
            except ValidationFailed as exc:
                errors[exc.field or "username"] = exc.message
            else:
                commit("user.create", f"User {form['username']}", {"id": user_id, "roles": role_names})
                return done("admin.people.users", f"User {form['username']} created.")
        form.pop("password", None)
    return _user_page(None, form, errors)


def _user_page(user: dict[str, Any] | None, form: dict[str, Any], errors: dict[str, str]) -> Any:
    return page(
        "user.html",
        422 if errors else 200,
        user=user,
        form=form,
        errors=errors,
        bus=choices("businessunit"),
        managers=[u for u in choices("systemuser", "fullname") if not user or u[0] != user["systemuserid"]],
        positions=choices("position"),
        roles=_role_rows(),
    )


@bp.route("/users/<user_id>", methods=["GET", "POST"])
def user_edit(user_id: str) -> Any:
    """Edit a user's names, email, unit, manager, position and roles."""
    user = _record("systemuser", user_id)
    errors: dict[str, str] = {}
    if request.method == "GET":
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(_held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, errors)
    form = _user_form(errors, creating=False, user_id=user_id)
    role_names = dict(_role_rows())
    if user_id == current().info.user_id and ADMIN_ROLE not in [role_names[r] for r in form["roles"]]:
        errors["roles"] = "You cannot take the System Administrator role away from yourself."
    moved = bool(form["businessunitid"]) and form["businessunitid"] != user.get("businessunitid")
    if moved and in_disabled_business_unit(db(), current().model.org_id, form["businessunitid"]):
        errors["businessunitid"] = DISABLED_UNIT
    if errors:
        return _user_page(user, form, errors)
    m = current().model
    values = {
        k: form[k]
        for k in ("firstname", "lastname", "internalemailaddress", "businessunitid", "parentsystemuserid", "positionid")
    }
    update_record(db(), m, system_actor(m), m.entity("systemuser"), user, values)
    set_user_roles(db(), m, user_id, form["roles"])
    if moved:  # a new unit is a new security context: sign them out everywhere, as disabling does
        revoke_user_sessions(db(), user_id)
    commit(
        "user.update",
        f"User {user['username']}",
        {"values": values, "roles": form["roles"], **({"signed_out": 1} if moved else {})},
        signed_out=[user_id] if moved else [],
    )
    said = "User saved; they moved to another business unit and were signed out." if moved else "User saved."
    return done("admin.people.user_edit", said, user_id=user_id)


@bp.post("/users/<user_id>/status")
def user_status(user_id: str) -> Any:
    """Disable a user (their sessions end at once) or enable them again."""
    user = _record("systemuser", user_id)
    disable = request.form.get("action") == "disable"
    if disable and user_id == current().info.user_id:
        return done("admin.people.user_edit", "You cannot disable yourself.", user_id=user_id)
    m = current().model
    update_record(db(), m, system_actor(m), m.entity("systemuser"), user, {"isdisabled": disable})
    if disable:
        revoke_user_sessions(db(), user_id)
    commit(
        "user.disable" if disable else "user.enable",
        f"User {user['username']}",
        signed_out=[user_id] if disable else [],
    )
    return done("admin.people.user_edit", f"User {'disabled' if disable else 'enabled'}.", user_id=user_id)


@bp.post("/users/<user_id>/password")
def user_password(user_id: str) -> Any:
    """Reset a user's password (their sessions end; they sign in with the new one)."""
    user = _record("systemuser", user_id)
    password = request.form.get("password") or ""
    if password != (request.form.get("confirm") or ""):
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(_held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, {"password": "The two passwords are not the same."})
    try:
        set_password(db(), services(current_app).hasher, user_id, password)
    except ValidationFailed as exc:
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(_held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, {"password": exc.message})
    commit("user.password_reset", f"User {user['username']}", signed_out=[user_id])
    return done("admin.people.user_edit", "Password reset; the user's sessions were ended.", user_id=user_id)


# --- teams ----------------------------------------------------------------------------------


def _members(team_id: str) -> list[str]:
    return list(db().execute(select(teammembership.c.systemuserid).where(teammembership.c.teamid == team_id)).scalars())


@bp.get("/teams")
def teams() -> Any:
    """Every team with its unit and member count."""
    m = current().model
    t = m.tables["team"]
    counts: dict[str, int] = dict(
        db()
        .execute(
            select(teammembership.c.teamid, func.count())
            .where(teammembership.c.organizationid == m.org_id)
            .group_by(teammembership.c.teamid)
        )
        .all()
    )
    rows = db().execute(select(t).where(t.c.organizationid == m.org_id).order_by(t.c.name)).mappings().all()
    return page("teams.html", rows=rows, bus=dict(choices("businessunit")), counts=counts)


@bp.route("/teams/new", methods=["GET", "POST"])
@bp.route("/teams/<team_id>", methods=["GET", "POST"])
def team_edit(team_id: str | None = None) -> Any:
    """Create or edit a team: name, unit, description, members and roles."""
    team = _record("team", team_id) if team_id else None
    users = choices("systemuser", "fullname")
    errors: dict[str, str] = {}
    if request.method == "GET":
        form: dict[str, Any] = dict(team or {})
        form["members"] = _members(team_id) if team_id else []
        form["roles"] = sorted(_held_roles(teamrole, "teamid", team_id)) if team_id else []
    else:
        form = {
            "name": _text(errors, "team", "name", "Name", required=True),
            "description": _text(errors, "team", "description", "Description"),
            "businessunitid": _choice(errors, "businessunitid", "Business unit", choices("businessunit"), True),
            "members": [u for u in request.form.getlist("members") if u in dict(users)],
            "roles": [r for r in request.form.getlist("roles") if r in dict(_role_rows())],
        }
        if not errors:
            m = current().model
            dbs = db()
            if team is None:
                team_id = create_team(dbs, m, form["name"], form["businessunitid"], form["members"])
                if form["description"]:
                    update_record(
                        dbs,
                        m,
                        system_actor(m),
                        m.entity("team"),
                        _record("team", team_id),
                        {"description": form["description"]},
                    )
            else:
                values = {k: form[k] for k in ("name", "description", "businessunitid")}
                update_record(dbs, m, system_actor(m), m.entity("team"), team, values)
                assert team_id is not None  # an existing team came with its id
                set_team_members(dbs, m, team_id, form["members"])
            assert team_id is not None
            set_team_roles(dbs, m, team_id, form["roles"])
            commit(
                "team.create" if team is None else "team.update",
                f"Team {form['name']}",
                {"members": form["members"], "roles": form["roles"]},
            )
            return done("admin.people.team_edit", "Team saved.", team_id=team_id)
    return page(
        "team.html",
        422 if errors else 200,
        team=team,
        form=form,
        errors=errors,
        bus=choices("businessunit"),
        users=users,
        roles=_role_rows(),
    )


# --- business units and positions -----------------------------------------------------------


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
    unit = _record("businessunit", record_id)
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
    record = _record(entity_name, record_id) if record_id else None
    options = [o for o in choices(entity_name) if o[0] != record_id]
    errors: dict[str, str] = {}
    form: dict[str, Any] = dict(record or {})
    is_root = record is not None and entity_name == "businessunit" and not record.get(parent_attr)
    if request.method == "POST":
        form = {
            "name": _text(errors, entity_name, "name", "Name", required=True),
            parent_attr: _choice(
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


# --- security roles -------------------------------------------------------------------------


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
    return page("roles.html", roles=_role_rows(), holders=holders)


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


def _grid_entities() -> list[Any]:
    m = current().model
    return sorted((e for e in m.entities.values() if not e.union_of), key=lambda e: e.display_name)


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
        for entity in _grid_entities():
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
        entities=_grid_entities(),
        privileges=PRIVILEGES,
        depth_labels=DEPTH_LABELS,
        star=current_depths,
    )


# --- field security profiles ----------------------------------------------------------------


def _secured() -> list[tuple[str, str]]:
    m = current().model
    return [
        (r.entity, r.attribute)
        for r in db().execute(
            select(securedattribute.c.entity, securedattribute.c.attribute)
            .where(securedattribute.c.organizationid == m.org_id)
            .order_by(securedattribute.c.entity, securedattribute.c.attribute)
        )
    ]


def _securable() -> list[tuple[str, str, str]]:
    """(entity, attribute, label) of every attribute that could be secured."""
    out = []
    for e in _grid_entities():
        for a in e.attributes:
            if a.logical_name != e.primary_id and not a.read_only:
                out.append((e.logical_name, a.logical_name, f"{e.display_name}: {a.display_name or a.logical_name}"))
    return out


@bp.route("/field-security", methods=["GET", "POST"])
def field_security() -> Any:
    """Secured fields (secure one, or release one) and the list of profiles."""
    m = current().model
    errors: dict[str, str] = {}
    if request.method == "POST":
        target = form_value("attribute", 200)
        entity_name, _, attribute = target.partition(".")
        secure = request.form.get("action") != "release"
        try:
            fieldsecurity.set_secured(db(), m, entity_name, attribute, secure)
        except CrmError as exc:
            errors["attribute"] = exc.message
        else:
            commit("field.secure" if secure else "field.release", f"Field {target}")
            return done(
                "admin.people.field_security", f"{target} is {'now secured' if secure else 'no longer secured'}."
            )
    profiles = (
        db()
        .execute(select(fieldprofile).where(fieldprofile.c.organizationid == m.org_id).order_by(fieldprofile.c.name))
        .all()
    )
    return page(
        "field_security.html",
        422 if errors else 200,
        secured=_secured(),
        securable=_securable(),
        profiles=profiles,
        errors=errors,
    )


@bp.route("/field-security/new", methods=["GET", "POST"])
def profile_new() -> Any:
    """Create a field security profile."""
    errors: dict[str, str] = {}
    name = ""
    if request.method == "POST":
        name = form_value("name", 200)
        if not name or len(name) > 100:
            errors["name"] = "A profile needs a name of 1-100 characters."
        else:
            try:
                pid = fieldsecurity.create_profile(db(), current().model, name)
            except ValidationFailed as exc:
                errors["name"] = exc.message
            else:
                commit("fieldprofile.create", f"Field security profile {name}")
                return done("admin.people.profile_edit", "Profile created.", profile_id=pid)
    return page("role_new.html", 422 if errors else 200, name=name, errors=errors, kind="profile")


@bp.route("/field-security/<profile_id>", methods=["GET", "POST"])
def profile_edit(profile_id: str) -> Any:
    """What a profile allows on each secured field, and who holds it (users and teams)."""
    m = current().model
    row = (
        db()
        .execute(
            select(fieldprofile).where(
                fieldprofile.c.profileid == profile_id, fieldprofile.c.organizationid == m.org_id
            )
        )
        .first()
    )
    if row is None:
        abort(404, "There is no such field security profile.")
    secured = _secured()
    users = choices("systemuser", "fullname")
    teams_ = choices("team")
    if request.method == "POST":
        dbs = db()
        for entity_name, attribute in secured:
            key = f"{entity_name}.{attribute}"
            rights = [request.form.get(f"{key}.{r}") == "on" for r in ("read", "create", "update")]
            if any(rights):
                fieldsecurity.set_permission(dbs, m, profile_id, entity_name, attribute, *rights)
            else:
                fieldsecurity.clear_permission(dbs, profile_id, entity_name, attribute)
        members = [(u, "systemuser") for u in request.form.getlist("users") if u in dict(users)]
        members += [(t, "team") for t in request.form.getlist("teams") if t in dict(teams_)]
        fieldsecurity.set_members(dbs, m, profile_id, members)
        commit("fieldprofile.update", f"Field security profile {row.name}", {"members": [x[0] for x in members]})
        return done("admin.people.profile_edit", "Profile saved.", profile_id=profile_id)
    perms = {
        f"{r.entity}.{r.attribute}": r
        for r in db().execute(select(fieldpermission).where(fieldpermission.c.profileid == profile_id))
    }
    members_now = set(
        db()
        .execute(select(fieldprofilemember.c.principalid).where(fieldprofilemember.c.profileid == profile_id))
        .scalars()
    )
    return page(
        "profile_edit.html", profile=row, secured=secured, perms=perms, users=users, teams=teams_, members=members_now
    )


# --- deleting what nothing depends on -------------------------------------------------------


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


@bp.post("/field-security/<profile_id>/delete")
def profile_delete(profile_id: str) -> Any:
    """Delete a field security profile (its holders lose what it granted)."""
    m = current().model
    row = (
        db()
        .execute(
            select(fieldprofile).where(
                fieldprofile.c.profileid == profile_id, fieldprofile.c.organizationid == m.org_id
            )
        )
        .first()
    )
    if row is None:
        abort(404, "There is no such field security profile.")
    epoch.bump(db(), m.org_id)
    db().execute(delete(fieldpermission).where(fieldpermission.c.profileid == profile_id))
    db().execute(delete(fieldprofilemember).where(fieldprofilemember.c.profileid == profile_id))
    db().execute(delete(fieldprofile).where(fieldprofile.c.profileid == profile_id))
    commit("fieldprofile.delete", f"Field security profile {row.name}")
    return done("admin.people.field_security", f"Profile {row.name} deleted.")


def _owned_by(owner_id: str) -> int:
    """How many records a user or team owns, over every user-owned entity."""
    m = current().model
    total = 0
    for entity in m.entities.values():
        if entity.ownership != "user" or entity.union_of:
            continue
        t = m.tables[entity.logical_name]
        total += (
            db()
            .execute(select(func.count()).where(t.c.organizationid == m.org_id, t.c.ownerid == owner_id))
            .scalar_one()
        )
    return int(total)


@bp.post("/teams/<team_id>/delete")
def team_delete(team_id: str) -> Any:
    """Delete a team that owns no records (its members, roles and profiles go with it)."""
    team = _record("team", team_id)
    owned = _owned_by(team_id)
    if owned:
        msg = f"The team owns {owned} record(s): assign them to someone else first."
        return done("admin.people.team_edit", msg, team_id=team_id)
    m = current().model
    dbs = db()
    epoch.bump(dbs, m.org_id)
    dbs.execute(delete(teammembership).where(teammembership.c.teamid == team_id))
    dbs.execute(delete(teamrole).where(teamrole.c.teamid == team_id))
    dbs.execute(delete(fieldprofilemember).where(fieldprofilemember.c.principalid == team_id))
    dbs.execute(
        delete(recordshare).where(recordshare.c.organizationid == m.org_id, recordshare.c.principalid == team_id)
    )
    delete_record(dbs, m, system_actor(m), m.entity("team"), team)
    commit("team.delete", f"Team {team['name']}")
    return done("admin.people.teams", f"Team {team['name']} deleted.")


@bp.post("/positions/<record_id>/delete")
def position_delete(record_id: str) -> Any:
    """Delete a position: its holders and child positions are left without one."""
    position = _record("position", record_id)
    m = current().model
    delete_record(db(), m, system_actor(m), m.entity("position"), position)
    commit("position.delete", f"Position {position['name']}")
    return done("admin.people.positions", f"Position {position['name']} deleted.")
