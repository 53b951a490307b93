"""The golden matrix: who reaches which record, written by hand from one fixture organisation.

The organisation (built by `build_matrix_org`):

    business units   Root ─┬─ North ─┬─ North-A
                           │         └─ North-B
                           └─ South
    managers         ceo (Root) → vp (North) → lead (North-A) → rep (North-A)
                                                lead → rep2 (North-B);  outsider (South) has none
    positions        Director → Manager → Associate → Trainee, held by
                     outsider (South), lead (North-A), rep2 (North-B), rep (North-A)
    teams            TeamA (North-A: rep, rep2), TeamS (South: outsider), TeamN (North: lead);
                     TeamN holds a role of its own: "North desk" = account appendto at businessunit
    accounts         key    owner     owning unit
                     ceo    ceo       Root
                     vp     vp        North
                     lead   lead      North-A
                     rep    rep       North-A
                     rep2   rep2      North-B
                     out    outsider  South
                     teamA  TeamA     North-A
                     teamS  TeamS     South
                     teamN  TeamN     North
    products         p1, p2, p3 (organisation-owned)
    shares           account out → rep: read;  account vp → TeamS: read + write;
                     product p1 → rep: read;  product p2 → TeamS: read + write (shares do not apply there)

Each row names a user, the grants of a fresh role (the user's own, or a team's), a privilege
and the hierarchy setting, and the set of record keys the user must reach — worked out by
hand from the rules in `webapp/security/scope.py`, never computed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import PASSWORD, sign_in
from tests.security_fixtures import (
    add_account,
    add_product,
    add_share,
    give_role,
    make_role,
    principal,
    reachable,
    set_hierarchy,
    withdraw_role,
)
from webapp.crm.orgs import create_business_unit, create_position, create_team, root_business_unit
from webapp.crm.records import Owner
from webapp.crm.registry import OrgModel, Registry
from webapp.security.roles import DEPTHS
from webapp.security.setup import new_organization, new_user
from webapp.services import services

ORG_NAME = "matrix"
ALL = frozenset({"ceo", "vp", "lead", "rep", "rep2", "out", "teamA", "teamS", "teamN"})
PRODUCTS = frozenset({"p1", "p2", "p3"})
NORTH_SUBTREE = frozenset({"vp", "teamN", "lead", "rep", "teamA", "rep2"})
OFF = ("off", 3)

# ---------------------------------------------------------------------------------------------
# The fixture organisation


@dataclass
class MatrixOrg:
    """The fixture organisation: its model and the ids behind every key of the table."""

    model: OrgModel
    ids: dict[str, str] = field(default_factory=dict)  # name -> id (units, positions, users, teams)
    records: dict[str, str] = field(default_factory=dict)  # record key -> id
    keys: dict[str, str] = field(default_factory=dict)  # record id -> key


def build_matrix_org(session: Session, registry: Registry, hasher: PasswordHasher) -> MatrixOrg:
    """Build the organisation drawn in the module docstring."""
    model = new_organization(session, registry, ORG_NAME)
    org = MatrixOrg(model)
    ids = org.ids
    ids["Root"] = root_business_unit(session, model)
    ids["North"] = create_business_unit(session, model, "North", ids["Root"])
    ids["South"] = create_business_unit(session, model, "South", ids["Root"])
    ids["North-A"] = create_business_unit(session, model, "North-A", ids["North"])
    ids["North-B"] = create_business_unit(session, model, "North-B", ids["North"])

    ids["Director"] = create_position(session, model, "Director")
    ids["Manager"] = create_position(session, model, "Manager", ids["Director"])
    ids["Associate"] = create_position(session, model, "Associate", ids["Manager"])
    ids["Trainee"] = create_position(session, model, "Trainee", ids["Associate"])

    def user(name: str, unit: str, manager: str | None = None, position: str | None = None) -> None:
        ids[name] = new_user(
            session,
            model,
            hasher,
            name,
            PASSWORD,
            name.capitalize(),
            ids[unit],
            [],
            manager_id=ids[manager] if manager else None,
            position_id=ids[position] if position else None,
        )

    user("ceo", "Root")
    user("vp", "North", manager="ceo")
    user("lead", "North-A", manager="vp", position="Manager")
    user("rep", "North-A", manager="lead", position="Trainee")
    user("rep2", "North-B", manager="lead", position="Associate")
    user("outsider", "South", position="Director")

    ids["TeamA"] = create_team(session, model, "TeamA", ids["North-A"], [ids["rep"], ids["rep2"]])
    ids["TeamS"] = create_team(session, model, "TeamS", ids["South"], [ids["outsider"]])
    ids["TeamN"] = create_team(session, model, "TeamN", ids["North"], [ids["lead"]])
    desk = make_role(session, model, "North desk", [("account", "appendto", DEPTHS["businessunit"])])
    give_role(session, model, desk, ids["TeamN"], "team")

    owners = {
        "ceo": ("ceo", "systemuser", "Root"),
        "vp": ("vp", "systemuser", "North"),
        "lead": ("lead", "systemuser", "North-A"),
        "rep": ("rep", "systemuser", "North-A"),
        "rep2": ("rep2", "systemuser", "North-B"),
        "out": ("outsider", "systemuser", "South"),
        "teamA": ("TeamA", "team", "North-A"),
        "teamS": ("TeamS", "team", "South"),
        "teamN": ("TeamN", "team", "North"),
    }
    for key, (owner, kind, unit) in owners.items():
        org.records[key] = add_account(session, model, f"Account {key}", Owner(ids[owner], kind, ids[unit]))
    for key in sorted(PRODUCTS):
        org.records[key] = add_product(session, model, f"Product {key}")
    org.keys = {v: k for k, v in org.records.items()}

    records = org.records
    add_share(session, model, "account", records["out"], ids["rep"], "systemuser", ["read"])
    add_share(session, model, "account", records["vp"], ids["TeamS"], "team", ["read", "write"])
    add_share(session, model, "product", records["p1"], ids["rep"], "systemuser", ["read"])
    add_share(session, model, "product", records["p2"], ids["TeamS"], "team", ["read", "write"])
    return org


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Row:
    """One expectation: `user`, holding `grants`, reaches exactly `expected` for `privilege`."""

    user: str
    grants: tuple[tuple[str, str, str, str], ...]  # (holder: "own" or a team, entity, privilege, depth name)
    privilege: str
    expected: frozenset[str]
    entity: str = "account"
    hierarchy: tuple[str, int] = OFF

    def __str__(self) -> str:
        held = ", ".join(f"{h} {e}.{p}@{d}" for h, e, p, d in self.grants) or "no grants"
        kind, depth = self.hierarchy
        hier = "hierarchy off" if kind == "off" else f"{kind} hierarchy depth {depth}"
        return f"{self.user} {self.privilege} {self.entity} [{held}; {hier}]"


def own(privilege: str, depth: str, entity: str = "account") -> tuple[str, str, str, str]:
    """A grant in the user's own role."""
    return ("own", entity, privilege, depth)


