"""Sharing never grants what the sharer does not hold (issue 17, item 1), on random sequences.

Hypothesis draws a small organisation — users in two business units with random account
depths per privilege, a team, accounts with random owners — and a sequence of shares and
unshares: a random sharer, record, principal (user or team) and set of rights. Each step goes
through the real operation (`webapp.security.operations.share` / `unshare`, what the Web API
calls) as the sharer. A plain model keeps the live shares and decides each step from the
rules alone: a share applies exactly when the sharer may read the record and holds `share`
and every right given *at that moment* (what their roles give plus the shares they hold
then), an unshare when they may read it and hold `share`. After every step, every user's
rights on every record — asked of the real SQL condition — must equal what their roles give
plus the rights of the live shares reaching them. So no sequence yields a right that no
sharer held when they gave it.

What the roles give is read from the SQL condition before any share exists (the roles'
depths are tested against a reference in tests/test_security_property.py); this test is
about shares.
"""

from __future__ import annotations

import ast
import itertools
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD
from tests.security_fixtures import SHARE_RIGHTS, add_account, give_role, make_role, principal, reachable
from webapp.crm.errors import CrmError
from webapp.crm.orgs import create_business_unit, create_org, create_team, root_business_unit
from webapp.crm.records import Actor, Owner
from webapp.security import operations as ops
from webapp.security.setup import new_user
from webapp.services import services

NONE, USER, BU, ORG = 0, 1, 2, 4
ORG_NAMES = itertools.count(1)
USERS, ACCOUNTS = 4, 3


@dataclass(frozen=True)
class Step:
    """One share (`rights` given) or unshare (`rights` None) by user `sharer`."""

    sharer: int
    record: int
    kind: str  # systemuser | team
    whom: int
    rights: frozenset[str] | None


@dataclass(frozen=True)
class World:
    """Users (unit, account depth per privilege), one team's members, account owners, steps."""

    users: tuple[tuple[int, tuple[int, ...]], ...]
    team: frozenset[int]
    owners: tuple[int, ...]
    steps: tuple[Step, ...]


@st.composite
def worlds(draw: Callable[[st.SearchStrategy[Any]], Any]) -> World:
    depth = st.sampled_from([NONE, NONE, USER, USER, BU, ORG])
    users = tuple((draw(st.integers(0, 1)), tuple(draw(depth) for _ in SHARE_RIGHTS)) for _ in range(USERS))
    team = draw(st.frozensets(st.integers(0, USERS - 1), max_size=USERS))
    owners = tuple(draw(st.integers(0, USERS - 1)) for _ in range(ACCOUNTS))
    # Rights are drawn wide: most steps ask for more than some sharer holds.
    rights = st.frozensets(st.sampled_from(SHARE_RIGHTS), min_size=1) | st.just(frozenset(SHARE_RIGHTS))
    step = st.builds(
        Step,
        st.integers(0, USERS - 1),
        st.integers(0, ACCOUNTS - 1),
        st.sampled_from(["systemuser", "systemuser", "team"]),
        st.integers(0, USERS - 1),
        rights | rights | rights | st.none(),
    )
    steps = tuple(draw(st.lists(step, min_size=1, max_size=8)))
    return World(users, team, owners, steps)


