"""A model of scope: random security changes, writes and time, and a phone that must always end
up holding exactly what a fresh download would give it (webapp/sync/reconcile.py).

A Hypothesis state machine drives one phone of bob (a Salesperson) through the real `Channel`
(tests/scope_client.py: the protocol as the device speaks it, with the shared checksum) and a
second phone of bob that sends the old `pull` (no reconciliation). Steps, in any order: records
of accounts, leads and contacts created, edited (their `modifiedon` moves), deleted and given
to another owner (alice, bob, dave, carl, a team) by the administrator; and every kind of
change to access — a role's read depth on an entity, bob's roles, a team's role, bob in or
out of the team, dave's manager, dave's position, bob's business unit, the business unit tree,
a record shared with bob or his team and unshared, a secured field and bob's field security
profile, the offline profile's filters and entity switches (`modified:2`, `related` included),
the hierarchy setting — and the clock moving on by hours or days (past window boundaries and
the daily check). After every pull, and after every live wake, the reconciling phone must hold
exactly a fresh download for bob at that moment, record for record; no remove sent to either
phone may name a record bob never held nor could read.

Default run: 20 examples of 25 steps on SQLite and 5 on PostgreSQL, derandomized (about a
minute). The deep run (hundreds of longer examples):

    .venv/bin/pytest tests/test_scope_model.py -m slow
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import PASSWORD, PgSchema, _empty_pg
from tests.scope_client import ScopePhone
from webapp import create_app
from webapp.crm import changes
from webapp.crm.orgs import (
    create_business_unit,
    create_position,
    create_team,
    root_business_unit,
    save_settings,
    set_team_members,
    system_actor,
)
from webapp.crm.records import Actor, Owner, fetch, insert_record, update_record
from webapp.crm.registry import OrgModel
from webapp.security import accounts, fieldsecurity
from webapp.security.operations import assign, read_condition, remove, share, unshare
from webapp.security.roles import ADMIN_ROLE, DEPTHS, ORG, create_role, grant, role_id, set_team_roles, set_user_roles
from webapp.security.scope import load_principal
from webapp.security.setup import new_organization, new_user
from webapp.services import services
from webapp.sync.profile import set_offline

with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import libcst  # noqa: F401

ENTITIES = ("account", "lead", "contact")
VALUES = {"account": {"name": "A"}, "lead": {"subject": "L", "lastname": "L"}, "contact": {"lastname": "C"}}
OWNERS = ("alice", "bob", "dave", "carl", "team")
RUNS = itertools.count(1)


class Clock:
    """The server's "now": every module's `utcnow` is this while the model runs."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