def team(name: str, privilege: str, depth: str, entity: str = "account") -> tuple[str, str, str, str]:
    """A grant in a role held by the team `name`."""
    return (name, entity, privilege, depth)


def row(
    user: str,
    grants: list[tuple[str, str, str, str]],
    privilege: str,
    expected: set[str] | frozenset[str],
    entity: str = "account",
    hierarchy: tuple[str, int] = OFF,
) -> Row:
    """A row of the table (a shorter spelling of `Row`)."""
    return Row(user, tuple(grants), privilege, frozenset(expected), entity, hierarchy)


def ladder(user: str, privilege: str, sets: list[set[str] | frozenset[str]]) -> list[Row]:
    """Rows for one privilege at each depth none, user, businessunit, parentchild, organization."""
    return [row(user, [own(privilege, depth)], privilege, s) for depth, s in zip(DEPTHS, sets, strict=True)]


# vp sits in North (children North-A, North-B), is in no team and has no shares: every depth differs.
VP_LADDER: list[set[str] | frozenset[str]] = [set(), {"vp"}, {"vp", "teamN"}, NORTH_SUBTREE, ALL]

DEPTH_ROWS = [
    *ladder("vp", "read", VP_LADDER),
    *ladder("vp", "write", VP_LADDER),
    *ladder("vp", "delete", VP_LADDER),
    *ladder("vp", "assign", VP_LADDER),
    *ladder("vp", "share", VP_LADDER),
    row("rep", [own("delete", "businessunit")], "delete", {"lead", "rep", "teamA"}),
    row("rep", [own("write", "parentchild")], "write", {"lead", "rep", "teamA"}),  # North-A has no children
    row("outsider", [own("share", "parentchild")], "share", {"out", "teamS"}),
    row("ceo", [own("assign", "parentchild")], "assign", ALL),  # Root's subtree is everything
    row("ceo", [own("read", "businessunit")], "read", {"ceo"}),
    row("outsider", [own("read", "businessunit")], "read", {"out", "teamS", "vp"}),  # + vp shared with TeamS
]

