"""Live fan-out (webapp/sync/fanout.py): a commit is read once per process, and each connected
device is sent exactly what its own read of the feed would send it — with no query of its own.

Devices of users with different scopes (an administrator in another business unit, two
salespeople, a team member, one with a `mine` filter) follow the organisation; each write
(create, update, a record given away, shared, deleted, owned by a team) is compared, device by
device, with `changes_since` from the device's cursor: the oracle is the per-device feed the
fan-out replaces. SQLite and PostgreSQL (the `app` fixture).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.conftest import Org
from tests.test_replay_sets import statements
from webapp.crm.orgs import create_team
from webapp.crm.records import Actor, Owner, fetch, insert_record, update_record
from webapp.crm.registry import OrgModel
from webapp.security import accounts
from webapp.security.operations import assign, remove, share
from webapp.security.scope import load_principal
from webapp.security.setup import new_user
from webapp.services import services
from webapp.sync.channel import Channel
from webapp.sync.feed import changes_since
from webapp.sync.profile import set_offline


@dataclass
class Device:
    """A connected device: its channel and its hub subscription."""

    channel: Channel
    sub: Any
    user: str


class World:
    """contoso with users of different scopes, each with devices connected to the app's hub."""

    def __init__(self, app: Flask, org: Org) -> None:
        self.app, self.org = app, org
        svc = services(app)
        with svc.db.session(write=True) as s:
            m = svc.registry.model(s, org.org_id)
            self.dave = new_user(s, m, svc.hasher, "dave", "long-enough-1", "Dane", org.root_bu, ["Salesperson"])
            self.erin = new_user(s, m, svc.hasher, "erin", "long-enough-1", "Eve", org.east_bu, ["Salesperson"])
            self.team = create_team(s, m, "Tigers", org.root_bu, [self.dave])
            set_offline(s, m, entity="lead", filter_spec="mine")
            s.commit()
        self.users = {"alice": org.alice, "bob": org.bob, "dave": self.dave, "erin": self.erin}
        self.devices: list[Device] = []

    def connect(self, user: str) -> Device:
        """hello and a first pull for a new device of `user`, subscribed to the hub."""
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            token, info = accounts.start_session(s, self.org.org_id, self.users[user])
            s.commit()
        channel = Channel(self.app, token, self.org.org_id, self.users[user], services=svc)
        channel.subscription = svc.hub.subscribe(self.org.org_id, self.users[user], info.token_hash)
        (welcome,) = channel.receive(json.dumps({"type": "hello", "device_id": str(uuid.uuid4())}))
        assert welcome["type"] == "welcome"
        frames = channel.receive(json.dumps({"type": "pull", "cursor": 0}))
        assert frames[-1]["type"] == "changes" and not frames[-1]["more"]
        device = Device(channel, channel.subscription, user)
        self.devices.append(device)
        return device

    def write(self, change: Callable[[Session, OrgModel], Any]) -> Any:
        """A change as the API makes one: committed, then the hub told; waits for the fan-out."""
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            out = change(s, svc.registry.model(s, self.org.org_id))
            s.commit()
        svc.hub.notify(self.org.org_id)
        assert svc.hub.fanout.settle()
        return out

    def expected(self, device: Device) -> tuple[list[Any], list[Any]]:
        """What the device's own read of the feed from its cursor sends (the oracle)."""
        svc = services(self.app)
        with svc.db.session() as s:
            model = svc.registry.model(s, self.org.org_id)
            p = load_principal(s, model, device.channel.user_id)
            batch = changes_since(s, model, p, device.channel.cursor or 0)
        return _norm(batch.upserts, batch.removes)


