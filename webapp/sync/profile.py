"""The offline profile: which entities a device holds, and which of their records.

What a device holds = the profile's filter ∩ the user's read scope, both as SQL. Filters:
`all`; `mine` (owned by the user); `myteams` (owned by the user or one of their teams);
`mybu` (owned in the user's business unit); `modified` (changed in the last N days);
`related` (referenced by, or referencing, a record of another offline entity that is itself
held under a non-related filter — one level, so the rule stays explainable).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, false, or_, true

from webapp.crm.changes import utcnow
from webapp.crm.errors import BadRequest, ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.orgs import save_settings
from webapp.crm.registry import OrgModel
from webapp.security.operations import read_condition
from webapp.security.scope import Principal, Reach, reach

FILTERS = ("all", "mine", "myteams", "mybu", "modified", "related")


def entity_settings(model: OrgModel, entity: Entity) -> dict[str, Any]:
    """The profile's settings for one entity (disabled when absent)."""
    offline = model.settings.get("offline", {})
    return dict(offline.get("entities", {}).get(entity.logical_name, {"enabled": False, "filter": "all"}))


def is_offline(model: OrgModel, entity: Entity) -> bool:
    """Whether devices hold this entity: the organisation switch, the entity, and read offline."""
    if not model.settings.get("offline", {}).get("enabled", False):
        return False
    if "read" not in entity.offline_commands:
        return False
    if entity.union_of:  # activitypointer: offline when any of its types is
        return any(is_offline(model, model.entity(t)) for t in entity.union_of)
    return bool(entity_settings(model, entity).get("enabled"))


def downloadable(model: OrgModel) -> list[Entity]:
    """The entities a device downloads (activitypointer is derived on the device from its types)."""
    return [e for e in model.entities.values() if not e.union_of and is_offline(model, e)]


@dataclass(frozen=True)
class PlainFilter:
    """A non-`related` offline filter as data: every record, those owned by one of `owners`,
    owned in `unit`, or changed in the last `days`. `sql` renders it for downloads and pulls,
    `admits` decides one record in Python for live fan-out (webapp/sync/fanout.py); one
    declaration, proven equal by tests/test_fanout_scope.py."""

    owners: frozenset[str] | None = None
    unit: str | None = None
    days: int | None = None

    def sql(self, src: Any, now: dt.datetime) -> Any:
        """The WHERE clause over the entity's table."""
        if self.owners is not None:
            return src.c.ownerid.in_(sorted(self.owners))
        if self.unit is not None:
            return src.c.owningbusinessunit == self.unit
        if self.days is not None:
            return src.c.modifiedon >= now - dt.timedelta(days=self.days)
        return true()

    def admits(self, row: Mapping[str, Any], now: dt.datetime) -> bool:
        """Whether the record `row` (its ownerid, owningbusinessunit and modifiedon) passes."""
        if self.owners is not None:
            return row.get("ownerid") in self.owners
        if self.unit is not None:
            return bool(row.get("owningbusinessunit") == self.unit)
        if self.days is not None:
            changed = row.get("modifiedon")
            return changed is not None and changed >= now - dt.timedelta(days=self.days)
        return True


def plain_filter(model: OrgModel, p: Principal, entity: Entity) -> PlainFilter | None:
    """The profile's filter of an entity as data, or None for `related` (which needs SQL)."""
    settings = entity_settings(model, entity)
    kind = settings.get("filter", "all")
    if kind == "related":
        return None
    if entity.ownership != "user" and kind in ("mine", "myteams", "mybu"):
        return PlainFilter()  # organisation-owned records have no owner to filter on
    if kind == "all":
        return PlainFilter()
    if kind == "mine":
        return PlainFilter(owners=frozenset([p.user_id]))
    if kind == "myteams":
        return PlainFilter(owners=frozenset([p.user_id, *p.team_ids]))
    if kind == "mybu":
        return PlainFilter(unit=p.business_unit_id)
    if kind == "modified":
        return PlainFilter(days=int(settings.get("days") or 30))
    raise BadRequest(f"Unknown offline filter '{kind}'.")


def _plain_filter(model: OrgModel, p: Principal, entity: Entity, src: Any, now: dt.datetime) -> Any:
    found = plain_filter(model, p, entity)
    assert found is not None, "a related filter has no plain form"
    return found.sql(src, now)


def offline_filter(model: OrgModel, p: Principal, entity: Entity, src: Any, now: dt.datetime | None = None) -> Any:
    """The profile's filter for an entity as SQL (without the security scope)."""
    now = now or utcnow()
    settings = entity_settings(model, entity)
    if settings.get("filter", "all") != "related":
        return _plain_filter(model, p, entity, src, now)
    links = []
    for other in downloadable(model):
        if other.logical_name == entity.logical_name or entity_settings(model, other).get("filter") == "related":
            continue
        osrc = model.selectable(other)
        held = and_(
            osrc.c.organizationid == model.org_id,
            _plain_filter(model, p, other, osrc, now),
            read_condition(p, model, other),
        )
        for attr in entity.lookups():  # this record points at a held record
            if other.logical_name in attr.targets:
                cond = and_(held, osrc.c[other.primary_id] == src.c[attr.logical_name])
                links.append(exists().where(cond))
        for attr in other.lookups():  # a held record points at this one
            if entity.logical_name in attr.targets:
                cond = and_(held, osrc.c[attr.logical_name] == src.c[entity.primary_id])
                if attr.is_polymorphic:
                    cond = and_(cond, osrc.c[f"{attr.logical_name}__type"] == entity.logical_name)
                links.append(exists().where(cond))
    return or_(*links) if links else false()