TEAM_ROWS = [
    # user depth reaches the records of the user's teams
    row("rep", [own("read", "user")], "read", {"rep", "teamA", "out"}),  # + out, shared with rep
    row("rep2", [own("write", "user")], "write", {"rep2", "teamA"}),
    row("lead", [own("delete", "user")], "delete", {"lead", "teamN"}),
    row("outsider", [own("assign", "user")], "assign", {"out", "teamS"}),
    # a team's role applies relative to the team
    row("rep2", [team("TeamA", "read", "user")], "read", {"teamA"}),
    row("rep", [team("TeamA", "write", "user")], "write", {"teamA"}),  # not rep's own record
    row("rep2", [team("TeamA", "read", "businessunit")], "read", {"lead", "rep", "teamA"}),  # North-A, not North-B
    row("lead", [team("TeamN", "read", "user")], "read", {"teamN"}),
    row("lead", [team("TeamN", "read", "businessunit")], "read", {"vp", "teamN"}),  # North, not lead's North-A
    row("lead", [team("TeamN", "read", "parentchild")], "read", NORTH_SUBTREE),
    row("outsider", [team("TeamS", "delete", "organization")], "delete", ALL),
    row("vp", [team("TeamA", "read", "organization")], "read", set()),  # vp is no member of TeamA
    # the user's roles and the teams' roles add up
    row("rep2", [own("read", "user"), team("TeamA", "read", "businessunit")], "read", {"rep2", "teamA", "lead", "rep"}),
    row("lead", [own("write", "user"), team("TeamN", "write", "businessunit")], "write", {"lead", "teamN", "vp"}),
    # TeamN's standing role "North desk": appendto at businessunit, relative to North
    row("lead", [], "appendto", {"vp", "teamN"}),
    row("lead", [own("appendto", "user")], "appendto", {"lead", "teamN", "vp"}),
    row("rep", [], "appendto", set()),  # rep is not in TeamN
]

SHARE_ROWS = [
    row("rep", [], "read", {"out"}),
    row("rep", [], "write", set()),  # shared for read only
    row("rep2", [], "read", set()),  # shared with rep, not with rep's teammates
    row("outsider", [], "read", {"vp"}),  # shared with TeamS
    row("outsider", [], "write", {"vp"}),
    row("outsider", [], "delete", set()),
    row("outsider", [], "append", set()),
    row("outsider", [], "share", set()),
    row("vp", [], "read", set()),  # owning a record gives nothing without a privilege
]