def _norm(upserts: list[dict[str, Any]], removes: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    ups = sorted((u["entity"], json.dumps(u["record"], sort_keys=True, default=str)) for u in upserts)
    return ups, sorted((r["entity"], r["id"], r["reason"]) for r in removes)


def _received(frames: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    changes = [f for f in frames if f["type"] == "changes"]
    return _norm([u for f in changes for u in f["upserts"]], [r for f in changes for r in f["removes"]])


def _record(m: OrgModel, s: Session, entity: str, values: dict[str, Any], owner: tuple[str, str, str]) -> str:
    row = insert_record(s, m, Actor(m.org_id, None, None), m.entity(entity), values, None, Owner(*owner))
    return str(row[m.entity(entity).primary_id])


def _as_alice(w: World, s: Session, m: OrgModel) -> tuple[Any, Actor]:
    return load_principal(s, m, w.org.alice), Actor(m.org_id, w.org.alice, w.org.east_bu)


@pytest.fixture
def world(app: Flask, org: Org) -> World:
    w = World(app, org)
    for user in ("alice", "bob", "bob", "dave", "erin"):
        w.connect(user)
    return w


def check_every_device(w: World, own_read: tuple[str, ...] = ()) -> list[str]:
    """Each device's wake equals its own feed read, with no SQL (but for the users in `own_read`,
    whose access changed: they read for themselves); returns whose devices the fan-out woke."""
    receivers = []
    for d in w.devices:
        want = w.expected(d)
        queued = list(d.sub.inbox)
        assert d.sub.full == (d.user in own_read), f"{d.user}: reads for itself: {d.sub.full}"
        with statements(w.app) as sql:
            got = _received(d.channel.wake())
        assert got == want, f"{d.user}: fan-out {got} != feed {want}"
        if d.user in own_read:
            continue
        assert sql == [], f"{d.user}'s wake ran SQL: {sql}"
        assert bool(queued) == bool(want[0] or want[1]), f"{d.user}: woken {bool(queued)} for {want}"
        receivers += [d.user] if queued else []
    return sorted(receivers)


def test_every_device_gets_what_its_own_feed_read_would_send_and_no_more(world: World) -> None:
    """alice: administrator in Sales East (reads every account; leads under `mine`); bob (two
    devices) and dave: salespeople at the root (dave in a team); erin: a salesperson in East."""
    w, org = world, world.org
    root, east = org.root_bu, org.east_bu
    bob, erin = (org.bob, "systemuser", root), (w.erin, "systemuser", east)

    def as_alice(s: Session, m: OrgModel) -> tuple[Any, Actor]:
        return load_principal(s, m, org.alice), Actor(m.org_id, org.alice, east)

    acc = w.write(lambda s, m: _record(m, s, "account", {"name": "Bob Co"}, bob))
    assert check_every_device(w) == ["alice", "bob", "bob", "dave"]
    lead = w.write(lambda s, m: _record(m, s, "lead", {"subject": "E", "lastname": "E"}, erin))
    assert check_every_device(w) == ["erin"]  # leads are held under `mine`
    w.write(lambda s, m: _record(m, s, "account", {"name": "Team Co"}, (w.team, "team", root)))
    assert check_every_device(w) == ["alice", "bob", "bob", "dave"]
    account = lambda s, m: fetch(s, m, m.entity("account"), acc)  # noqa: E731
    w.write(
        lambda s, m: update_record(
            s, m, Actor(m.org_id, org.bob, root), m.entity("account"), account(s, m), {"telephone1": "555"}
        )
    )
    assert check_every_device(w) == ["alice", "bob", "bob", "dave"]
    to_bob = {"ownerid@odata.bind": f"/systemusers({org.bob})"}
    w.write(lambda s, m: assign(s, m, *as_alice(s, m), m.entity("lead"), lead, to_bob))
    # an owner assigned: the access of both owners changed; alice wrote it (a remove, as the feed sends)
    assert check_every_device(w, own_read=("bob", "erin")) == ["alice"]
    to_erin = {"principal@odata.bind": f"/systemusers({w.erin})", "rights": ["read"]}
    w.write(lambda s, m: share(s, m, *as_alice(s, m), m.entity("account"), acc, to_erin))
    assert check_every_device(w, own_read=("erin",)) == ["alice", "bob", "bob", "dave"]
    w.write(lambda s, m: remove(s, m, *as_alice(s, m), m.entity("account"), acc))
    assert check_every_device(w) == ["alice", "bob", "bob", "dave", "erin"]


def test_a_change_costs_the_devices_that_may_receive_it_not_all_connected(world: World) -> None:
    """Twenty more devices that cannot see a change: the fan-out neither decides for them nor
    runs more SQL for them (the read is the same with 5 devices or 25)."""
    w, org = world, world.org
    bob = (org.bob, "systemuser", org.root_bu)
    fanout = services(w.app).hub.fanout
    w.write(lambda s, m: _record(m, s, "account", {"name": "Zero"}, bob))  # the first read compares every epoch
    check_every_device(w)
    with statements(w.app) as few:
        before = fanout.decisions
        w.write(lambda s, m: _record(m, s, "account", {"name": "One"}, bob))
        decided_few = fanout.decisions - before
    check_every_device(w)
    for _ in range(20):
        w.connect("erin")  # reads accounts of Sales East only
    with statements(w.app) as many:
        before = fanout.decisions
        w.write(lambda s, m: _record(m, s, "account", {"name": "Two"}, bob))
        decided_many = fanout.decisions - before
    assert check_every_device(w) == ["alice", "bob", "bob", "dave"]
    assert decided_many == decided_few <= 5
    assert len(many) == len(few), "\n".join(x[:90] for x in few) + "\n---\n" + "\n".join(x[:90] for x in many)


def test_a_device_that_misses_a_wake_catches_up(world: World) -> None:
    """A lost delivery, a socket closed during the change, the listener's gap: each device still
    ends up with the change — from its own read of the feed, at its next wake or pull."""
    w, org = world, world.org
    hub = services(w.app).hub
    bob = (org.bob, "systemuser", org.root_bu)
    lost, gone, gap = [d for d in w.devices if d.user in ("alice", "dave")] + [w.devices[1]]
    first = w.write(lambda s, m: _record(m, s, "account", {"name": "Lost"}, bob))
    lost.sub.take()  # the delivery never reached the device
    hub.unsubscribe(gone.sub)  # its socket closed
    second = w.write(lambda s, m: _record(m, s, "account", {"name": "Later"}, bob))
    assert lost.sub.inbox and lost.sub.inbox[0].start != lost.channel.cursor
    got = lost.channel.wake()  # the delivery does not start at its cursor: it reads for itself
    assert {u["record"]["accountid"] for f in got for u in f["upserts"]} == {first, second}
    assert lost.sub.follower is not None  # and is followed again
    back = gone.channel.receive(json.dumps({"type": "pull", "cursor": gone.channel.cursor}))
    assert {u["record"]["accountid"] for f in back for u in f["upserts"]} == {first, second}
    gap.channel.wake()
    hub.wake_all()  # the listener reconnected: messages may have been lost
    assert gap.sub.full and gap.sub.follower is None
    third = w.write(lambda s, m: _record(m, s, "account", {"name": "After the gap"}, bob))
    got = gap.channel.wake()
    assert {u["record"]["accountid"] for f in got for u in f["upserts"]} == {third}


def test_a_session_ended_without_the_hub_closes_the_socket_at_the_next_change(world: World) -> None:
    """Signed out by another process on SQLite (no NOTIFY): the fan-out checks the receivers'
    sessions once per change, and the device's own read closes it (1008)."""
    from webapp.sync.channel import Closing

    w, org = world, world.org
    device = next(d for d in w.devices if d.user == "dave")
    svc = services(w.app)
    with svc.db.session(write=True) as s:
        accounts.end_session(s, device.sub.token_hash)
        s.commit()
    w.write(lambda s, m: _record(m, s, "account", {"name": "X"}, (org.bob, "systemuser", org.root_bu)))
    assert device.sub.full and not device.sub.inbox
    with pytest.raises(Closing) as closing:
        device.channel.wake()
    assert closing.value.code == 1008


def test_a_security_change_with_no_record_written_hands_the_devices_back_to_their_own_reads(world: World) -> None:
    """A role's privilege revoked writes no change-log row, and on SQLite sends no NOTIFY: the
    reader still sees the epoch move and every device reads (and reconciles) for itself."""
    from webapp.security.roles import grant, role_id

    w = world
    w.write(lambda s, m: grant(s, m, role_id(s, m, "Salesperson"), "account", "read", 0))
    assert all(d.sub.full and d.sub.follower is None for d in w.devices)
    for d in w.devices:
        d.channel.wake()
        assert d.sub.follower is not None  # caught up again: followed with its new principal
