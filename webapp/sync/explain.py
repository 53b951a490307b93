"""Before publishing, and when a user asks: what the offline profile puts on a device, and why.

`dry_run` counts, per entity, the records a user's device would download, with the very
condition the download uses (`device_scope`), so its counts are exactly what a device then
receives; the size is estimated from the wire form of a sample of those records.
`why` tells, for one user and one record, which rule puts it on the device or keeps it off:
the profile (organisation switch, entity, download filter) and the security scope (role
depth, ownership, business unit, team, hierarchy, share). The verdict itself comes from the
same SQL conditions; the reasons are the readable story around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.crm.errors import NotFound
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.security.operations import read_condition, to_wire_many
from webapp.security.roles import BU, DEPTHS, NONE, ORG, PARENTCHILD, USER
from webapp.security.scope import Principal, load_principal
from webapp.security.tables import recordshare, role, roleprivilege, teamrole, userrole
from webapp.sync.profile import device_scope, downloadable, entity_settings, is_offline, offline_filter

SAMPLE = 200  # records serialised to estimate the size of an entity's download
DEPTH_NAMES = {v: k for k, v in DEPTHS.items()}
DEPTH_LABELS = {
    NONE: "none",
    USER: "user (own records)",
    BU: "business unit",
    PARENTCHILD: "parent: child business units",
    ORG: "organization",
}


@dataclass
class EntityEstimate:
    """One entity of a dry run."""

    entity: str
    display_name: str
    filter: str
    count: int
    bytes: int


@dataclass
class DryRun:
    """What a user's device would hold under the current profile."""

    user_id: str
    entities: list[EntityEstimate] = field(default_factory=list)

    @property
    def total_records(self) -> int:
        """Records over all entities."""
        return sum(e.count for e in self.entities)

    @property
    def total_bytes(self) -> int:
        """Estimated bytes over all entities."""
        return sum(e.bytes for e in self.entities)

    def counts(self) -> dict[str, int]:
        """`{entity: count}`."""
        return {e.entity: e.count for e in self.entities}


def filter_label(settings: dict[str, Any]) -> str:
    """A download filter as people read it."""
    kind = str(settings.get("filter", "all"))
    return {
        "all": "All records",
        "mine": "Owned by me",
        "myteams": "Owned by me or my teams",
        "mybu": "In my business unit",
        "modified": f"Modified in the last {settings.get('days') or 30} days",
        "related": "Related rows only",
    }.get(kind, kind)


def dry_run(session: Session, model: OrgModel, user_id: str) -> DryRun:
    """Per downloaded entity: how many records the user's device would hold, and their size."""
    p = load_principal(session, model, user_id)
    out = DryRun(user_id)
    for entity in sorted(downloadable(model), key=lambda e: e.display_collection_name):
        src = model.selectable(entity)
        base = select(src).where(src.c.organizationid == model.org_id, device_scope(model, p, entity))
        count = int(session.execute(select(func.count()).select_from(base.subquery())).scalar_one())
        size = 0
        if count:
            rows = [dict(r) for r in session.execute(base.order_by(src.c[entity.primary_id]).limit(SAMPLE)).mappings()]
            wire = to_wire_many(session, model, p, entity, rows)
            sample_bytes = sum(len(json.dumps(r, default=str).encode()) for r in wire)
            size = round(sample_bytes / len(wire) * count) if wire else 0
        out.entities.append(
            EntityEstimate(
                entity.logical_name,
                entity.display_collection_name,
                filter_label(entity_settings(model, entity)),
                count,
                size,
            )
        )
    return out


@dataclass
class Reason:
    """One rule and what it says about the record."""

    rule: str  # profile | filter | security | owner | business unit | team | hierarchy | share | role
    text: str
    passes: bool


@dataclass
class Explanation:
    """Why a record is (not) on a user's device."""

    on_device: bool
    summary: str
    record_name: str = ""
    reasons: list[Reason] = field(default_factory=list)


