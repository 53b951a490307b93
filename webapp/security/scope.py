"""Who may see and do what: the one implementation, as SQL conditions.

`load_principal` gathers, once per request, what the rules need about a user: business
unit, teams, the depth of every privilege from the user's roles and each team's roles,
hierarchy subordinates, and field-security grants. `condition` turns (principal, entity,
privilege) into a WHERE clause; every list, every single-record check, the sync download
and replay use it, so no path filters rows in Python. The rules (README "Security model"):

- user-level depth: records owned by the user or by a team the user belongs to;
- business unit: records owned in the user's business unit; parent-child: in its subtree;
  organization: every record. A team's roles apply relative to the team (its records, its
  unit). Organisation-owned entities know only none and organization.
- hierarchy (manager or position): with at least user depth, a manager reads the records
  owned by subordinates down to the configured depth, and writes (and appends) only those
  of direct reports;
- shares add access to single records for the rights shared, to users or teams;
- field security: secured attributes are hidden and unwritable without a profile grant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import false, or_, select, true
from sqlalchemy.orm import Session

from webapp.crm import ruledata
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.crm.tables import teammembership
from webapp.security.roles import ADMIN_ROLE, BU, NONE, ORG, PARENTCHILD, USER
from webapp.security.tables import (
    fieldpermission,
    fieldprofilemember,
    recordshare,
    role,
    roleprivilege,
    securedattribute,
    teamrole,
    userrole,
)

HIERARCHY_WRITE = {"write", "append", "appendto"}  # what direct reports' records also allow


@dataclass
class Principal:
    """A signed-in user as the security rules see them."""

    org_id: str
    user_id: str
    business_unit_id: str
    team_ids: tuple[str, ...] = ()
    team_bus: dict[str, str] = field(default_factory=dict)
    user_depths: dict[tuple[str, str], int] = field(default_factory=dict)
    team_depths: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    bu_children: dict[str, list[str]] = field(default_factory=dict)
    subordinates: dict[str, int] = field(default_factory=dict)  # user id -> level below (1 = direct)
    hierarchy_depth: int = 0
    is_admin: bool = False
    secured: set[tuple[str, str]] = field(default_factory=set)
    field_grants: dict[tuple[str, str], tuple[bool, bool, bool]] = field(default_factory=dict)

    def depth(self, entity: str, privilege: str, team_id: str | None = None) -> int:
        """The depth held for a privilege (a grant on `*` counts for every entity)."""
        depths = self.user_depths if team_id is None else self.team_depths.get(team_id, {})
        return max(depths.get((entity, privilege), NONE), depths.get(("*", privilege), NONE))

    def best_depth(self, entity: str, privilege: str) -> int:
        """The deepest depth held through the user's own roles or any of their teams'."""
        return max([self.depth(entity, privilege), *(self.depth(entity, privilege, t) for t in self.team_ids)])

    def subtree(self, bu: str) -> list[str]:
        """A business unit and every unit below it."""
        out, todo = [], [bu]
        while todo:
            cur = todo.pop()
            out.append(cur)
            todo.extend(self.bu_children.get(cur, []))
        return out

    def hidden_fields(self, entity: Entity) -> set[str]:
        """Secured attributes of `entity` this user may not read."""
        if self.is_admin:
            return set()
        hidden = {a for (e, a) in self.secured if e == entity.logical_name and not self._grant(e, a)[0]}
        for derived, sources in ruledata.derived_from(entity.attributes).items():
            if hidden.intersection(sources):
                hidden.add(derived)
        return hidden

    def may_write_field(self, entity: str, attribute: str, creating: bool) -> bool:
        """Whether the user may set a (possibly secured) attribute on create or update."""
        if self.is_admin or (entity, attribute) not in self.secured:
            return True
        _, can_create, can_update = self._grant(entity, attribute)
        return can_create if creating else can_update

    def _grant(self, entity: str, attribute: str) -> tuple[bool, bool, bool]:
        return self.field_grants.get((entity, attribute), (False, False, False))


def load_principal(session: Session, model: OrgModel, user_id: str) -> Principal:
    """Everything the security rules need about a user, in a handful of queries."""
    org = model.org_id
    users = model.tables["systemuser"]
    me = session.execute(
        select(users.c.businessunitid, users.c.positionid).where(
            users.c.organizationid == org, users.c.systemuserid == user_id
        )
    ).one()
    teams = model.tables["team"]
    team_rows = session.execute(
        select(teams.c.teamid, teams.c.businessunitid)
        .join(teammembership, teammembership.c.teamid == teams.c.teamid)
        .where(teams.c.organizationid == org, teammembership.c.systemuserid == user_id)
    ).all()
    team_ids = tuple(sorted(r.teamid for r in team_rows))
    p = Principal(org, user_id, me.businessunitid, team_ids, {r.teamid: r.businessunitid for r in team_rows})

    grants = session.execute(
        select(
            userrole.c.systemuserid,
            role.c.name,
            roleprivilege.c.entity,
            roleprivilege.c.privilege,
            roleprivilege.c.depth,
        )
        .join(role, role.c.roleid == userrole.c.roleid)
        .join(roleprivilege, roleprivilege.c.roleid == role.c.roleid, isouter=True)
        .where(userrole.c.systemuserid == user_id, role.c.organizationid == org)
    ).all()
    for g in grants:
        p.is_admin = p.is_admin or g.name == ADMIN_ROLE
        if g.entity is not None:
            key = (g.entity, g.privilege)
            p.user_depths[key] = max(p.user_depths.get(key, NONE), g.depth)
    if team_ids:
        team_grants = session.execute(
            select(teamrole.c.teamid, roleprivilege.c.entity, roleprivilege.c.privilege, roleprivilege.c.depth)
            .join(roleprivilege, roleprivilege.c.roleid == teamrole.c.roleid)
            .where(teamrole.c.teamid.in_(team_ids), teamrole.c.organizationid == org)
        ).all()
        for tg in team_grants:
            depths = p.team_depths.setdefault(tg.teamid, {})
            key = (tg.entity, tg.privilege)
            depths[key] = max(depths.get(key, NONE), tg.depth)

    bus = model.tables["businessunit"]
    for bu_id, parent in session.execute(
        select(bus.c.businessunitid, bus.c.parentbusinessunitid).where(bus.c.organizationid == org)
    ):
        if parent:
            p.bu_children.setdefault(parent, []).append(bu_id)

    hierarchy = model.settings.get("hierarchy", {})
    if hierarchy.get("model") in ("manager", "position"):
        p.hierarchy_depth = int(hierarchy.get("depth", 3))
        p.subordinates = _subordinates(session, model, user_id, me.positionid, hierarchy["model"], p.hierarchy_depth)

    p.secured = {
        (r.entity, r.attribute)
        for r in session.execute(
            select(securedattribute.c.entity, securedattribute.c.attribute).where(
                securedattribute.c.organizationid == org
            )
        )
    }
    if p.secured:
        members = [user_id, *team_ids]
        for r in session.execute(
            select(fieldpermission)
            .join(fieldprofilemember, fieldprofilemember.c.profileid == fieldpermission.c.profileid)
            .where(fieldprofilemember.c.organizationid == org, fieldprofilemember.c.principalid.in_(members))
        ):
            old = p.field_grants.get((r.entity, r.attribute), (False, False, False))
            p.field_grants[(r.entity, r.attribute)] = (
                old[0] or r.canread,
                old[1] or r.cancreate,
                old[2] or r.canupdate,
            )
    return p


def _subordinates(
    session: Session, model: OrgModel, user_id: str, position_id: str | None, kind: str, depth: int
) -> dict[str, int]:
    """Users below `user_id` in the manager or position hierarchy, with their level."""
    users = model.tables["systemuser"]
    rows = session.execute(
        select(users.c.systemuserid, users.c.parentsystemuserid, users.c.positionid).where(
            users.c.organizationid == model.org_id
        )
    ).all()
    found: dict[str, int] = {}
    if kind == "manager":
        reports: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r.parentsystemuserid:
                reports[r.parentsystemuserid].append(r.systemuserid)
        frontier = [user_id]
        for level in range(1, depth + 1):
            frontier = [u for m in frontier for u in reports.get(m, []) if u not in found and u != user_id]
            for u in frontier:
                found[u] = level
        return found
    if position_id is None:
        return found
    positions = model.tables["position"]
    children: dict[str, list[str]] = defaultdict(list)
    for pos, parent in session.execute(
        select(positions.c.positionid, positions.c.parentpositionid).where(positions.c.organizationid == model.org_id)
    ):
        if parent:
            children[parent].append(pos)
    holders: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.positionid:
            holders[r.positionid].append(r.systemuserid)
    frontier = [position_id]
    for level in range(1, depth + 1):
        frontier = [c for pos in frontier for c in children.get(pos, [])]
        for pos in frontier:
            for u in holders.get(pos, []):
                if u != user_id and u not in found:
                    found[u] = level
    return found


@dataclass(frozen=True)
class Reach:
    """The records of one entity a user holds one privilege on, as data: every record, or those
    owned by one of `owners`, owned in one of `units`, or shared with one of `sharees` for the
    privilege. The rules (`reach`) produce it once; `sql` renders it as the WHERE clause every
    read and write uses, `admits` decides one record in Python (live fan-out,
    webapp/sync/fanout.py) — one declaration, two renderings, proven equal by
    tests/test_fanout_scope.py."""

    privilege: str
    everything: bool = False
    owners: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    sharees: frozenset[str] = frozenset()
    share_entities: tuple[str, ...] = ()

    def sql(self, org_id: str, src: Any, primary_id: str) -> Any:
        """The WHERE clause over `src` (the entity's table or union)."""
        if self.everything:
            return true()
        parts: list[Any] = []
        if self.owners:
            parts.append(src.c.ownerid.in_(sorted(self.owners)))
        if self.units:
            parts.append(src.c.owningbusinessunit.in_(sorted(self.units)))
        if self.sharees:
            shares = select(recordshare.c.recordid).where(
                recordshare.c.organizationid == org_id,
                recordshare.c.entity.in_(self.share_entities),
                recordshare.c.principalid.in_(sorted(self.sharees)),
                recordshare.c[self.privilege] == true(),
            )
            parts.append(src.c[primary_id].in_(shares))
        return or_(*parts) if parts else false()

    def admits(self, owner: str | None, unit: str | None, shares: Mapping[str, Iterable[str]]) -> bool:
        """Whether a record owned by `owner` in `unit`, shared as `shares` (principal id → the
        rights shared with it), is reached."""
        if self.everything:
            return True
        if owner in self.owners or unit in self.units:
            return True
        return any(who in self.sharees and self.privilege in rights for who, rights in shares.items())


def reach(p: Principal, entity: Entity, privilege: str) -> Reach:
    """What of `entity` the user holds `privilege` on (README "Security model")."""
    name = entity.logical_name
    if entity.ownership == "organization":
        return Reach(privilege, everything=p.best_depth(name, privilege) >= ORG)
    owners: set[str] = set()
    units: set[str] = set()
    for team_id, bu, owned in [(None, p.business_unit_id, [p.user_id, *p.team_ids])] + [
        (t, p.team_bus.get(t, ""), [t]) for t in p.team_ids
    ]:
        depth = p.depth(name, privilege, team_id)
        if depth >= ORG:
            return Reach(privilege, everything=True)
        # Depths are ordered: a deeper grant reaches everything a shallower one does, so the
        # user's own (and their teams') records stay in reach when the unit is elsewhere.
        if depth >= USER:
            owners.update(owned)
        if depth >= PARENTCHILD:
            units.update(p.subtree(bu))
        elif depth >= BU:
            units.add(bu)
    if p.subordinates and p.best_depth(name, privilege) >= USER:
        if privilege == "read":
            owners.update(p.subordinates)
        elif privilege in HIERARCHY_WRITE:
            owners.update(u for u, level in p.subordinates.items() if level == 1)
    return Reach(
        privilege,
        owners=frozenset(owners),
        units=frozenset(units),
        sharees=frozenset([p.user_id, *p.team_ids]),
        share_entities=tuple(entity.union_of) if entity.union_of else (name,),
    )


def condition(p: Principal, model: OrgModel, entity: Entity, src: Any, privilege: str) -> Any:
    """The WHERE clause selecting exactly the records of `entity` the user holds `privilege` on."""
    return reach(p, entity, privilege).sql(p.org_id, src, entity.primary_id)


def may_create(p: Principal, entity: Entity) -> bool:
    """Whether the user may create records of `entity` (owned by themselves)."""
    needed = ORG if entity.ownership == "organization" else USER
    return p.best_depth(entity.logical_name, "create") >= needed


def may_append_new(p: Principal, entity: Entity) -> bool:
    """Whether a record the user is creating (owned by them) may have lookups set."""
    needed = ORG if entity.ownership == "organization" else USER
    return p.best_depth(entity.logical_name, "append") >= needed