@dataclass(frozen=True)
class Holding:
    """What a device holds of one entity, as data: nothing when the entity is not offline, else
    the records that pass the profile's filter and the user's read reach. `filter` is None for
    the `related` filter, which only SQL decides. `device_scope` renders it as SQL; `admits`
    decides one record in Python for live fan-out."""

    offline: bool
    filter: PlainFilter | None
    read: Reach

    def admits(self, row: Mapping[str, Any], shares: Mapping[str, Iterable[str]], now: dt.datetime) -> bool | None:
        """Whether a device holds the record `row` (shared as `shares`: principal id → rights);
        None when only SQL can tell (a `related` filter)."""
        if not self.offline:
            return False
        if self.filter is None:
            return None
        if not self.filter.admits(row, now):
            return False
        return self.read.admits(row.get("ownerid"), row.get("owningbusinessunit"), shares)


def holding(model: OrgModel, p: Principal, entity: Entity) -> Holding:
    """What devices of user `p` hold of `entity` (see Holding)."""
    return Holding(is_offline(model, entity), plain_filter(model, p, entity), reach(p, entity, "read"))


def device_scope(model: OrgModel, p: Principal, entity: Entity, now: dt.datetime | None = None) -> Any:
    """What a device holds of an entity: the offline filter ∩ the user's read scope."""
    src = model.selectable(entity)
    held = holding(model, p, entity)
    if not held.offline:
        return false()
    read = held.read.sql(model.org_id, src, entity.primary_id)
    if entity.union_of:
        return read
    if held.filter is None:
        return and_(offline_filter(model, p, entity, src, now), read)
    return and_(held.filter.sql(src, now or utcnow()), read)


def may_have_held(model: OrgModel, p: Principal, entity: Entity, src: Any) -> Any:
    """The profile's filter as far as a past version of a record can show it (owner and unit);
    a time window or a relation is taken as met: the device may have held the record then."""
    if entity_settings(model, entity).get("filter", "all") in ("mine", "myteams", "mybu"):
        return _plain_filter(model, p, entity, src, utcnow())
    return true()


def window_days(model: OrgModel, entity: Entity) -> int | None:
    """The days of a `modified` filter on this entity, or None when it has none."""
    settings = entity_settings(model, entity)
    if not is_offline(model, entity) or settings.get("filter") != "modified":
        return None
    return int(settings.get("days") or 30)


def related_sources(model: OrgModel, entity: Entity) -> set[str]:
    """For an entity held under `related`: the entities whose records decide which of its records
    are held (a change to one of those can bring its records in or take them out)."""
    if not is_offline(model, entity) or entity_settings(model, entity).get("filter") != "related":
        return set()
    out = set()
    for other in downloadable(model):
        if other.logical_name == entity.logical_name or entity_settings(model, other).get("filter") == "related":
            continue
        linked = any(other.logical_name in a.targets for a in entity.lookups())
        linked = linked or any(entity.logical_name in a.targets for a in other.lookups())
        if linked:
            out.add(other.logical_name)
    return out


def validate_entity_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Check one entity's profile settings (enabled, filter, days) and return them clean."""
    kind = settings.get("filter", "all")
    if kind not in FILTERS:
        raise ValidationFailed(f"filter must be one of {', '.join(FILTERS)}.", field="filter")
    days = settings.get("days")
    if kind == "modified" and (not isinstance(days, int) or not 1 <= days <= 3650):
        raise ValidationFailed("modified needs a number of days from 1 to 3650.", field="days")
    return {"enabled": bool(settings.get("enabled")), "filter": kind, "days": days if kind == "modified" else None}


def set_offline(
    session: Any,
    model: OrgModel,
    enabled: bool | None = None,
    entity: str | None = None,
    entity_enabled: bool | None = None,
    filter_spec: str | None = None,
    interval: int | None = None,
    conflict_detection: bool | None = None,
    pin_required: bool | None = None,
) -> str:
    """Change the offline profile (a new metadata version follows); returns a summary line."""
    settings = copy.deepcopy(model.settings)
    offline = settings.setdefault("offline", {})
    entities = offline.setdefault("entities", {})
    said = []
    if enabled is not None:
        offline["enabled"] = enabled
        said.append(f"mobile offline {'on' if enabled else 'off'}")
    if entity is not None:
        target = model.entity(entity)
        if "read" not in target.offline_commands or target.union_of:
            raise ValidationFailed(f"{entity} cannot be taken offline.", field="entity")
        current = dict(entities.get(entity, {"enabled": False, "filter": "all", "days": None}))
        if entity_enabled is not None:
            current["enabled"] = entity_enabled
        if filter_spec is not None:
            kind, _, days = filter_spec.partition(":")
            current["filter"] = kind
            current["days"] = int(days) if days.isdigit() else (days or None)  # validation names a bad value
        entities[entity] = validate_entity_settings(current)
        e = entities[entity]
        said.append(
            f"{entity}: {'enabled' if e['enabled'] else 'disabled'}, filter {e['filter']}"
            + (f" {e['days']} days" if e["days"] else "")
        )
    if interval is not None:
        offline["sync_interval_minutes"] = interval
        said.append(f"sync every {interval} min")
    if conflict_detection is not None:
        settings["conflict_detection"] = conflict_detection
        said.append(f"conflict detection {'on (server wins)' if conflict_detection else 'off (client wins)'}")
    if pin_required is not None:
        offline["pin_required"] = pin_required
        said.append(f"app PIN {'required' if pin_required else 'off'}")
    save_settings(session, model.org_id, settings)
    return "; ".join(said) or "nothing changed"
