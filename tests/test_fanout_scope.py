"""Live fan-out decides in Python what the download decides in SQL: the two must never differ.

Who may see what is declared once — `scope.Reach` (the read reach) and `profile.PlainFilter`
(the offline filter) — and rendered twice: as SQL for downloads, pulls and every Web API
read, and as `admits` for the fan-out, which decides for each connected device whether a
changed record goes to it (webapp/sync/fanout.py). Hypothesis draws organisations as in
tests/test_security_property.py (which proves the SQL equal to a plain reference model), adds
an offline profile with a random filter and records changed at random times, and checks for
every user and record that both renderings agree: per privilege for the reach, and for the
whole device scope (filter ∩ read).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from tests.security_fixtures import RECORD_PRIVILEGES, principal, reachable
from tests.test_security_property import COMMON, MINIMAL_TEAM_CASE, World, build, worlds
from webapp.crm.changes import utcnow
from webapp.security.scope import reach
from webapp.security.tables import recordshare
from webapp.services import services
from webapp.sync.profile import device_scope, holding, set_offline

FILTERS = ("all", "mine", "myteams", "mybu", "modified")


@dataclass(frozen=True)
class Profile:
    """The offline profile drawn for accounts: a filter, its days, and when each account changed."""

    filter: str
    days: int
    ages: tuple[int, ...]  # per account: days since it changed (the filter's own edge included)


@st.composite
def profiles(draw: Callable[[st.SearchStrategy[Any]], Any], accounts: int) -> Profile:
    """A filter for accounts, and how many days ago each account changed (edges drawn often)."""
    days = draw(st.sampled_from([1, 7, 30]))
    age = st.sampled_from([0, days - 1, days, days + 1]) | st.integers(0, 60)
    return Profile(draw(st.sampled_from(FILTERS)), days, tuple(draw(age) for _ in range(accounts)))


def shares_of(dbs: Any, org_id: str) -> dict[tuple[str, str], dict[str, set[str]]]:
    """Every share of the organisation: (entity, record) → principal → the rights shared."""
    out: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(dict)
    for row in dbs.execute(select(recordshare).where(recordshare.c.organizationid == org_id)).mappings():
        rights = {r for r in RECORD_PRIVILEGES if row[r]}
        out[(row["entity"], row["recordid"])][row["principalid"]] = rights
    return out


def disagreements(app: Flask, w: World, profile: Profile) -> list[str]:
    """Build `w` with `profile`, and list every decision where SQL and Python differ."""
    svc = services(app)
    out: list[str] = []
    with svc.db.session(write=True) as dbs:
        built = build(app, dbs, w)
        model = built.model
        now = utcnow()
        table = model.tables["account"]
        for record_id, age in zip(built.accounts, profile.ages, strict=False):
            when = now - dt.timedelta(days=age)
            dbs.execute(update(table).where(table.c.accountid == record_id).values(modifiedon=when))
        spec = f"modified:{profile.days}" if profile.filter == "modified" else profile.filter
        for entity_name, filter_spec in (("product", "all"), ("account", spec)):
            set_offline(dbs, model, enabled=True, entity=entity_name, entity_enabled=True, filter_spec=filter_spec)
            svc.registry.forget(model.org_id)
            model = svc.registry.model(dbs, model.org_id)  # each change starts from the last
        assert model.settings["offline"]["entities"]["account"]["filter"] == profile.filter
        shares = shares_of(dbs, model.org_id)
        for u, user_id in enumerate(built.users):
            p = principal(dbs, model, user_id)
            for entity_name in ("account", "product"):
                out += [f"user{u} {x}" for x in differences(dbs, model, p, entity_name, shares, now)]
        dbs.commit()
    return out


def differences(
    dbs: Any, model: Any, p: Any, entity_name: str, shares: dict[tuple[str, str], dict[str, set[str]]], now: Any
) -> list[str]:
    """Where the SQL and the Python renderings differ for one user and entity."""
    out = []
    entity = model.entity(entity_name)
    src = model.selectable(entity)
    rows = {
        r[entity.primary_id]: dict(r)
        for r in dbs.execute(select(src).where(src.c.organizationid == model.org_id)).mappings()
    }
    for privilege in RECORD_PRIVILEGES:
        in_sql = reachable(dbs, model, p, entity_name, privilege)
        declared = reach(p, entity, privilege)
        for rid, row in rows.items():
            in_python = declared.admits(row["ownerid"], row["owningbusinessunit"], shares[(entity_name, rid)])
            if (rid in in_sql) != in_python:
                out.append(f"{privilege} {entity_name} {rid}: SQL {rid in in_sql}, Python {in_python}")
    scope = device_scope(model, p, entity, now)
    held_sql = set(
        dbs.execute(select(src.c[entity.primary_id]).where(src.c.organizationid == model.org_id, scope)).scalars()
    )
    held = holding(model, p, entity)
    for rid, row in rows.items():
        in_python = held.admits(row, shares[(entity_name, rid)], now)
        if (rid in held_sql) != in_python:
            out.append(f"holds {entity_name} {rid}: SQL {rid in held_sql}, Python {in_python}")
    return out


@st.composite
def cases(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[World, Profile]:
    """An organisation and an offline profile for its accounts."""
    w = draw(worlds())
    return w, draw(profiles(len(w.accounts)))


@example(case=(MINIMAL_TEAM_CASE, Profile("myteams", 7, (8,))))
@example(case=(MINIMAL_TEAM_CASE, Profile("modified", 7, (7,))))
@settings(max_examples=60, **COMMON)
@given(case=cases())
def test_the_python_decision_equals_the_sql_condition_on_random_organisations(
    app: Flask, case: tuple[World, Profile]
) -> None:
    """Every user, privilege and record: `Reach.admits` and `Holding.admits` agree with the SQL."""
    found = disagreements(app, *case)
    assert not found, "\n".join(found)


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
@settings(max_examples=1000, **COMMON)
@given(case=cases())
def test_the_python_decision_equals_the_sql_condition_on_many_more_organisations(
    app: Flask, case: tuple[World, Profile]
) -> None:
    """The deep run of the property above (select it with `-m slow`)."""
    found = disagreements(app, *case)
    assert not found, "\n".join(found)
