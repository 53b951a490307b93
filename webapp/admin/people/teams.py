"""Teams: list, create, edit (unit, members, roles), and delete one that owns no records."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import delete, func, select

from webapp.admin.context import choices, commit, current, db, done, page
from webapp.admin.people import bp
from webapp.admin.people.forms import choice_field, fetch_or_404, held_roles, role_options, text_field
from webapp.crm import epoch
from webapp.crm.orgs import create_team, set_team_members, system_actor
from webapp.crm.records import delete_record, update_record
from webapp.crm.tables import teammembership
from webapp.security.roles import set_team_roles
from webapp.security.tables import fieldprofilemember, recordshare, teamrole


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
    team = fetch_or_404("team", team_id) if team_id else None
    users = choices("systemuser", "fullname")
    errors: dict[str, str] = {}
    if request.method == "GET":
        form: dict[str, Any] = dict(team or {})
        form["members"] = _members(team_id) if team_id else []
        form["roles"] = sorted(held_roles(teamrole, "teamid", team_id)) if team_id else []
    else:
        form = {
            "name": text_field(errors, "team", "name", "Name", required=True),
            "description": text_field(errors, "team", "description", "Description"),
            "businessunitid": choice_field(errors, "businessunitid", "Business unit", choices("businessunit"), True),
            "members": [u for u in request.form.getlist("members") if u in dict(users)],
            "roles": [r for r in request.form.getlist("roles") if r in dict(role_options())],
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
                        fetch_or_404("team", team_id),
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
        roles=role_options(),
    )


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
    team = fetch_or_404("team", team_id)
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