def _role_sources(session: Session, p: Principal, entity: str) -> list[tuple[str, str, int]]:
    """(role name, held through, depth) of every read grant the user holds on the entity."""
    out: list[tuple[str, str, int]] = []
    for r in session.execute(
        select(role.c.name, roleprivilege.c.depth)
        .join(userrole, userrole.c.roleid == role.c.roleid)
        .join(roleprivilege, roleprivilege.c.roleid == role.c.roleid)
        .where(
            userrole.c.systemuserid == p.user_id,
            role.c.organizationid == p.org_id,
            roleprivilege.c.privilege == "read",
            roleprivilege.c.entity.in_([entity, "*"]),
        )
    ):
        out.append((r.name, "the user", r.depth))
    if p.team_ids:
        for t in session.execute(
            select(role.c.name, teamrole.c.teamid, roleprivilege.c.depth)
            .join(teamrole, teamrole.c.roleid == role.c.roleid)
            .join(roleprivilege, roleprivilege.c.roleid == role.c.roleid)
            .where(
                teamrole.c.teamid.in_(p.team_ids),
                roleprivilege.c.privilege == "read",
                roleprivilege.c.entity.in_([entity, "*"]),
            )
        ):
            out.append((t.name, f"team {t.teamid}", t.depth))
    return out


def _name_of(session: Session, model: OrgModel, entity_name: str, record_id: str | None) -> str:
    if not record_id:
        return "nobody"
    entity = model.entity(entity_name)
    t = model.selectable(entity)
    found = session.execute(
        select(t.c[entity.primary_name]).where(t.c.organizationid == model.org_id, t.c[entity.primary_id] == record_id)
    ).scalar()
    return str(found) if found is not None else record_id


def _security_reasons(
    session: Session, model: OrgModel, p: Principal, entity: Entity, row: dict[str, Any]
) -> list[Reason]:
    """The security rules that do (or do not) grant read on this record."""
    name = entity.logical_name
    reasons: list[Reason] = []
    grants = _role_sources(session, p, name)
    team_names = {t: _name_of(session, model, "team", t) for t in p.team_ids}
    if grants:
        for role_name, through, depth in sorted(grants, key=lambda g: -g[2]):
            if through.startswith("team "):
                through = f"team {team_names.get(through[5:], through[5:])}"
            reasons.append(
                Reason(
                    "role", f"Role '{role_name}' (held by {through}) grants read at depth {DEPTH_LABELS[depth]}.", True
                )
            )
    else:
        reasons.append(
            Reason("role", f"No security role of this user grants read on {entity.display_collection_name}.", False)
        )
    if entity.ownership == "organization":
        ok = p.best_depth(name, "read") >= ORG
        reasons.append(Reason("security", "Organisation-owned records are readable with organization depth.", ok))
        return reasons
    owner, owner_type, bu = row.get("ownerid"), row.get("ownerid__type"), row.get("owningbusinessunit")
    owner_name = _name_of(session, model, owner_type or "systemuser", owner) if owner else "nobody"
    bu_name = _name_of(session, model, "businessunit", bu)
    if p.best_depth(name, "read") >= ORG:
        reasons.append(Reason("security", "Organization depth: every record of the organisation is readable.", True))
    mine = owner == p.user_id
    reasons.append(
        Reason(
            "owner",
            f"Owned by {owner_type or 'user'} {owner_name}" + (" (this user)." if mine else "."),
            mine and p.best_depth(name, "read") >= USER,
        )
    )
    if owner in p.team_ids:
        reasons.append(
            Reason(
                "team", f"Owned by team {owner_name}, which this user belongs to.", p.best_depth(name, "read") >= USER
            )
        )
    own_depth = p.depth(name, "read")
    in_subtree = bu in p.subtree(p.business_unit_id)
    if own_depth >= PARENTCHILD:
        reasons.append(
            Reason(
                "business unit",
                f"Owning business unit {bu_name} is {'within' if in_subtree else 'outside'} "
                "the user's unit and its children.",
                in_subtree,
            )
        )
    elif own_depth >= BU:
        same = bu == p.business_unit_id
        reasons.append(
            Reason(
                "business unit",
                f"Owning business unit {bu_name} is {'the' if same else 'not the'} user's business unit.",
                same,
            )
        )
    for team_id in p.team_ids:
        depth = p.depth(name, "read", team_id)
        team_bu = p.team_bus.get(team_id, "")
        if depth >= PARENTCHILD and bu in p.subtree(team_bu):
            reasons.append(
                Reason(
                    "team", f"Team {team_names[team_id]}'s role reaches {bu_name} (parent: child business units).", True
                )
            )
        elif depth >= BU and bu == team_bu:
            reasons.append(
                Reason("team", f"Team {team_names[team_id]}'s role reaches its own business unit {bu_name}.", True)
            )
    if p.subordinates and owner in p.subordinates and p.best_depth(name, "read") >= USER:
        reasons.append(
            Reason(
                "hierarchy",
                f"The owner is {p.subordinates[owner]} level(s) below this user in the hierarchy "
                f"(depth {p.hierarchy_depth}).",
                True,
            )
        )
    elif p.hierarchy_depth:
        reasons.append(Reason("hierarchy", "The owner is not below this user in the hierarchy.", False))
    shared_entities = list(entity.union_of) if entity.union_of else [name]
    shares = session.execute(
        select(recordshare.c.principalid, recordshare.c.principaltype, recordshare.c.read).where(
            recordshare.c.organizationid == model.org_id,
            recordshare.c.entity.in_(shared_entities),
            recordshare.c.recordid == row[entity.primary_id],
            recordshare.c.principalid.in_([p.user_id, *p.team_ids]),
        )
    ).all()
    for s in shares:
        who = "this user" if s.principalid == p.user_id else f"team {team_names.get(s.principalid, s.principalid)}"
        reasons.append(
            Reason("share", f"Shared with {who}" + (" with read." if s.read else " without read."), bool(s.read))
        )
    if not shares:
        reasons.append(Reason("share", "Not shared with this user or their teams.", False))
    return reasons