HIERARCHY_ROWS = [
    row("ceo", [own("read", "user")], "read", {"ceo"}),
    row("ceo", [own("read", "user")], "read", {"ceo", "vp"}, hierarchy=("manager", 1)),
    row("ceo", [own("read", "user")], "read", {"ceo", "vp", "lead"}, hierarchy=("manager", 2)),
    row("ceo", [own("read", "user")], "read", {"ceo", "vp", "lead", "rep", "rep2"}, hierarchy=("manager", 3)),
    row("ceo", [own("write", "user")], "write", {"ceo", "vp"}, hierarchy=("manager", 3)),  # direct reports only
    row("vp", [own("read", "user")], "read", {"vp", "lead"}, hierarchy=("manager", 1)),
    row("vp", [own("read", "user")], "read", {"vp", "lead", "rep", "rep2"}, hierarchy=("manager", 2)),
    row("vp", [own("write", "user")], "write", {"vp", "lead"}, hierarchy=("manager", 2)),
    row("vp", [own("append", "user")], "append", {"vp", "lead"}, hierarchy=("manager", 3)),
    row("vp", [own("appendto", "user")], "appendto", {"vp", "lead"}, hierarchy=("manager", 3)),
    row("vp", [own("delete", "user")], "delete", {"vp"}, hierarchy=("manager", 3)),
    row("vp", [own("assign", "user")], "assign", {"vp"}, hierarchy=("manager", 3)),
    row("vp", [own("share", "user")], "share", {"vp"}, hierarchy=("manager", 3)),
    row("vp", [], "read", set(), hierarchy=("manager", 3)),  # no privilege, nothing from the hierarchy
    row("vp", [own("read", "businessunit")], "read", {"vp", "teamN", "lead"}, hierarchy=("manager", 1)),
    # subordinates' own records, not those of their teams
    row("lead", [own("read", "user")], "read", {"lead", "teamN", "rep", "rep2"}, hierarchy=("manager", 3)),
    # holding appendto only through TeamN's role is enough for the hierarchy
    row("lead", [], "appendto", {"vp", "teamN", "rep", "rep2"}, hierarchy=("manager", 1)),
    row("rep", [own("read", "user")], "read", {"rep", "teamA", "out"}, hierarchy=("manager", 3)),  # no reports
]

POSITION_ROWS = [
    row("outsider", [own("read", "user")], "read", {"out", "teamS", "vp", "lead"}, hierarchy=("position", 1)),
    row("outsider", [own("read", "user")], "read", {"out", "teamS", "vp", "lead", "rep2"}, hierarchy=("position", 2)),
    row(
        "outsider",
        [own("read", "user")],
        "read",
        {"out", "teamS", "vp", "lead", "rep2", "rep"},
        hierarchy=("position", 3),
    ),
    row("outsider", [own("write", "user")], "write", {"out", "teamS", "vp", "lead"}, hierarchy=("position", 3)),
    row("outsider", [own("delete", "user")], "delete", {"out", "teamS"}, hierarchy=("position", 3)),
    row("lead", [own("read", "user")], "read", {"lead", "teamN", "rep2"}, hierarchy=("position", 1)),
    row("lead", [own("read", "user")], "read", {"lead", "teamN", "rep2", "rep"}, hierarchy=("position", 2)),
    row("lead", [own("write", "user")], "write", {"lead", "teamN", "rep2"}, hierarchy=("position", 3)),
    row("ceo", [own("read", "user")], "read", {"ceo"}, hierarchy=("position", 3)),  # holds no position
    row("rep", [own("read", "user")], "read", {"rep", "teamA", "out"}, hierarchy=("position", 3)),  # lowest position
    row("vp", [own("read", "user")], "read", {"vp"}, hierarchy=("position", 3)),  # managers do not count here
]

