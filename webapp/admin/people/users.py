"""Users: list, create, edit (unit, manager, position, roles), disable and enable, reset a
password. Moving, disabling or a new password ends the user's sessions at once.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, request
from sqlalchemy import select

from webapp.admin.context import choices, commit, current, db, done, form_value, page
from webapp.admin.people import bp
from webapp.admin.people.forms import choice_field, fetch_or_404, held_roles, role_options, text_field
from webapp.crm.errors import ValidationFailed
from webapp.crm.orgs import system_actor
from webapp.crm.records import update_record
from webapp.security.accounts import in_disabled_business_unit, revoke_user_sessions, set_password
from webapp.security.roles import ADMIN_ROLE, set_user_roles
from webapp.security.setup import new_user
from webapp.security.tables import role, userrole
from webapp.services import services

USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")


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
        "firstname": text_field(errors, "systemuser", "firstname", "First name"),
        "lastname": text_field(errors, "systemuser", "lastname", "Last name", required=True),
        "internalemailaddress": text_field(errors, "systemuser", "internalemailaddress", "Email"),
        "businessunitid": choice_field(errors, "businessunitid", "Business unit", choices("businessunit"), True),
        "parentsystemuserid": choice_field(
            errors, "parentsystemuserid", "Manager", choices("systemuser", "fullname"), False
        ),
        "positionid": choice_field(errors, "positionid", "Position", choices("position"), False),
    }
    if values["parentsystemuserid"] and values["parentsystemuserid"] == user_id:
        errors["parentsystemuserid"] = "A user cannot be their own manager."
    email = values["internalemailaddress"]
    if email and not re.match(r"^[^@\s]+@[^@\s]+$", email):
        errors["internalemailaddress"] = "Enter an email address like name@example.com."
    role_ids = [r for r in request.form.getlist("roles") if r in dict(role_options())]
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
            role_names = [dict(role_options())[r] for r in form["roles"]]
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
        roles=role_options(),
    )


@bp.route("/users/<user_id>", methods=["GET", "POST"])
def user_edit(user_id: str) -> Any:
    """Edit a user's names, email, unit, manager, position and roles."""
    user = fetch_or_404("systemuser", user_id)
    errors: dict[str, str] = {}
    if request.method == "GET":
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, errors)
    form = _user_form(errors, creating=False, user_id=user_id)
    role_names = dict(role_options())
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
    user = fetch_or_404("systemuser", user_id)
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
    user = fetch_or_404("systemuser", user_id)
    password = request.form.get("password") or ""
    if password != (request.form.get("confirm") or ""):
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, {"password": "The two passwords are not the same."})
    try:
        set_password(db(), services(current_app).hasher, user_id, password)
    except ValidationFailed as exc:
        form = {k: user.get(k) for k in user}
        form["roles"] = sorted(held_roles(userrole, "systemuserid", user_id))
        return _user_page(user, form, {"password": exc.message})
    commit("user.password_reset", f"User {user['username']}", signed_out=[user_id])
    return done("admin.people.user_edit", "Password reset; the user's sessions were ended.", user_id=user_id)