def why(session: Session, model: OrgModel, user_id: str, entity_name: str, record_id: str) -> Explanation:
    """Which rules put a record on a user's device, or keep it off."""
    entity = model.entity(entity_name)
    p = load_principal(session, model, user_id)
    src = model.selectable(entity)
    row = (
        session.execute(select(src).where(src.c.organizationid == model.org_id, src.c[entity.primary_id] == record_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"There is no {entity.display_name.lower()} with id {record_id}.")
    record = dict(row)
    label = str(record.get(entity.primary_name) or record_id)

    def matches(cond: Any) -> bool:
        hit = session.execute(
            select(src.c[entity.primary_id]).where(
                src.c.organizationid == model.org_id, src.c[entity.primary_id] == record_id, cond
            )
        ).first()
        return hit is not None

    on_device = matches(device_scope(model, p, entity))
    reasons: list[Reason] = []
    org_on = bool(model.settings.get("offline", {}).get("enabled", False))
    reasons.append(Reason("profile", f"Mobile offline is {'on' if org_on else 'off'} for the organisation.", org_on))
    if entity.union_of:
        reasons.append(
            Reason(
                "profile",
                f"{entity.display_collection_name} are offline when any activity type is.",
                is_offline(model, entity),
            )
        )
    else:
        settings = entity_settings(model, entity)
        enabled = bool(settings.get("enabled")) and "read" in entity.offline_commands
        reasons.append(
            Reason(
                "profile",
                f"{entity.display_collection_name} are {'in' if enabled else 'not in'} the offline profile.",
                enabled,
            )
        )
        if enabled:
            fits = matches(offline_filter(model, p, entity, src))
            reasons.append(
                Reason(
                    "filter",
                    f"Download filter '{filter_label(settings)}': "
                    f"the record {'matches' if fits else 'does not match'}.",
                    fits,
                )
            )
    readable = matches(read_condition(p, model, entity))
    reasons.append(Reason("security", f"The user {'may' if readable else 'may not'} read this record.", readable))
    reasons.extend(_security_reasons(session, model, p, entity, record))
    if on_device:
        summary = f"{label} is on this user's device: the profile includes it and the user may read it."
    elif not readable:
        summary = f"{label} is not on this user's device: the user may not read it."
    else:
        summary = f"{label} is not on this user's device: the offline profile leaves it out."
    return Explanation(on_device, summary, label, reasons)