ORG_OWNED_ROWS = [
    row("rep", [], "read", set(), entity="product"),  # p1 is shared with rep: ignored
    row("rep", [own("read", "organization", "product")], "read", PRODUCTS, entity="product"),
    row("outsider", [], "read", set(), entity="product"),  # p2 is shared with TeamS: ignored
    row("outsider", [], "write", set(), entity="product"),
    row("outsider", [own("write", "organization", "product")], "write", PRODUCTS, entity="product"),
    row("rep", [own("delete", "organization", "product")], "delete", PRODUCTS, entity="product"),
    row("rep", [own("read", "organization", "product")], "write", set(), entity="product"),
    row("rep2", [team("TeamA", "read", "organization", "product")], "read", PRODUCTS, entity="product"),
    row("outsider", [team("TeamS", "share", "organization", "product")], "share", PRODUCTS, entity="product"),
    row("vp", [own("assign", "organization", "product")], "assign", PRODUCTS, entity="product"),
    row("ceo", [own("read", "user", "*")], "read", set(), entity="product", hierarchy=("manager", 3)),
]

STAR_ROWS = [
    row("vp", [own("read", "businessunit", "*")], "read", {"vp", "teamN"}),
    row("vp", [own("read", "businessunit", "*")], "read", set(), entity="product"),  # below organization
    row("vp", [own("write", "organization", "*")], "write", ALL),
    row("vp", [own("write", "organization", "*")], "write", PRODUCTS, entity="product"),
    row("vp", [own("read", "user", "*"), own("read", "parentchild")], "read", NORTH_SUBTREE),  # the deeper wins
    row("vp", [own("delete", "organization"), own("delete", "user", "*")], "delete", ALL),
    row("outsider", [team("TeamS", "read", "organization", "*")], "read", PRODUCTS, entity="product"),
    row("outsider", [own("share", "user", "*")], "share", {"out", "teamS"}),
    row("vp", [own("read", "organization", "*")], "write", set()),  # only the privilege granted
]

GROUPS: dict[str, list[Row]] = {
    "depths": DEPTH_ROWS,
    "teams": TEAM_ROWS,
    "shares": SHARE_ROWS,
    "manager hierarchy": HIERARCHY_ROWS,
    "position hierarchy": POSITION_ROWS,
    "organisation-owned": ORG_OWNED_ROWS,
    "star grants": STAR_ROWS,
}

# Depths are ordered ("may do X at depth D" is a comparison, webapp/security/roles.py): holding a
# privilege at businessunit or parentchild depth must still reach what user depth reaches, such
# as the records of the user's own team when that team sits in another unit. (The property test
# found scope.condition dropping these; these rows pin the fix.)
DEPTH_ORDER_ROWS = [
    row("rep2", [own("read", "businessunit")], "read", {"rep2", "teamA"}),  # TeamA sits in North-A
    row("rep2", [own("write", "parentchild")], "write", {"rep2", "teamA"}),
    row("lead", [own("read", "parentchild")], "read", {"lead", "rep", "teamA", "teamN"}),  # TeamN sits in North
]
GROUPS["depth ordering"] = DEPTH_ORDER_ROWS


def test_the_table_has_at_least_forty_rows_and_covers_every_depth_and_privilege() -> None:
    """The table itself: big enough, every depth for the main privileges, no duplicate rows."""
    rows = [r for rs in GROUPS.values() for r in rs]
    assert len(rows) >= 40
    assert len(set(rows)) == len(rows)
    for privilege in ("read", "write", "delete", "assign", "share"):
        depths = {d for r in rows for h, _, p, d in r.grants if h == "own" and p == r.privilege == privilege}
        assert depths == set(DEPTHS), privilege


# ---------------------------------------------------------------------------------------------
# Running rows


