"""Field security: which fields are secured, and the profiles that grant read, create or
update on them to users and teams.
"""

from __future__ import annotations

from typing import Any

from flask import abort, request
from sqlalchemy import delete, select

from webapp.admin.context import choices, commit, current, db, done, form_value, page
from webapp.admin.people import bp
from webapp.admin.people.forms import grid_entities
from webapp.crm import epoch
from webapp.crm.errors import CrmError, ValidationFailed
from webapp.security import fieldsecurity
from webapp.security.tables import fieldpermission, fieldprofile, fieldprofilemember, securedattribute


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
    for e in grid_entities():
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