class ScopeModel(RuleBasedStateMachine):
    """One organisation per example; bob's two phones; the administrator changes everything."""

    def __init__(self, app: Flask, clock: Clock) -> None:
        super().__init__()
        self.app, self.clock = app, clock
        svc = services(app)
        with svc.db.session(write=True) as s:
            m = new_organization(s, svc.registry, f"scope{next(RUNS)}", "Scope")
            self.org_id = m.org_id
            root = root_business_unit(s, m)
            north = create_business_unit(s, m, "North")
            east = create_business_unit(s, m, "East")
            self.bus = {"root": root, "north": north, "east": east}
            self.users = {
                "alice": new_user(s, m, svc.hasher, "alice", PASSWORD, "Able", east, [ADMIN_ROLE]),
                "bob": new_user(s, m, svc.hasher, "bob", PASSWORD, "Baker", root, ["Salesperson"]),
                "dave": new_user(s, m, svc.hasher, "dave", PASSWORD, "Dane", root, ["Salesperson"]),
                "carl": new_user(s, m, svc.hasher, "carl", PASSWORD, "Cole", east, ["Salesperson"]),
            }
            self.team = create_team(s, m, "Tigers", north, [self.users["alice"]])
            self.reader = create_role(s, m, "Account Reader")
            grant(s, m, self.reader, "account", "read", ORG)
            boss = create_position(s, m, "Boss")
            self.rep = create_position(s, m, "Rep", boss)
            self._user(s, m, "bob", {"positionid": boss})
            self.profile = fieldsecurity.create_profile(s, m, "Secrets")
            for entity, attribute in (("account", "telephone1"), ("lead", "subject")):
                fieldsecurity.set_permission(s, m, self.profile, entity, attribute, True, False, False)
            self.bob_token = accounts.start_session(s, m.org_id, self.users["bob"])[0]
            self.old_token = accounts.start_session(s, m.org_id, self.users["bob"])[0]
            s.commit()
        self.records: dict[str, list[str]] = {e: [] for e in ENTITIES}
        self.ever_readable: dict[str, set[str]] = {e: set() for e in ENTITIES}
        self.phone = ScopePhone(app, self.bob_token, self.org_id, self.users["bob"], clock=clock)
        self.phone.connect()
        self.phone.pull()
        self.old = ScopePhone(app, self.old_token, self.org_id, self.users["bob"], clock=clock)
        self.old.reconciles = False
        self.old.connect()
        self.old.pull()

    # --- helpers ------------------------------------------------------------------------

    def write(self, change: Any) -> None:
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            change(s, svc.registry.model(s, self.org_id))
            s.commit()
        self.note_readable()

    def note_readable(self) -> None:
        """Every id bob may read now (a remove naming one of these reveals nothing)."""
        svc = services(self.app)
        with svc.db.session() as s:
            m = svc.registry.model(s, self.org_id)
            p = load_principal(s, m, self.users["bob"])
            for name in ENTITIES:
                e = m.entity(name)
                src = m.selectable(e)
                stmt = select(src.c[e.primary_id]).where(src.c.organizationid == m.org_id, read_condition(p, m, e))
                self.ever_readable[name].update(s.execute(stmt).scalars())

    def _user(self, s: Session, m: OrgModel, who: str, values: dict[str, Any]) -> None:
        row = fetch(s, m, m.entity("systemuser"), self.users[who])
        assert row is not None
        update_record(s, m, system_actor(m), m.entity("systemuser"), row, values)

    def _owner(self, s: Session, m: OrgModel, who: str) -> Owner:
        if who == "team":
            return Owner(self.team, "team", self.bus["north"])
        users = m.tables["systemuser"]
        bu = s.execute(select(users.c.businessunitid).where(users.c.systemuserid == self.users[who])).scalar_one()
        return Owner(self.users[who], "systemuser", bu)

    def _admin(self, s: Session, m: OrgModel) -> tuple[Any, Actor]:
        return load_principal(s, m, self.users["alice"]), Actor(m.org_id, self.users["alice"], self.bus["east"])

    def _pick(self, entity: str, n: int) -> str | None:
        pool = self.records[entity]
        return pool[n % len(pool)] if pool else None

    # --- writes ---------------------------------------------------------------------------

    @rule(entity=st.sampled_from(ENTITIES), owner=st.sampled_from(OWNERS), link=st.integers(0, 20))
    def create(self, entity: str, owner: str, link: int) -> None:
        def go(s: Session, m: OrgModel) -> None:
            values = dict(VALUES[entity])
            account = self._pick("account", link)
            if entity == "contact" and account is not None:
                values["parentcustomerid"], values["parentcustomerid__type"] = account, "account"
            owned = self._owner(s, m, owner)
            row = insert_record(s, m, Actor(m.org_id, None, None), m.entity(entity), values, None, owned)
            self.records[entity].append(str(row[m.entity(entity).primary_id]))

        self.write(go)

    @rule(entity=st.sampled_from(ENTITIES), n=st.integers(0, 20))
    def edit(self, entity: str, n: int) -> None:
        rid = self._pick(entity, n)
        if rid is None:
            return

        def go(s: Session, m: OrgModel) -> None:
            row = fetch(s, m, m.entity(entity), rid)
            update_record(s, m, system_actor(m), m.entity(entity), row, {"description": f"at {self.clock.now}"})

        self.write(go)

    @rule(entity=st.sampled_from(ENTITIES), n=st.integers(0, 20))
    def delete(self, entity: str, n: int) -> None:
        rid = self._pick(entity, n)
        if rid is not None:
            self.records[entity].remove(rid)
            self.write(lambda s, m: remove(s, m, *self._admin(s, m), m.entity(entity), rid))

    @rule(entity=st.sampled_from(ENTITIES), n=st.integers(0, 20), owner=st.sampled_from(OWNERS))
    def give(self, entity: str, n: int, owner: str) -> None:
        rid = self._pick(entity, n)
        if rid is None:
            return
        target = f"/teams({self.team})" if owner == "team" else f"/systemusers({self.users[owner]})"
        body = {"ownerid@odata.bind": target}
        self.write(lambda s, m: assign(s, m, *self._admin(s, m), m.entity(entity), rid, body))

    # --- changes to access ----------------------------------------------------------------

    @rule(entity=st.sampled_from(ENTITIES), depth=st.sampled_from(sorted(DEPTHS)))
    def role_depth(self, entity: str, depth: str) -> None:
        self.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), entity, "read", DEPTHS[depth]))

    @rule(roles=st.sampled_from([("Salesperson",), ("Salesperson", "Account Reader"), ()]))
    def bob_roles(self, roles: tuple[str, ...]) -> None:
        self.write(lambda s, m: set_user_roles(s, m, self.users["bob"], [role_id(s, m, r) for r in roles]))

    @rule(on=st.booleans())
    def team_role(self, on: bool) -> None:
        self.write(lambda s, m: set_team_roles(s, m, self.team, [self.reader] if on else []))

    @rule(member=st.booleans())
    def bob_in_team(self, member: bool) -> None:
        members = [self.users["alice"], *([self.users["bob"]] if member else [])]
        self.write(lambda s, m: set_team_members(s, m, self.team, members))

    @rule(manager=st.sampled_from([None, "bob", "carl"]))
    def daves_manager(self, manager: str | None) -> None:
        value = self.users[manager] if manager else None
        self.write(lambda s, m: self._user(s, m, "dave", {"parentsystemuserid": value}))

    @rule(rep=st.booleans())
    def daves_position(self, rep: bool) -> None:
        self.write(lambda s, m: self._user(s, m, "dave", {"positionid": self.rep if rep else None}))

    @rule(unit=st.sampled_from(["root", "north", "east"]))
    def bobs_unit(self, unit: str) -> None:
        self.write(lambda s, m: self._user(s, m, "bob", {"businessunitid": self.bus[unit]}))

    @rule(parent=st.sampled_from(["root", "north"]))
    def east_moves(self, parent: str) -> None:
        def go(s: Session, m: OrgModel) -> None:
            row = fetch(s, m, m.entity("businessunit"), self.bus["east"])
            values = {"parentbusinessunitid": self.bus[parent]}
            update_record(s, m, system_actor(m), m.entity("businessunit"), row, values)

        self.write(go)

    @rule(
        entity=st.sampled_from(["account", "lead"]),
        n=st.integers(0, 20),
        to=st.sampled_from(["bob", "team"]),
        on=st.booleans(),
    )
    def sharing(self, entity: str, n: int, to: str, on: bool) -> None:
        rid = self._pick(entity, n)
        if rid is None:
            return
        who = f"/teams({self.team})" if to == "team" else f"/systemusers({self.users['bob']})"

        def go(s: Session, m: OrgModel) -> None:
            p, actor = self._admin(s, m)
            if on:
                share(s, m, p, actor, m.entity(entity), rid, {"principal@odata.bind": who, "rights": ["read"]})
            else:
                unshare(s, m, p, actor, m.entity(entity), rid, {"principal@odata.bind": who})

        self.write(go)

    @rule(field=st.sampled_from([("account", "telephone1"), ("lead", "subject")]), secured=st.booleans())
    def secure(self, field: tuple[str, str], secured: bool) -> None:
        self.write(lambda s, m: fieldsecurity.set_secured(s, m, *field, secured))

    @rule(member=st.booleans())
    def bobs_profile(self, member: bool) -> None:
        members = [(self.users["bob"], "systemuser")] if member else []
        self.write(lambda s, m: fieldsecurity.set_members(s, m, self.profile, members))

    @rule(
        entity=st.sampled_from(ENTITIES),
        spec=st.sampled_from(["all", "mine", "myteams", "mybu", "modified:2", "related"]),
    )
    def offline_filter(self, entity: str, spec: str) -> None:
        self.write(lambda s, m: set_offline(s, m, entity=entity, filter_spec=spec))

    @rule(entity=st.sampled_from(ENTITIES), on=st.booleans())
    def offline_switch(self, entity: str, on: bool) -> None:
        self.write(lambda s, m: set_offline(s, m, entity=entity, entity_enabled=on))

    @rule(kind=st.sampled_from(["off", "manager", "position"]))
    def hierarchy(self, kind: str) -> None:
        def go(s: Session, m: OrgModel) -> None:
            settings_ = copy.deepcopy(m.settings)
            settings_["hierarchy"] = {"model": kind, "depth": 2}
            save_settings(s, m.org_id, settings_)

        self.write(go)

    @rule(hours=st.sampled_from([1, 5, 13, 25, 49]))
    def time_passes(self, hours: int) -> None:
        self.clock.now += dt.timedelta(hours=hours)

    # --- the phones ------------------------------------------------------------------------

    @rule()
    def pull(self) -> None:
        self.phone.pull()
        self.check(self.phone)

    @rule()
    def woken(self) -> None:
        self.phone.wake()
        if self.phone.channel.check is None:  # a live wake leaves the device in sync too
            self.check(self.phone)

    @rule()
    def old_pull(self) -> None:
        self.old.pull()

    def check(self, phone: ScopePhone) -> None:
        fresh = phone.fresh_download()
        held = {name: records for name, records in phone.holds().items() if records}
        assert held == {name: records for name, records in fresh.items() if records}

    @invariant()
    def no_remove_reveals_an_id(self) -> None:
        for phone in (self.phone, self.old):
            for rm in phone.removes:
                known = phone.ever_held[rm["entity"]] | self.ever_readable.get(rm["entity"], set())
                assert rm["id"] in known, f"a remove names a record bob never held nor could read: {rm}"

    @rule()
    def pull_until_quiet(self) -> None:
        """Two pulls in a row: the second finds nothing due (the check converged)."""
        self.phone.pull()
        checks = self.phone.checks
        self.phone.pull()
        assert self.phone.checks == checks, "a check was due again right after one converged"
        self.check(self.phone)


COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}


def _clocked(monkeypatch: pytest.MonkeyPatch) -> Clock:
    original = changes.utcnow
    clock = Clock()
    for name, module in list(sys.modules.items()):
        if name.startswith("webapp") and getattr(module, "utcnow", None) is original:
            monkeypatch.setattr(module, "utcnow", clock)
    monkeypatch.setattr(accounts, "SESSION_LIFETIME", dt.timedelta(days=3650))
    return clock


def model_app(url: str) -> Iterator[Flask]:
    app = create_app(
        {
            "DATABASE_URL": url,
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "t",
            "RATE_LIMITS": False,
        }
    )
    with app.app_context():
        yield app
    services(app).db.dispose()


@pytest.fixture
def sqlite_app(tmp_path: Any) -> Iterator[Flask]:
    yield from model_app(f"sqlite:///{tmp_path}/scope.db")


@pytest.fixture
def pg_app(pg_schema: PgSchema) -> Iterator[Flask]:
    _empty_pg(pg_schema)
    yield from model_app(pg_schema.url)


def run(app: Flask, monkeypatch: pytest.MonkeyPatch, examples: int, steps: int) -> None:
    clock = _clocked(monkeypatch)
    run_state_machine_as_test(
        lambda: ScopeModel(app, clock), settings=settings(max_examples=examples, stateful_step_count=steps, **COMMON)
    )


def test_a_device_always_holds_a_fresh_download_whatever_changes(
    sqlite_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(sqlite_app, monkeypatch, 20, 25)


@pytest.mark.postgres
def test_the_scope_model_holds_on_postgresql(pg_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    run(pg_app, monkeypatch, 5, 25)


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
def test_the_scope_model_holds_on_a_deep_run(sqlite_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    run(sqlite_app, monkeypatch, 500, 60)
