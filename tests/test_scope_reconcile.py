"""Scope follows every change: after each kind of security change, or time passing a
`modified` window, a device holds exactly what a fresh download would give it — at its next
pull, and live when it is connected (webapp/sync/reconcile.py). And the feed never sends a
remove for a record the device could not have held (issue 17, item 3).

Each case: bob's phone downloads, the change is made, the phone pulls (or is woken live); its
store must equal a fresh download, and the fresh download must differ from what it held before
(so the case really changes bob's scope).
"""

from __future__ import annotations

import copy
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.conftest import Org
from tests.scope_client import ScopePhone
from webapp.crm import changes
from webapp.crm.orgs import add_team_member, create_position, create_team, save_settings, set_team_members, system_actor
from webapp.crm.records import Actor, Owner, fetch, insert_record, update_record
from webapp.crm.registry import OrgModel
from webapp.security import accounts, fieldsecurity
from webapp.security.operations import assign, remove, share, unshare
from webapp.security.roles import ORG, assign_team_role, create_role, grant, role_id, set_user_roles
from webapp.security.scope import load_principal
from webapp.security.setup import new_user
from webapp.services import services
from webapp.sync.profile import set_offline


class Clock:
    """The server's "now", moved by the test (every module's `utcnow` is this)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    original = changes.utcnow
    fake = Clock(original())
    for name, module in list(sys.modules.items()):
        if name.startswith("webapp") and getattr(module, "utcnow", None) is original:
            monkeypatch.setattr(module, "utcnow", fake)
    monkeypatch.setattr(accounts, "SESSION_LIFETIME", dt.timedelta(days=3650))
    return fake


@dataclass
class Scene:
    """contoso: alice (admin, Sales East), bob (Salesperson, root), dave (Salesperson, root);
    a team without bob that owns an account; accounts and leads of each."""

    app: Flask
    org: Org
    dave: str
    team: str
    records: dict[str, str]  # name -> id

    def write(self, change: Callable[[Session, OrgModel], Any]) -> None:
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            change(s, svc.registry.model(s, self.org.org_id))
            s.commit()
        svc.hub.notify(self.org.org_id)

    def as_alice(self, s: Session, m: OrgModel) -> tuple[Any, Actor]:
        return load_principal(s, m, self.org.alice), Actor(m.org_id, self.org.alice, self.org.east_bu)

    def phone(self, user_id: str, clock: Clock) -> ScopePhone:
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            token, _ = accounts.start_session(s, self.org.org_id, user_id)
            s.commit()
        phone = ScopePhone(self.app, token, self.org.org_id, user_id, clock=clock)
        phone.connect()
        phone.pull()
        return phone


def _record(s: Session, m: OrgModel, entity: str, values: dict[str, Any], owner: tuple[str, str, str]) -> str:
    row = insert_record(s, m, Actor(m.org_id, None, None), m.entity(entity), values, None, Owner(*owner))
    return str(row[m.entity(entity).primary_id])


@pytest.fixture
def scene(app: Flask, org: Org, clock: Clock) -> Scene:
    svc = services(app)
    with svc.db.session(write=True) as s:
        m = svc.registry.model(s, org.org_id)
        dave = new_user(s, m, svc.hasher, "dave", "long-enough-1", "Dane", org.root_bu, ["Salesperson"])
        team = create_team(s, m, "Tigers", org.root_bu, [org.alice])
        bob, alice = (org.bob, "systemuser", org.root_bu), (org.alice, "systemuser", org.east_bu)
        records = {
            "root account": _record(s, m, "account", {"name": "Root Co"}, bob),
            "east account": _record(s, m, "account", {"name": "East Co", "telephone1": "555"}, alice),
            "team account": _record(s, m, "account", {"name": "Team Co"}, (team, "team", org.root_bu)),
            "bob lead": _record(s, m, "lead", {"subject": "Bob's", "lastname": "B"}, bob),
            "dave lead": _record(
                s, m, "lead", {"subject": "Dave's", "lastname": "D"}, (dave, "systemuser", org.root_bu)
            ),
            "alice lead": _record(s, m, "lead", {"subject": "Alice's", "lastname": "A"}, alice),
            "team lead": _record(s, m, "lead", {"subject": "Team's", "lastname": "T"}, (team, "team", org.root_bu)),
        }
        s.commit()
    return Scene(app, org, dave, team, records)


def _user(s: Session, m: OrgModel, user_id: str, values: dict[str, Any]) -> None:
    row = fetch(s, m, m.entity("systemuser"), user_id)
    assert row is not None
    update_record(s, m, system_actor(m), m.entity("systemuser"), row, values)


def _hierarchy(s: Session, m: OrgModel, kind: str) -> None:
    settings = copy.deepcopy(m.settings)
    settings["hierarchy"] = {"model": kind, "depth": 2}
    save_settings(s, m.org_id, settings)


def _share(sc: Scene, s: Session, m: OrgModel, rights: list[str] | None) -> None:
    p, actor = sc.as_alice(s, m)
    body: dict[str, Any] = {"principal@odata.bind": f"/systemusers({sc.org.bob})"}
    if rights is None:
        unshare(s, m, p, actor, m.entity("account"), sc.records["east account"], body)
    else:
        share(s, m, p, actor, m.entity("account"), sc.records["east account"], {**body, "rights": rights})


def _assign(sc: Scene, s: Session, m: OrgModel, record: str, entity: str, to: str) -> None:
    p, actor = sc.as_alice(s, m)
    assign(s, m, p, actor, m.entity(entity), sc.records[record], {"ownerid@odata.bind": f"/systemusers({to})"})


Step = Callable[[Scene, Session, OrgModel], Any]
# (kind of change, set-up before bob's phone downloads (or None), the change)
CASES: list[tuple[str, Step | None, Step]] = [
    ("a role's read privilege revoked", None,
     lambda sc, s, m: grant(s, m, role_id(s, m, "Salesperson"), "lead", "read", 0)),
    ("a role's read depth widened", None,
     lambda sc, s, m: grant(s, m, role_id(s, m, "Salesperson"), "account", "read", ORG)),
    ("the user's roles taken away", None, lambda sc, s, m: set_user_roles(s, m, sc.org.bob, [])),
    ("a team's role", lambda sc, s, m: add_team_member(s, m, sc.team, sc.org.bob),
     lambda sc, s, m: assign_team_role(s, m, sc.team, _reader_role(s, m))),
    ("joined a team", None, lambda sc, s, m: add_team_member(s, m, sc.team, sc.org.bob)),
    ("left a team", lambda sc, s, m: add_team_member(s, m, sc.team, sc.org.bob),
     lambda sc, s, m: set_team_members(s, m, sc.team, [sc.org.alice])),
    ("became a manager", lambda sc, s, m: _hierarchy(s, m, "manager"),
     lambda sc, s, m: _user(s, m, sc.dave, {"parentsystemuserid": sc.org.bob})),
    ("stopped being a manager",
     lambda sc, s, m: (_hierarchy(s, m, "manager"), _user(s, m, sc.dave, {"parentsystemuserid": sc.org.bob})),
     lambda sc, s, m: _user(s, m, sc.dave, {"parentsystemuserid": None})),
    ("a position above another", lambda sc, s, m: _positions(sc, s, m),
     lambda sc, s, m: _user(s, m, sc.dave, {"positionid": _position(s, m, "Rep")})),
    ("moved to another business unit", None,
     lambda sc, s, m: _user(s, m, sc.org.bob, {"businessunitid": sc.org.east_bu})),
    ("a share granted", None, lambda sc, s, m: _share(sc, s, m, ["read"])),
    ("a share revoked", lambda sc, s, m: _share(sc, s, m, ["read"]), lambda sc, s, m: _share(sc, s, m, None)),
    ("given a record", None, lambda sc, s, m: _assign(sc, s, m, "alice lead", "lead", sc.org.bob)),
    ("a record given away", None, lambda sc, s, m: _assign(sc, s, m, "bob lead", "lead", sc.org.alice)),
    ("a field secured", None, lambda sc, s, m: fieldsecurity.set_secured(s, m, "account", "name")),
    ("the offline filter narrowed", None, lambda sc, s, m: set_offline(s, m, entity="account", filter_spec="mine")),
    ("an entity taken off the profile", None, lambda sc, s, m: set_offline(s, m, entity="lead", entity_enabled=False)),
    ("an entity put on the profile", lambda sc, s, m: set_offline(s, m, entity="lead", entity_enabled=False),
     lambda sc, s, m: set_offline(s, m, entity="lead", entity_enabled=True)),
    ("hierarchy switched off",
     lambda sc, s, m: (_hierarchy(s, m, "manager"), _user(s, m, sc.dave, {"parentsystemuserid": sc.org.bob})),
     lambda sc, s, m: _hierarchy(s, m, "off")),
]  # fmt: skip


def _reader_role(s: Session, m: OrgModel) -> str:
    rid = create_role(s, m, "Account Reader")
    grant(s, m, rid, "account", "read", ORG)
    return rid


def _position(s: Session, m: OrgModel, name: str) -> str:
    t = m.tables["position"]
    return str(s.execute(t.select().where(t.c.organizationid == m.org_id, t.c.name == name)).first().positionid)


def _positions(sc: Scene, s: Session, m: OrgModel) -> None:
    boss = create_position(s, m, "Boss")
    create_position(s, m, "Rep", boss)
    _user(s, m, sc.org.bob, {"positionid": boss})
    _hierarchy(s, m, "position")


def _ids(held: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    return {name: set(records) for name, records in held.items() if records}


def _check(phone: ScopePhone, before: dict[str, dict[str, Any]] | None = None) -> None:
    fresh = phone.fresh_download()
    assert _ids(phone.holds()) == _ids(fresh)
    for name, records in fresh.items():
        for rid, record in records.items():
            assert phone.held[name][rid] == record, (name, rid)
    if before is not None:
        assert {k: v for k, v in fresh.items() if v} != {k: v for k, v in before.items() if v}, "nothing changed"
    for rm in phone.removes:
        assert rm["id"] in phone.ever_held[rm["entity"]], f"a remove for a record never held: {rm}"


@pytest.mark.parametrize(("setup", "change"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_after_each_kind_of_change_the_next_pull_leaves_the_device_as_a_fresh_download(
    scene: Scene, clock: Clock, setup: Step | None, change: Step
) -> None:
    if setup is not None:
        scene.write(lambda s, m: setup(scene, s, m))
    phone = scene.phone(scene.org.bob, clock)
    _check(phone)
    before = phone.holds()
    scene.write(lambda s, m: change(scene, s, m))
    phone.pull()
    _check(phone, before)


def test_a_connected_device_reconciles_when_woken_without_pulling(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    assert scene.records["bob lead"] in phone.held["lead"]
    scene.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), "lead", "read", 0))
    phone.wake()
    assert scene.records["bob lead"] not in phone.held["lead"]
    _check(phone)


def test_a_wake_path_of_its_own_asks_the_channel_for_the_check(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    assert phone.channel.check_scope() == []  # nothing due
    scene.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), "lead", "read", 0))
    frames = phone.channel.check_scope()
    assert [f["type"] for f in frames] == ["scope"]
    assert phone.channel.check_scope() == [], "one check at a time"
    phone.handle(frames)
    assert scene.records["bob lead"] not in phone.held["lead"]
    _check(phone)


def test_records_leave_as_a_modified_window_passes_them(scene: Scene, clock: Clock) -> None:
    scene.write(lambda s, m: set_offline(s, m, entity="account", filter_spec="modified:2"))
    phone = scene.phone(scene.org.bob, clock)
    assert scene.records["root account"] in phone.held["account"]
    clock.advance(days=1)
    scene.write(lambda s, m: _touch(s, m, "account", scene.records["team account"]))  # stays one day longer
    phone.pull()
    _check(phone)
    clock.advance(days=1, hours=12)
    phone.pull()
    assert scene.records["root account"] not in phone.held["account"]
    assert scene.records["team account"] in phone.held["account"]
    _check(phone)
    clock.advance(days=1)
    phone.pull()
    assert not phone.held["account"]
    _check(phone)


def _touch(s: Session, m: OrgModel, entity: str, record_id: str) -> None:
    row = fetch(s, m, m.entity(entity), record_id)
    assert row is not None
    update_record(s, m, system_actor(m), m.entity(entity), row, {"description": "touched"})


def test_a_field_secured_is_sent_again_without_its_value(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    assert phone.held["account"][scene.records["root account"]]["name"] == "Root Co"
    scene.write(lambda s, m: fieldsecurity.set_secured(s, m, "account", "name"))
    phone.pull()
    assert "name" not in phone.held["account"][scene.records["root account"]]
    _check(phone)


def test_drift_heals_at_the_daily_check(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    lost = scene.records["bob lead"]
    kept = phone.held["lead"].pop(lost)  # the store lost a record (a bug, a crash, a cleared index)
    stray = "00000000-0000-4000-8000-00000000dead"
    phone.held["lead"][stray] = dict(kept, leadid=stray)  # and kept a stray
    phone.ever_held["lead"].add(stray)
    phone.pull()
    assert lost not in phone.held["lead"], "nothing was due: no check yet"
    clock.advance(hours=25)
    phone.pull()
    _check(phone)
    assert lost in phone.held["lead"]


def test_a_pull_with_nothing_due_sends_no_check(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    checks = phone.checks
    scene.write(lambda s, m: _touch(s, m, "account", scene.records["root account"]))
    scene.write(lambda s, m: set_offline(s, m, interval=5))  # no access change: no epoch move
    scene.write(lambda s, m: _user(s, m, scene.dave, {"lastname": "Dane-Smith"}))
    phone.pull()
    phone.wake()
    assert phone.checks == checks
    scene.write(lambda s, m: add_team_member(s, m, scene.team, scene.dave))  # dave's epoch, not bob's
    phone.pull()
    assert phone.checks == checks
    scene.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), "task", "read", ORG))  # bob's rule changes
    phone.pull()
    assert phone.checks == checks + 1


# --- issue 17 item 3: no remove for what the device could not have held ----------------------


@pytest.mark.parametrize("reconciles", [False, True], ids=["plain pull", "reconciling"])
def test_the_feed_sends_no_remove_for_records_the_device_never_could_hold(
    scene: Scene, clock: Clock, reconciles: bool
) -> None:
    phone = scene.phone(scene.org.bob, clock)
    phone.reconciles = reconciles
    east = (scene.org.alice, "systemuser", scene.org.east_bu)
    made: list[str] = []
    scene.write(lambda s, m: made.append(_record(s, m, "account", {"name": "Not yours"}, east)))
    scene.write(lambda s, m: _touch(s, m, "account", made[0]))
    scene.write(lambda s, m: remove(s, m, *scene.as_alice(s, m), m.entity("account"), made[0]))
    scene.write(lambda s, m: remove(s, m, *scene.as_alice(s, m), m.entity("lead"), scene.records["alice lead"]))
    phone.pull()
    assert [r for r in phone.removes if r["id"] in (made[0], scene.records["alice lead"])] == []
    _check(phone)


def test_the_feed_still_removes_what_the_device_held(scene: Scene, clock: Clock) -> None:
    phone = scene.phone(scene.org.bob, clock)
    phone.reconciles = False  # the feed alone, as an old device sees it
    scene.write(lambda s, m: remove(s, m, *scene.as_alice(s, m), m.entity("lead"), scene.records["bob lead"]))
    scene.write(lambda s, m: _assign(scene, s, m, "root account", "account", scene.org.alice))
    phone.pull()
    assert {(r["id"], r["reason"]) for r in phone.removes} == {
        (scene.records["bob lead"], "deleted"),
        (scene.records["root account"], "out_of_scope"),
    }


def test_an_answer_to_a_check_no_longer_awaited_is_refused_naming_that_check(scene: Scene, clock: Clock) -> None:
    """The device can tell the refusal from an error about anything else it waits for."""
    phone = scene.phone(scene.org.bob, clock)
    (refused,) = phone.send({"type": "reconcile", "check": "an-old-check", "held": {}, "done": True})
    assert (refused["type"], refused["code"], refused["check"]) == ("error", "bad_message", "an-old-check")
    scene.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), "lead", "read", 0))
    phone.wake()  # the current check is still answered and settled
    assert scene.records["bob lead"] not in phone.held["lead"]
    _check(phone)
