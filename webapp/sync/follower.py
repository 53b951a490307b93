"""What the live fan-out (webapp/sync/fanout.py) keeps per device, and where it indexes it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from webapp.security.operations import access_reaches, hidden_names
from webapp.security.scope import Principal
from webapp.sync.profile import Holding


class Prepared(dict):  # type: ignore[type-arg]
    """A frame serialised once for all its receivers (`text`): the socket sends the text."""

    text: str = ""


@dataclass
class Delivery:
    """Frames that take a device from cursor `start` to `upto`."""

    start: int
    upto: int
    frames: list[dict[str, Any]]


@dataclass(eq=False)
class Follower:
    """A caught-up device as the fan-out decides for it."""

    sub: Any  # its hub Subscription
    at: int  # the cursor its next delivery starts from
    principal: Principal
    revision: int  # the metadata revision its holdings were computed at
    epoch: int  # the security epoch its principal was loaded at (webapp/crm/epoch.py)
    holdings: dict[str, Holding]
    clock: Any = None  # the channel's clock (tests move time)
    windows: bool = False  # it reconciles and holds an entity under a `modified` window
    planned: float = field(default_factory=time.monotonic)
    keys: list[tuple[Any, ...]] = field(default_factory=list)  # its index entries
    related: bool = False
    reaches: dict[str, list[Any]] = field(default_factory=dict)
    shapes: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def shape(self, model: Any, entity: Any) -> tuple[Any, ...]:
        """What field security makes of a record of `entity` for this user: (entity, hidden
        fields, entities whose names are hidden) — one serialisation per shape."""
        found = self.shapes.get(entity.logical_name)
        if found is None:
            p = self.principal
            found = (entity.logical_name, frozenset(p.hidden_fields(entity)), frozenset(hidden_names(p, model)))
            self.shapes[entity.logical_name] = found
        return found

    def reaches_of(self, entity: Any) -> list[Any]:
        """The reaches behind the access letters of `entity` (kept: the principal does not change)."""
        found = self.reaches.get(entity.logical_name)
        if found is None:
            found = self.reaches[entity.logical_name] = access_reaches(self.principal, entity)
        return found


def index_keys(org: str, p: Principal, holdings: dict[str, Holding], related: bool) -> list[tuple[Any, ...]]:
    """Where a device sits in the index: a superset of the records it may receive (step 2)."""
    keys: list[tuple[Any, ...]] = [(org, "all"), (org, "user", p.user_id)]
    keys += [(org, "principal", who) for who in (p.user_id, *p.team_ids)]
    if related:
        keys.append((org, "related"))
    for name, h in holdings.items():
        if not h.offline or h.filter is None:
            continue
        if h.filter.owners is not None:
            keys += [(org, "owner", name, o) for o in h.filter.owners]
        elif h.filter.unit is not None:
            keys.append((org, "unit", name, h.filter.unit))
        elif h.read.everything:
            keys.append((org, "every", name))
        else:
            keys += [(org, "owner", name, o) for o in h.read.owners]
            keys += [(org, "unit", name, u) for u in h.read.units]
    return keys