def run_rows(session: Session, registry: Registry, org: MatrixOrg, rows: list[Row], tag: str) -> list[str]:
    """Check each row against the SQL condition; returns a message per row that disagrees."""
    failures: list[str] = []
    hierarchy = OFF
    model = org.model
    for index, r in enumerate(rows):
        if r.hierarchy != hierarchy:
            model = set_hierarchy(session, registry, model, *r.hierarchy)
            hierarchy = r.hierarchy
        holders = sorted({h for h, *_ in r.grants} | {"own"})
        role_ids = []
        for holder in holders:
            grants = [(e, p, DEPTHS[d]) for h, e, p, d in r.grants if h == holder]
            role_id = make_role(session, model, f"{tag} row {index} {holder}", grants)
            if holder == "own":
                give_role(session, model, role_id, org.ids[r.user], "systemuser")
            else:
                give_role(session, model, role_id, org.ids[holder], "team")
            role_ids.append(role_id)
        p = principal(session, model, org.ids[r.user])
        got = {org.keys[i] for i in reachable(session, model, p, r.entity, r.privilege)}
        for role_id in role_ids:
            withdraw_role(session, role_id)
        if got != r.expected:
            failures.append(
                f"row {index} ({r}): expected {sorted(r.expected)}, got {sorted(got)}"
                f" (missing {sorted(r.expected - got)}, extra {sorted(got - r.expected)})"
            )
    set_hierarchy(session, registry, model, *OFF)
    return failures


@pytest.mark.parametrize("group", list(GROUPS))
def test_each_user_reaches_exactly_the_records_the_hand_written_matrix_expects(app: Flask, group: str) -> None:
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        org = build_matrix_org(dbs, svc.registry, svc.hasher)
        failures = run_rows(dbs, svc.registry, org, GROUPS[group], group)
    assert not failures, f"{len(failures)} of {len(GROUPS[group])} {group} rows disagree:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------------------------
# Through the Web API


def _api_org(app: Flask) -> MatrixOrg:
    """The fixture organisation, committed, with rep holding read, write and delete on accounts at user depth."""
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        org = build_matrix_org(dbs, svc.registry, svc.hasher)
        grants = [("account", p, DEPTHS["user"]) for p in ("read", "write", "delete")]
        give_role(dbs, org.model, make_role(dbs, org.model, "Rep desk", grants), org.ids["rep"], "systemuser")
        dbs.commit()
    return org


def _stored_account(app: Flask, org: MatrixOrg, key: str) -> dict[str, Any] | None:
    """An account's stored name and version, read past the security layer."""
    svc = services(app)
    with svc.db.session() as dbs:
        t = org.model.tables["account"]
        found = dbs.execute(select(t.c.name, t.c.versionnumber).where(t.c.accountid == org.records[key])).first()
    return None if found is None else {"name": found.name, "versionnumber": found.versionnumber}


def test_a_record_the_user_may_not_read_answers_exactly_like_a_missing_one(app: Flask) -> None:
    org = _api_org(app)
    rep = sign_in(app, ORG_NAME, "rep")
    before = _stored_account(app, org, "ceo")
    hidden = f"/api/data/accounts({org.records['ceo']})"
    missing = f"/api/data/accounts({uuid.uuid4()})"
    for verb in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"name": "Taken over"}} if verb == "patch" else {}
        got_hidden = getattr(rep, verb)(hidden, **kwargs)
        got_missing = getattr(rep, verb)(missing, **kwargs)
        assert got_hidden.status_code == got_missing.status_code == 404, verb
        assert got_hidden.json["error"]["code"] == got_missing.json["error"]["code"] == "not_found", verb
        assert set(got_hidden.json["error"]) == set(got_missing.json["error"]), verb
    assert _stored_account(app, org, "ceo") == before


def test_a_readable_but_not_writable_record_answers_forbidden_and_stays_unchanged(app: Flask) -> None:
    org = _api_org(app)
    rep = sign_in(app, ORG_NAME, "rep")
    before = _stored_account(app, org, "out")
    shared = f"/api/data/accounts({org.records['out']})"
    assert rep.get(shared).status_code == 200  # shared with rep for read
    patched = rep.patch(shared, json={"name": "Renamed"})
    assert patched.status_code == 403
    assert patched.json["error"]["code"] == "forbidden"
    deleted = rep.delete(shared)
    assert deleted.status_code == 403
    assert deleted.json["error"]["code"] == "forbidden"
    assert _stored_account(app, org, "out") == before
    own_record = rep.patch(f"/api/data/accounts({org.records['rep']})", json={"name": "Mine, renamed"})
    assert own_record.status_code == 200  # the control: rep may write their own account
