"""The security epoch moves with every change that can alter what a user may see or do, in the
same transaction, and with nothing else (webapp/crm/epoch.py); on PostgreSQL it is announced
to every process when, and only when, the change commits.

Three nets: a table of every kind of change through the functions that make it; every admin
page that POSTs and every CLI command, each either shown to move the epoch or listed with the
reason it cannot change access (a new page or command fails until it is classified); and the
suite-wide guard (tests/epoch_guard.py) that fails any commit writing a security table without
a bump.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tests import epoch_guard
from tests.conftest import Api, Org, sign_in
from webapp.cli import main
from webapp.crm import epoch
from webapp.crm.orgs import (
    add_team_member,
    create_business_unit,
    create_position,
    create_team,
    save_settings,
    set_team_members,
    system_actor,
)
from webapp.crm.records import Actor, Owner, fetch, insert_record, update_record
from webapp.crm.registry import OrgModel
from webapp.security import fieldsecurity
from webapp.security.operations import assign, share, unshare
from webapp.security.roles import (
    ORG,
    assign_team_role,
    assign_user_role,
    create_role,
    grant,
    role_id,
    set_team_roles,
    set_user_roles,
)
from webapp.security.scope import load_principal
from webapp.security.setup import new_user
from webapp.security.tables import userrole
from webapp.services import services
from webapp.sync.hub import Hub
from webapp.sync.notify import conninfo
from webapp.sync.profile import set_offline


@dataclass
class World:
    """The `org` fixture plus a team (bob in it), a role, a position, a profile and an account."""

    org: Org
    team: str
    role: str
    position: str
    profile: str
    account: str  # owned by alice
    north_bu: str  # a unit nobody is in


@pytest.fixture
def world(app: Flask, org: Org) -> World:
    svc = services(app)
    with svc.db.session(write=True) as s:
        m = svc.registry.model(s, org.org_id)
        north = create_business_unit(s, m, "North")
        team = create_team(s, m, "Field", org.root_bu, [org.bob])
        role = create_role(s, m, "Reader")
        position = create_position(s, m, "Rep")
        fieldsecurity.set_secured(s, m, "account", "revenue")
        profile = fieldsecurity.create_profile(s, m, "Money")
        account = insert_record(
            s,
            m,
            Actor(m.org_id, org.alice, org.east_bu),
            m.entity("account"),
            {"name": "Acme"},
            None,
            Owner(org.alice, "systemuser", org.east_bu),
        )["accountid"]
        s.commit()
    return World(org, team, role, position, profile, account, north)


def epochs(app: Flask, world: World) -> dict[str, int]:
    with services(app).db.session() as s:
        return {
            who: epoch.current(s, world.org.org_id, uid)
            for who, uid in (("alice", world.org.alice), ("bob", world.org.bob))
        }


def as_alice(s: Session, m: OrgModel, w: World) -> tuple[Any, Actor]:
    return load_principal(s, m, w.org.alice), Actor(m.org_id, w.org.alice, w.org.east_bu)


def _user(s: Session, m: OrgModel, w: World, values: dict[str, Any]) -> None:
    row = fetch(s, m, m.entity("systemuser"), w.org.bob)
    assert row is not None
    update_record(s, m, system_actor(m), m.entity("systemuser"), row, values)


def _record(s: Session, m: OrgModel, entity: str, record_id: str, values: dict[str, Any]) -> None:
    row = fetch(s, m, m.entity(entity), record_id)
    assert row is not None
    update_record(s, m, system_actor(m), m.entity(entity), row, values)


def _settings(s: Session, m: OrgModel, key: str, value: Any) -> None:
    settings = copy.deepcopy(m.settings)
    settings[key] = value
    save_settings(s, m.org_id, settings)


def _share(s: Session, m: OrgModel, w: World, principal: str, rights: list[str]) -> None:
    p, actor = as_alice(s, m, w)
    share(s, m, p, actor, m.entity("account"), w.account, {"principal@odata.bind": principal, "rights": rights})


def _unshare(s: Session, m: OrgModel, w: World) -> None:
    _share(s, m, w, f"/systemusers({w.org.bob})", ["read"])
    p, actor = as_alice(s, m, w)
    unshare(s, m, p, actor, m.entity("account"), w.account, {"principal@odata.bind": f"/systemusers({w.org.bob})"})


def _assign(s: Session, m: OrgModel, w: World) -> None:
    p, actor = as_alice(s, m, w)
    assign(s, m, p, actor, m.entity("account"), w.account, {"ownerid@odata.bind": f"/systemusers({w.org.bob})"})


Change = Callable[[Session, OrgModel, World], None]
# (what changes, how, whose epoch must move: "org" = everyone's, or the users named)
CHANGES: list[tuple[str, Change, set[str]]] = [
    ("role privilege depth", lambda s, m, w: grant(s, m, role_id(s, m, "Salesperson"), "lead", "read", ORG), {"org"}),
    (
        "role privilege removed",
        lambda s, m, w: grant(s, m, role_id(s, m, "Salesperson"), "account", "read", 0),
        {"org"},
    ),
    ("a user's roles", lambda s, m, w: set_user_roles(s, m, w.org.bob, [w.role]), {"bob"}),
    ("a role given to a user", lambda s, m, w: assign_user_role(s, m, w.org.bob, w.role), {"bob"}),
    ("a role given to a team", lambda s, m, w: assign_team_role(s, m, w.team, w.role), {"bob"}),
    ("a team's roles", lambda s, m, w: set_team_roles(s, m, w.team, [w.role]), {"bob"}),
    ("team member added", lambda s, m, w: add_team_member(s, m, w.team, w.org.alice), {"alice"}),
    ("team member removed", lambda s, m, w: set_team_members(s, m, w.team, []), {"bob"}),
    ("a manager", lambda s, m, w: _user(s, m, w, {"parentsystemuserid": w.org.alice}), {"org"}),
    ("a position", lambda s, m, w: _user(s, m, w, {"positionid": w.position}), {"org"}),
    ("a user's business unit", lambda s, m, w: _user(s, m, w, {"businessunitid": w.org.east_bu}), {"org"}),
    ("a user disabled", lambda s, m, w: _user(s, m, w, {"isdisabled": True}), {"org"}),
    (
        "a user created",
        lambda s, m, w: new_user(s, m, services_hasher(), "dora", "long-enough-1", "D", w.org.root_bu, []),
        {"org"},
    ),
    ("a business unit created", lambda s, m, w: create_business_unit(s, m, "West"), {"org"}),
    (
        "a business unit moved",
        lambda s, m, w: _record(
            s, m, "businessunit", w.org.east_bu, {"parentbusinessunitid": create_business_unit(s, m, "West")}
        ),
        {"org"},
    ),
    (
        "a business unit disabled",
        lambda s, m, w: _record(s, m, "businessunit", w.org.east_bu, {"isdisabled": True}),
        {"org"},
    ),
    (
        "a team's business unit",
        lambda s, m, w: _record(s, m, "team", w.team, {"businessunitid": w.org.east_bu}),
        {"org"},
    ),
    ("a position created", lambda s, m, w: create_position(s, m, "Lead", w.position), {"org"}),
    (
        "a position moved",
        lambda s, m, w: _record(s, m, "position", w.position, {"parentpositionid": create_position(s, m, "Boss")}),
        {"org"},
    ),
    ("a share to a user", lambda s, m, w: _share(s, m, w, f"/systemusers({w.org.bob})", ["read"]), {"bob"}),
    ("a share to a team", lambda s, m, w: _share(s, m, w, f"/teams({w.team})", ["read"]), {"bob"}),
    ("a share revoked", _unshare, {"bob"}),
    ("an owner assigned", _assign, {"alice", "bob"}),
    ("a field secured", lambda s, m, w: fieldsecurity.set_secured(s, m, "account", "telephone1"), {"org"}),
    ("a field released", lambda s, m, w: fieldsecurity.set_secured(s, m, "account", "revenue", False), {"org"}),
    (
        "a field grant",
        lambda s, m, w: fieldsecurity.set_permission(s, m, w.profile, "account", "revenue", True, False, False),
        {"org"},
    ),
    (
        "a field grant cleared",
        lambda s, m, w: fieldsecurity.clear_permission(s, w.profile, "account", "revenue"),
        {"org"},
    ),
    ("a profile member", lambda s, m, w: fieldsecurity.add_member(s, m, w.profile, w.org.bob, "systemuser"), {"org"}),
    ("a profile's members", lambda s, m, w: fieldsecurity.set_members(s, m, w.profile, []), {"org"}),
    ("an offline filter", lambda s, m, w: set_offline(s, m, entity="account", filter_spec="mine"), {"org"}),
    ("an offline window", lambda s, m, w: set_offline(s, m, entity="account", filter_spec="modified:30"), {"org"}),
    ("an entity taken offline", lambda s, m, w: set_offline(s, m, entity="lead", entity_enabled=False), {"org"}),
    ("mobile offline off", lambda s, m, w: set_offline(s, m, enabled=False), {"org"}),
    ("the hierarchy", lambda s, m, w: _settings(s, m, "hierarchy", {"model": "manager", "depth": 2}), {"org"}),
    # Changes that cannot alter access leave every epoch where it was.
    ("a user's name", lambda s, m, w: _user(s, m, w, {"lastname": "Bakerson"}), set()),
    ("an empty role", lambda s, m, w: create_role(s, m, "Nobody"), set()),
    ("the conflict setting", lambda s, m, w: set_offline(s, m, conflict_detection=True), set()),
    ("the sync interval", lambda s, m, w: set_offline(s, m, interval=5), set()),
    ("an account edited", lambda s, m, w: _record(s, m, "account", w.account, {"name": "Acme Ltd"}), set()),
]
_HASHER: list[Any] = []


def services_hasher() -> Any:
    return _HASHER[0]


@pytest.mark.parametrize(("change", "moves"), [(c[1], c[2]) for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_every_kind_of_change_moves_the_epoch_of_exactly_those_it_touches(
    app: Flask, world: World, change: Change, moves: set[str]
) -> None:
    svc = services(app)
    _HASHER[:] = [svc.hasher]
    before = epochs(app, world)
    with svc.db.session(write=True) as s:
        change(s, svc.registry.model(s, world.org.org_id), world)
        s.rollback()
    assert epochs(app, world) == before, "a change rolled back must leave the epoch as it was"
    with svc.db.session(write=True) as s:
        change(s, svc.registry.model(s, world.org.org_id), world)
        s.commit()
    after = epochs(app, world)
    moved = {who for who in before if after[who] > before[who]}
    expected = {"alice", "bob"} if "org" in moves else moves
    assert moved == expected
    assert all(after[who] >= before[who] for who in before), "the epoch only grows"


def test_the_epoch_of_one_organisation_leaves_the_others_alone(app: Flask, world: World) -> None:
    svc = services(app)
    with svc.db.session(write=True) as s:
        carol_before = epoch.current(s, world.org.other_org, world.org.carol)
        grant(
            s,
            svc.registry.model(s, world.org.org_id),
            role_id(s, svc.registry.model(s, world.org.org_id), "Salesperson"),
            "lead",
            "read",
            ORG,
        )
        s.commit()
        assert epoch.current(s, world.org.other_org, world.org.carol) == carol_before


def test_the_guard_fails_a_commit_that_changes_access_without_a_bump(app: Flask, world: World) -> None:
    svc = services(app)
    with svc.db.session(write=True) as s:
        s.execute(
            insert(userrole), {"systemuserid": world.org.bob, "roleid": world.role, "organizationid": world.org.org_id}
        )
        with pytest.raises(epoch_guard.EpochNotBumped, match="userrole"):
            s.commit()
    with svc.db.session() as s:
        held = s.execute(select(userrole.c.roleid).where(userrole.c.systemuserid == world.org.bob)).scalars().all()
    assert world.role not in held


# --- every admin page that POSTs, and every CLI command -----------------------------------------


def _form(api: Api, path: str, data: dict[str, Any]) -> Any:
    return api.client.post(path, data={"csrf_token": api.csrf, **data})


def _user_form(w: World, **extra: Any) -> dict[str, Any]:
    return {"lastname": "Baker", "businessunitid": w.org.root_bu, "roles": [role_id_of(w, "Salesperson")], **extra}


ROLE_IDS: dict[str, str] = {}


def role_id_of(w: World, name: str) -> str:
    return ROLE_IDS[name]


AdminPost = Callable[[Api, World], str]  # posts, returns the path (for the failure message)
ADMIN_SCOPE_POSTS: dict[str, AdminPost] = {
    "admin.people.user_new": lambda a, w: _post(
        a, "/admin/users/new", {"username": "dora", "password": "long-enough-1", **_user_form(w)}
    ),
    "admin.people.user_edit": lambda a, w: _post(
        a, f"/admin/users/{w.org.bob}", _user_form(w, parentsystemuserid=w.org.alice)
    ),
    "admin.people.user_status": lambda a, w: _post(a, f"/admin/users/{w.org.bob}/status", {"action": "disable"}),
    "admin.people.team_edit": lambda a, w: _post(
        a, f"/admin/teams/{w.team}", {"name": "Field", "businessunitid": w.org.root_bu}
    ),
    "admin.people.team_delete": lambda a, w: _post(a, f"/admin/teams/{w.team}/delete", {}),
    "admin.people.business_unit_edit": lambda a, w: _post(
        a, "/admin/business-units/new", {"name": "West", "parentbusinessunitid": w.org.root_bu}
    ),
    "admin.people.business_unit_status": lambda a, w: _post(
        a, f"/admin/business-units/{w.north_bu}/status", {"action": "disable"}
    ),
    "admin.people.position_edit": lambda a, w: _post(a, "/admin/positions/new", {"name": "Lead"}),
    "admin.people.position_delete": lambda a, w: _post(a, f"/admin/positions/{w.position}/delete", {}),
    "admin.people.role_edit": lambda a, w: _post(
        a,
        f"/admin/roles/{role_id_of(w, 'Salesperson')}",
        {"name": "Salesperson", **_grid(a, role_id_of(w, "Salesperson"), {"lead.read": "organization"})},
    ),
    "admin.people.role_delete": lambda a, w: _post(a, f"/admin/roles/{w.role}/delete", {}),
    "admin.people.field_security": lambda a, w: _post(a, "/admin/field-security", {"attribute": "account.telephone1"}),
    "admin.people.profile_edit": lambda a, w: _post(
        a, f"/admin/field-security/{w.profile}", {"account.revenue.read": "on", "users": [w.org.bob]}
    ),
    "admin.people.profile_delete": lambda a, w: _post(a, f"/admin/field-security/{w.profile}/delete", {}),
    "admin.profile.save": lambda a, w: _post(a, "/admin/offline/", _offline_form(a, {"account.filter": "mine"})),
}
ADMIN_OTHER_POSTS: dict[str, str] = {
    "admin.auth.signin": "starts a session",
    "admin.auth.signout": "ends a session",
    "admin.people.user_password": "a password: sessions end, access is unchanged",
    "admin.people.role_new": "a new role holds nothing and nobody holds it",
    "admin.people.profile_new": "a new field security profile grants nothing to nobody",
    "admin.devices.revoke_device": "wipes a device; the user's access is unchanged",
    "admin.entities.new": "a custom entity is a new metadata version; it is not offline until the profile says so",
    "admin.entities.remove": "a new metadata version: the entity and its records are gone for everyone alike",
    "admin.entities.remove_field": "a new metadata version: the attribute is gone for everyone alike",
    "admin.entities.transitions": "a new metadata version: which status moves are allowed, not who sees what",
    "admin.scripts.index": "client scripts change forms, not access",
    "admin.scripts.remove": "client scripts change forms, not access",
}


def _post(api: Api, path: str, data: dict[str, Any]) -> str:
    resp = _form(api, path, data)
    assert resp.status_code == 302, (path, resp.status_code, resp.data[:500])
    assert "cannot" not in resp.headers["Location"], (path, resp.headers["Location"])
    return path


def _grid(api: Api, rid: str, overrides: dict[str, str]) -> dict[str, str]:
    import re

    html = api.get(f"/admin/roles/{rid}").data.decode()
    grid: dict[str, str] = {}
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected', body)
        grid[name] = chosen.group(1) if chosen else "none"
    return {**grid, **overrides}


def _offline_form(api: Api, overrides: dict[str, str]) -> dict[str, str]:
    from tests.test_admin import profile_form

    return {**profile_form(api), **overrides}


def _admin_posts(app: Flask) -> set[str]:
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin") and "POST" in (rule.methods or ())
    }


def test_every_admin_page_that_posts_is_classified(app: Flask) -> None:
    posts = _admin_posts(app)
    unclassified = posts - set(ADMIN_SCOPE_POSTS) - set(ADMIN_OTHER_POSTS)
    assert not unclassified, f"classify these admin pages in {__name__}: do they change access? {sorted(unclassified)}"
    assert not (set(ADMIN_SCOPE_POSTS) | set(ADMIN_OTHER_POSTS)) - posts, "a classified page no longer exists"


@pytest.mark.parametrize("endpoint", sorted(ADMIN_SCOPE_POSTS))
def test_each_admin_page_that_changes_access_moves_the_epoch(app: Flask, world: World, endpoint: str) -> None:
    with services(app).db.session() as s:
        m = services(app).registry.model(s, world.org.org_id)
        ROLE_IDS["Salesperson"] = role_id(s, m, "Salesperson")
    alice = sign_in(app, "contoso", "alice")
    before = epochs(app, world)
    ADMIN_SCOPE_POSTS[endpoint](alice, world)
    after = epochs(app, world)
    assert after["bob"] > before["bob"] or after["alice"] > before["alice"], endpoint


CLI_SCOPE: dict[str, list[str]] = {
    "create-business-unit": ["--org", "contoso", "--name", "West"],
    "create-position": ["--org", "contoso", "--name", "Lead"],
    "create-team": ["--org", "contoso", "--name", "Hunters", "--business-unit", "Contoso", "--member", "bob"],
    "create-user": [
        "--org",
        "contoso",
        "--username",
        "dora",
        "--password",
        "long-enough-1",
        "--business-unit",
        "Contoso",
        "--manager",
        "bob",
    ],
    "grant": [
        "--org",
        "contoso",
        "--role",
        "Salesperson",
        "--entity",
        "lead",
        "--privilege",
        "read",
        "--depth",
        "organization",
    ],
    "set-hierarchy": ["--org", "contoso", "--model", "manager"],
    "set-offline": ["--org", "contoso", "--entity", "account", "--filter", "mine"],
}
CLI_OTHER: dict[str, str] = {
    "init-db": "creates or migrates the schema",
    "create-org": "a new organisation: nobody in it has a device yet (its epoch starts with its roles)",
    "create-role": "a new role holds nothing and nobody holds it",
    "add-entity": "a custom entity is not offline until the profile says so",
    "remove-entity": "a new metadata version: the entity and its records are gone for everyone alike",
    "remove-attribute": "a new metadata version: the attribute is gone for everyone alike",
    "set-transitions": "a new metadata version: which status moves are allowed, not who sees what",
    "load-demo": "adds records (the change feed carries them)",
    "bench": "benchmarks run on their own throw-away databases",
    "demo": "serves the demo",
    "serve": "serves",
}


def test_every_cli_command_is_classified() -> None:
    commands = set(main.commands)
    unclassified = commands - set(CLI_SCOPE) - set(CLI_OTHER)
    assert not unclassified, f"classify these commands in {__name__}: do they change access? {sorted(unclassified)}"
    assert not (set(CLI_SCOPE) | set(CLI_OTHER)) - commands


@pytest.fixture
def cli_org(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[..., tuple[int, str]], Callable[[], int]]:
    """A SQLite database with organisation contoso and user bob, made with the CLI."""
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("DATABASE_URL", url)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.output

    assert run("create-org", "contoso")[0] == 0
    code, out = run(
        "create-user",
        "--org",
        "contoso",
        "--username",
        "bob",
        "--password",
        "long-enough-1",
        "--business-unit",
        "Contoso",
        "--role",
        "Salesperson",
    )
    assert code == 0, out

    def bobs_epoch() -> int:
        from webapp.crm.orgs import org_id_by_name
        from webapp.db import connect

        db = connect(url)
        try:
            with db.session() as s:
                org_id = org_id_by_name(s, "contoso")
                users = services_tables()["systemuser"]
                bob = s.execute(select(users.c.systemuserid).where(users.c.username == "bob")).scalar_one()
                return epoch.current(s, org_id, bob)
        finally:
            db.dispose()

    return run, bobs_epoch


def services_tables() -> Any:
    from webapp.crm.tables import SYSTEM_TABLES

    return SYSTEM_TABLES


@pytest.mark.parametrize("command", sorted(CLI_SCOPE))
def test_each_cli_command_that_changes_access_moves_the_epoch(cli_org: Any, command: str) -> None:
    run, bobs_epoch = cli_org
    before = bobs_epoch()
    code, out = run(command, *CLI_SCOPE[command])
    assert code == 0, out
    assert bobs_epoch() > before, command


# --- the live signal ------------------------------------------------------------------------------


def test_the_hub_wakes_only_the_users_a_scope_message_names() -> None:
    hub = Hub()
    bob = hub.subscribe("org1", "bob")
    alice = hub.subscribe("org1", "alice")
    other = hub.subscribe("org2", "bob")
    hub.receive("- scope org1:bob")
    assert bob.event.is_set() and not alice.event.is_set() and not other.event.is_set()
    bob.event.clear()
    hub.receive("- scope org1")
    assert bob.event.is_set() and alice.event.is_set() and not other.event.is_set()


def test_on_postgresql_a_bump_is_announced_when_it_commits_and_never_when_it_rolls_back(
    app: Flask, world: World
) -> None:
    svc = services(app)
    if svc.db.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's")
    ours = f"- scope {world.org.org_id}"  # the channel is shared by every test run on this server

    def heard(timeout: float) -> list[str]:
        return [n.payload for n in listen.notifies(timeout=timeout) if n.payload.startswith(ours)]

    with psycopg.connect(conninfo(svc.db.url), autocommit=True) as listen:
        listen.execute("LISTEN outpost_sync")
        with svc.db.session(write=True) as s:
            epoch.bump(s, world.org.org_id, [world.org.bob])
            s.rollback()
            epoch.bump(s, world.org.org_id, [world.org.bob])
            assert heard(0.3) == []  # not before the commit
            s.commit()
        got = heard(1.0)
    assert got == [f"{ours}:{world.org.bob}"]