def run(app: Flask, w: World) -> list[str]:
    """Build `w`, play its steps, and list every way the server departs from the model."""
    svc = services(app)
    problems: list[str] = []
    with svc.db.session(write=True) as dbs:
        model = create_org(dbs, svc.registry, f"share-{next(ORG_NAMES)}")
        units = [root_business_unit(dbs, model), create_business_unit(dbs, model, "Unit 1")]
        users = []
        for i, (unit, depths) in enumerate(w.users):
            role = make_role(
                dbs,
                model,
                f"Role {i}",
                [("account", r, d) for r, d in zip(SHARE_RIGHTS, depths, strict=True) if d > NONE],
            )
            users.append(new_user(dbs, model, svc.hasher, f"user{i}", PASSWORD, f"User {i}", units[unit], []))
            give_role(dbs, model, role, users[i], "systemuser")
        team = create_team(dbs, model, "Team", units[0], [users[m] for m in sorted(w.team)])
        accounts = [
            add_account(dbs, model, f"Account {i}", Owner(users[o], "systemuser", units[w.users[o][0]]))
            for i, o in enumerate(w.owners)
        ]
        account = model.entity("account")

        def rights_now() -> dict[tuple[int, int], set[str]]:
            """(user, record) → the rights the SQL condition gives now."""
            out: dict[tuple[int, int], set[str]] = {}
            for u, user_id in enumerate(users):
                p = principal(dbs, model, user_id)
                for right in SHARE_RIGHTS:
                    got = reachable(dbs, model, p, "account", right)
                    for r, record_id in enumerate(accounts):
                        out.setdefault((u, r), set())
                        if record_id in got:
                            out[(u, r)].add(right)
            return out

        base = rights_now()  # what the roles give: no share exists yet
        live: dict[tuple[int, str, int], frozenset[str]] = {}  # (record, kind, index) → rights

        def expected(u: int, r: int) -> set[str]:
            held = set(base[(u, r)])
            for (record, kind, whom), rights in live.items():
                if record == r and ((kind == "systemuser" and whom == u) or (kind == "team" and u in w.team)):
                    held |= rights
            return held

        for n, step in enumerate(w.steps):
            held = expected(step.sharer, step.record)
            may = {"read", "share"} <= held and (step.rights is None or step.rights <= held)
            whom_id = users[step.whom] if step.kind == "systemuser" else team
            body: dict[str, Any] = {"principal@odata.bind": f"/{step.kind}s({whom_id})"}
            p = principal(dbs, model, users[step.sharer])
            actor = Actor(model.org_id, users[step.sharer], units[w.users[step.sharer][0]])
            savepoint = dbs.begin_nested()
            try:
                if step.rights is None:
                    ops.unshare(dbs, model, p, actor, account, accounts[step.record], body)
                else:
                    body["rights"] = sorted(step.rights)
                    ops.share(dbs, model, p, actor, account, accounts[step.record], body)
                savepoint.commit()
                applied = True
            except CrmError:
                savepoint.rollback()
                applied = False
            if applied != may:
                problems.append(f"step {n} {step}: sharer held {sorted(held)}, applied {applied}, expected {may}")
            key = (step.record, step.kind, step.whom)
            if applied and step.rights is None:
                live.pop(key, None)
            elif applied and step.rights is not None:
                live[key] = step.rights
            now = rights_now()
            for (u, r), got in sorted(now.items()):
                want = expected(u, r)
                if got != want:
                    problems.append(
                        f"after step {n} {step}: user{u} on account {r} holds {sorted(got)}, model {sorted(want)}"
                    )
            if problems:
                break
        dbs.commit()
    return problems


COMMON = {
    "deadline": None,
    "derandomize": True,  # the same examples on every run (and no example database)
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=40, **COMMON)
@given(w=worlds())
def test_no_sequence_of_shares_grants_a_right_its_sharer_did_not_hold(app: Flask, w: World) -> None:
    problems = run(app, w)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
@settings(max_examples=1000, **COMMON)
@given(w=worlds())
def test_no_sequence_of_shares_grants_a_right_its_sharer_did_not_hold_deep(app: Flask, w: World) -> None:
    """The deep run of the sharing property (select it with `-m slow`)."""
    problems = run(app, w)
    assert not problems, "\n".join(problems)


def test_share_rows_are_written_in_one_place_only() -> None:
    """Every path that shares goes through `webapp.security.sharing.grant`: no other module of
    the app inserts or updates `recordshare` rows (found by reading the source)."""
    root = pathlib.Path(__file__).resolve().parent.parent / "webapp"
    writers = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("insert", "update")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "recordshare"
            ):
                writers.append(str(path.relative_to(root)))
    assert writers == ["security/sharing.py"]
