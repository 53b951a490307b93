"""A model of the whole sync: three phones against the real server, checked against a reference.

A Hypothesis state machine drives three phones through the real `Channel` — JSON text in,
frames out, exactly what the socket carries: two of alice, the administrator in Sales East, and
one of bob, a salesperson at the root who reads only the accounts and contacts of his business
unit and his own leads and opportunities. Each phone IS the device's store: store.js,
records.js, queue.js, viewcache.js and rules.js unchanged, in one headless Chromium page
(tests/model_phone.py and model_phone.js, a thin adapter with no rules of its own). Python keeps
no copy of the rebase: what a phone shows, the base version of each op it queues and how an
ack, a feed or a download page moves its state are the store's own.

Why the real store and not a recorded table of its behaviour: the model's value is in the
sequences it invents (acks lost, repeated, late; feeds crossing pushes); a table recorded from
the browser would freeze a few of them, while driving the store checks every one. One
round trip costs more than the store's work, so calls are batched until an answer is needed.

Steps: creates, updates (lookups set and cleared) and deletes of accounts, contacts, leads and
opportunities, and the commands qualify_lead, disqualify_lead and close_opportunity, on the
records a phone shows (pending ones included); a sync pass that pushes the queue or its head,
after which the ack is read, left unread, lost with the connection, or the push stays in
flight — or is stranded on a dropped connection and reaches the server later, after the phone
reconnected; a push sent again; frames delivered and read one by one; live changes; a
reconfigured phone (new store, new device id, paged first download); on the web, records
created by alice or bob, edited by alice, or given to alice, bob or dave (in and out of bob's
scope); conflict detection set at the start and switched on and off.

Checked after every call into a store (tests/model_phone.py `Phone.took`): the views served
from memory are the rows stored; a record with nothing pending shows exactly the server's
state; an unsynced edit is never hidden (the last value each pending effect wrote shows, a
pending delete hides the record). Checked at every step against `Reference`, a plain model of
DESIGN.md §4-§5 (tests/sync_model.py): each push's
statuses, and each change-log entry (record, operation, changed fields), so every operation is
applied exactly once; every record a feed or page carries is readable by the user at its current
version, every record a feed removes is not; a re-sent operation's answer carries nothing the
user may no longer read. Checked once every queue drains (stranded frames arrive, each phone
pushes until its queue is empty, then pulls until no `more`): each phone holds exactly the
server's view for its user (the download through the security layer, lookup display names
aside), which is exactly what the reference lets the user read; the server's rows equal the
reference's; the ledger holds each operation once, with the reference's status.

Each run starts from one shared organisation emptied of records (much cheaper than a new one).
CI: 120 runs on SQLite and 20 on PostgreSQL, derandomized (the same runs every time). The
deep run, 20,000 longer runs on SQLite (hours):

    .venv/bin/pytest tests/test_sync_model.py -m slow
"""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete, select

from tests.conftest import PASSWORD, PgSchema, _empty_pg
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, chromium_missing, under_ci
from tests.model_phone import Device, Phone
from tests.sync_model import (
    ENTITIES,
    FIELDS,
    FORMATTED,
    POLYMORPHIC,
    PRIMARY,
    Reference,
    User,
    bind,
)
from webapp import create_app
from webapp.crm.changes import current_change
from webapp.crm.customizations import customizations
from webapp.crm.orgs import create_business_unit, root_business_unit
from webapp.crm.records import Actor
from webapp.crm.tables import changelog
from webapp.security import operations as ops
from webapp.security.accounts import start_session
from webapp.security.roles import ADMIN_ROLE
from webapp.security.scope import load_principal
from webapp.security.setup import new_organization, new_user
from webapp.services import services
from webapp.sync.channel import Channel
from webapp.sync.download import download_page
from webapp.sync.profile import set_offline
from webapp.sync.tables import opledger

# A failing example makes Hypothesis's pytest plugin import libcst, which warns on import.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import libcst  # noqa: F401

RUNS = itertools.count(1)
VALUES = st.sampled_from(["a", "b", "c"])  # few values, so some updates change nothing
PICKS = st.integers(0, 30)
PHONES = st.integers(0, 2)
FATES = ["read", "read", "unread", "lost", "in_flight", "stranded"]


def effect(kind: str, entity: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """One local effect of a command, as commands.js hands it to `store.write`."""
    return {"kind": kind, "entity": entity, "id": record_id, "changes": changes}


def without_lookup_names(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its lookups' display names (see the note in `SyncModel.check_drained`)."""
    return {k: v for k, v in record.items() if not (k.startswith("_") and k.endswith(FORMATTED))}


@dataclass
class World:
    """The organisation every run of a test shares (emptied between runs): three users, three sessions."""

    app: Flask
    org_id: str
    users: dict[str, str]  # alice, bob, dave -> id
    business_units: dict[str, str]  # root, east -> id
    tokens: list[str]  # one session per phone
    primary: dict[str, str]  # every entity's primary id attribute
    doc: dict[str, Any]  # the customizations document a phone downloads
    device: Device  # the Chromium page holding the phones' stores
    detection: bool = False  # the organisation's conflict setting as last set


def make_world(app: Flask, device: Device) -> World:
    """contoso-like: alice administers from Sales East; bob and dave sell at the root."""
    svc = services(app)
    with svc.db.session(write=True) as s:
        model = new_organization(s, svc.registry, "model", "Model")
        root = root_business_unit(s, model)
        east = create_business_unit(s, model, "Sales East")
        alice = new_user(s, model, svc.hasher, "alice", PASSWORD, "Able", east, [ADMIN_ROLE])
        bob = new_user(s, model, svc.hasher, "bob", PASSWORD, "Baker", root, ["Salesperson"])
        dave = new_user(s, model, svc.hasher, "dave", PASSWORD, "Dane", root, ["Salesperson"])
        tokens = [start_session(s, model.org_id, u)[0] for u in (alice, alice, bob)]
        primary = {e.logical_name: e.primary_id for e in model.entities.values()}
        doc = json.loads(json.dumps(customizations(model)))
        s.commit()
    users = {"alice": alice, "bob": bob, "dave": dave}
    return World(app, model.org_id, users, {"root": root, "east": east}, tokens, primary, doc, device)


class SyncModel(RuleBasedStateMachine):
    """Three phones, the server through `Channel`, and the reference beside it."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world, self.app, self.org_id = world, world.app, world.org_id
        self.alice, self.bob, self.dave = (world.users[u] for u in ("alice", "bob", "dave"))
        svc = services(self.app)
        with svc.db.session(write=True) as s:  # the organisation starts empty: cheaper than a new one
            model = svc.registry.model(s, self.org_id)
            for entity in ENTITIES:
                table = model.table(model.entity(entity))
                s.execute(delete(table).where(table.c.organizationid == self.org_id))
            self.last_change = current_change(s)
            s.commit()
        root, east = world.business_units["root"], world.business_units["east"]
        self.ref = Reference(
            {
                self.alice: User(self.alice, east, True),
                self.bob: User(self.bob, root, False),
                self.dave: User(self.dave, root, False),
            }
        )
        world.device.reset()  # the last run's stores go
        users = (("alice", world.business_units["east"]), ("alice", world.business_units["east"]), ("bob", root))
        self.phones = []
        for name, (user, unit), token in zip(("alice-1", "alice-2", "bob"), users, world.tokens, strict=True):
            phone = self.new_phone(name, user, unit, token)
            phone.cursor = self.last_change  # the first download: nothing
            self.phones.append(phone)
        self.stranded: list[tuple[Channel, list[str]]] = []  # frames in flight on dropped connections
        self.run, self.minted = next(RUNS), itertools.count(1)

    def new_phone(self, name: str, user: str, business_unit: str, token: str) -> Phone:
        """A phone with a new, empty store: the real device store in the browser."""
        who = {"id": self.world.users[user], "username": user, "business_unit_id": business_unit}
        phone = Phone(name, who, token, self.world.device, list(ENTITIES), self.world.primary)
        phone.open()
        return phone

    def mint(self) -> str:
        """A new record id: unique, and in the same order on every replay (picks go by id order)."""
        return f"{self.run:08x}-0000-4000-8000-{next(self.minted):012x}"

    @initialize(
        detection=st.booleans(),
        seeds=st.lists(st.tuples(st.sampled_from(ENTITIES), st.sampled_from(["alice", "bob"]), VALUES), max_size=4),
    )
    def start(self, detection: bool, seeds: list[tuple[str, str, str]]) -> None:
        """The conflict setting, and a few records made on the web before the phones first sync."""
        self.set_detection(detection)
        for entity, user, value in seeds:
            self.server_create(entity, user, value)

    def set_detection(self, on: bool) -> None:
        self.ref.detection = on
        if self.world.detection != on:
            self.as_user(self.alice, lambda s, m, p, a: set_offline(s, m, conflict_detection=on))
            self.world.detection = on

    # --- talking to the server ----------------------------------------------------------

    def connect(self, phone: Phone) -> dict[str, Any]:
        """A new connection: hello, welcome, and a first download resumed where it stopped."""
        phone.channel = Channel(self.app, phone.token, self.org_id, phone.user_id, services=services(self.app))
        frames = self.deliver(phone.channel, json.dumps({"type": "hello", "device_id": phone.device_id}))
        assert [f["type"] for f in frames] == ["welcome"], frames
        welcome = frames[0]
        assert welcome["next_seq"] == len(self.ref.ledger.get(phone.device_id, {})) + 1
        if phone.downloading:
            phone.request_page()
        return welcome

    def deliver(self, channel: Channel, text: str) -> list[dict[str, Any]]:
        """One frame reaches the server; the reference predicts what it does and the log is checked."""
        msg = json.loads(text)
        user_id = channel.user_id
        expected, readable = None, {}
        if msg["type"] == "push":
            expected, readable = self.ref.push(channel.device_id or "", user_id, msg["ops"])
        frames = channel.receive(text)
        self.match_log()
        if expected is not None:
            assert [f["type"] for f in frames] == ["ack"], frames
            results = frames[0]["results"]
            assert [r["status"] for r in results] == expected, (results, expected)
            for r in results:  # a re-sent op's answer: nothing the user may no longer read
                for item in r["records"] if r["seq"] in readable else []:
                    rid = item["record"][PRIMARY[item["entity"]]]
                    assert rid in readable[r["seq"]], f"a re-sent op's answer carries {item['entity']} {rid}"
        for f in frames:
            if f["type"] == "changes":
                self.check_changes(user_id, f)
            elif f["type"] == "page":
                self.check_records(user_id, [{"entity": f["entity"], "record": r} for r in f["records"]])
        return frames

    def check_changes(self, user_id: str, frame: dict[str, Any]) -> None:
        """A feed frame: its upserts are readable and current, its removes are gone from the user's view."""
        self.check_records(user_id, frame["upserts"])
        for r in frame["removes"]:
            if r["entity"] in ENTITIES:
                assert r["id"] not in self.ref.visible(user_id, r["entity"]), f"{r} while the user may read it"

    def check_records(self, user_id: str, items: list[dict[str, Any]]) -> None:
        """Every record a feed or a page sends is one the user may read now, at its current version."""
        for item in items:
            entity, record = item["entity"], item["record"]
            if entity not in ENTITIES:
                continue
            rec = self.ref.visible(user_id, entity).get(record[PRIMARY[entity]])
            assert rec is not None, f"{entity} {record[PRIMARY[entity]]} sent to a user who may not read it"
            assert record["versionnumber"] == rec.version, (record, rec)

    def match_log(self) -> None:
        """The change log's new entries are exactly the writes the reference expects."""
        with services(self.app).db.session() as s:
            rows = s.execute(
                select(changelog)
                .where(changelog.c.organizationid == self.org_id, changelog.c.changenum > self.last_change)
                .order_by(changelog.c.changenum)
            ).mappings()
            entries = [dict(r) for r in rows]
        self.ref.match(entries)
        if entries:
            self.last_change = entries[-1]["changenum"]

    def as_user(self, user_id: str, fn: Any) -> None:
        """Run `fn(session, model, principal, actor)` as a user on the server (the web, not a device)."""
        svc = services(self.app)
        with svc.db.session(write=True) as s:
            model = svc.registry.model(s, self.org_id)
            p = load_principal(s, model, user_id)
            fn(s, model, p, Actor(self.org_id, user_id, p.business_unit_id))
            s.commit()
        self.match_log()

    # --- local edits on a phone ---------------------------------------------------------

    def _pick(self, phone: Phone, entity: str, pick: int, open_only: bool = False) -> dict[str, Any] | None:
        views = [v for v in phone.views(entity) if not open_only or v.get("statecode") == 0]
        return views[pick % len(views)] if views else None

    def holding(self, *entities: str) -> bool:
        """Whether some phone shows a record of one of these entities."""
        return any(phone.views(e) for phone in self.phones for e in entities)

    @rule(p=PHONES, entity=st.sampled_from(ENTITIES), value=VALUES, pick=PICKS, link=st.booleans())
    def create(self, p: int, entity: str, value: str, pick: int, link: bool) -> None:
        phone = self.phones[p]
        changes: dict[str, Any] = {
            "account": {"name": value},
            "contact": {"lastname": value},
            "lead": {"subject": value, "lastname": value},
            "opportunity": {"name": value},
        }[entity]
        account = self._pick(phone, "account", pick)
        if link and account and entity in ("contact", "opportunity"):
            key = "parentcustomerid_account" if entity == "contact" else "customerid_account"
            changes[f"{key}@odata.bind"] = bind("account", account["accountid"])
        phone.write("create", entity, self.mint(), changes)

    @precondition(lambda self: self.holding(*ENTITIES))
    @rule(p=PHONES, entity=st.sampled_from(ENTITIES), pick=PICKS, value=VALUES, variant=st.integers(0, 2))
    def update(self, p: int, entity: str, pick: int, value: str, variant: int) -> None:
        phone = self.phones[p]
        view = self._pick(phone, entity, pick)
        if view is None:
            return
        first, second = {
            "account": ("name", "telephone1"),
            "contact": ("lastname", "parentcustomerid_account@odata.bind"),
            "lead": ("subject", "lastname"),
            "opportunity": ("name", "name"),
        }[entity]
        changes: dict[str, Any] = {}
        if variant != 1:
            changes[first] = value
        if variant != 0:
            if second.endswith("@odata.bind"):
                account = self._pick(phone, "account", pick + variant)
                changes[second] = bind("account", account["accountid"]) if account and value != "c" else None
            else:
                changes[second] = value
        phone.write("update", entity, view[PRIMARY[entity]], changes)

    @precondition(lambda self: self.holding(*ENTITIES))
    @rule(p=PHONES, entity=st.sampled_from(ENTITIES), pick=PICKS)
    def delete(self, p: int, entity: str, pick: int) -> None:
        phone = self.phones[p]
        view = self._pick(phone, entity, pick)
        if view is not None:
            phone.write("delete", entity, view[PRIMARY[entity]], {})

    @precondition(lambda self: self.holding("lead", "opportunity"))
    @rule(
        p=PHONES,
        pick=PICKS,
        name=st.sampled_from(["qualify_lead", "disqualify_lead", "close_opportunity"]),
        flags=st.integers(0, 7),
    )
    def command(self, p: int, pick: int, name: str, flags: int) -> None:
        """A command on an open lead or opportunity the phone shows, with its local effects at once."""
        phone = self.phones[p]
        entity = "opportunity" if name == "close_opportunity" else "lead"
        view = self._pick(phone, entity, pick, open_only=True)
        if view is None:
            return
        rid = view[PRIMARY[entity]]
        args: dict[str, Any]
        if name == "qualify_lead":
            wanted = {"account": bool(flags & 1), "contact": bool(flags & 2), "opportunity": bool(flags & 4)}
            new_ids = {k: self.mint() for k, on in wanted.items() if on}
            names = {"account": ("name", view.get("lastname")), "contact": ("lastname", view.get("lastname"))}
            names["opportunity"] = ("name", view.get("subject"))
            effects = [effect("create", k, v, dict([names[k]])) for k, v in new_ids.items()]
            effects.append(effect("update", "lead", rid, {"statecode": 1, "statuscode": 3}))
            args = {f"create_{k}": on for k, on in wanted.items()}
            args.update(leadid=rid, new_ids=new_ids)
        elif name == "disqualify_lead":
            reason = 4 + flags % 4
            effects = [effect("update", "lead", rid, {"statecode": 2, "statuscode": reason})]
            args = {"leadid": rid, "statuscode": reason}
        else:
            won = bool(flags & 1)
            state = {"statecode": 1, "statuscode": 3} if won else {"statecode": 2, "statuscode": 4}
            effects = [effect("update", "opportunity", rid, state)]
            args = {"opportunityid": rid, "status": "won" if won else "lost"}
        phone.write("command", entity, rid, {}, command=name, args=args, effects=effects)

    # --- the wire -----------------------------------------------------------------------

    @rule(p=PHONES, count=st.integers(0, 3), fate=st.sampled_from(FATES))
    def sync(self, p: int, count: int, fate: str) -> None:
        """A pass of the app's sync loop: (re)connect, pull, push the queue (or its first `count`
        ops). Then the answers are read, or left unread, or lost with the connection; or the
        frames are still in flight, or in flight on a connection that drops (they reach the
        server later, and nobody hears back)."""
        phone = self.phones[p]
        if phone.channel is None:
            self.connect(phone)
        if not phone.downloading:
            phone.pull()
            phone.push(count or phone.queued)
        if fate == "stranded":
            self.drop(phone, strand=True)
            return
        if fate == "in_flight":
            return
        while phone.outbox:
            phone.inbox += self.deliver(phone.channel, phone.outbox.pop(0))
        if fate == "read":
            self.settle(phone)
        elif fate == "lost":
            self.drop(phone, strand=False)

    @rule(first=PHONES)
    def sync_all(self, first: int) -> None:
        """Every phone syncs in turn, reading every answer."""
        for i in range(len(self.phones)):
            self.sync((first + i) % len(self.phones), 0, "read")

    @precondition(lambda self: any(phone.pushes for phone in self.phones))
    @rule(p=PHONES, pick=PICKS)
    def push_again(self, p: int, pick: int) -> None:
        """A push the phone sent before is sent again (its ack was lost, or it retried)."""
        phone = self.phones[p]
        if phone.channel is not None and phone.pushes:
            phone.outbox.append(phone.pushes[pick % len(phone.pushes)])

    @precondition(lambda self: any(phone.outbox for phone in self.phones))
    @rule(p=PHONES, count=st.integers(1, 3))
    def deliver_frames(self, p: int, count: int) -> None:
        """The next frames on the phone's connection reach the server; its answers head back."""
        phone = self.phones[p]
        while phone.channel is not None and phone.outbox and count:
            count -= 1
            phone.inbox += self.deliver(phone.channel, phone.outbox.pop(0))

    @precondition(lambda self: any(phone.inbox for phone in self.phones))
    @rule(p=PHONES, count=st.integers(1, 4))
    def read_frames(self, p: int, count: int) -> None:
        """The phone reads the next frames the server sent it."""
        phone = self.phones[p]
        frames, phone.inbox = phone.inbox[:count], phone.inbox[count:]
        phone.read(frames)

    @rule(p=PHONES)
    def live_changes(self, p: int) -> None:
        """The server's feed wakes this connection after a commit elsewhere."""
        phone = self.phones[p]
        if phone.channel is not None:
            frames = phone.channel.wake()
            for f in frames:
                self.check_changes(phone.user_id, f)
            phone.inbox += frames

    @rule(p=PHONES, what=st.sampled_from(["drop", "strand", "reconfigure"]))
    def connection(self, p: int, what: str) -> None:
        """The connection drops (unread answers are lost; frames in flight are lost, or still reach
        the server later); or, with nothing pending, the user reconfigures: a new store, a new
        device id, and a paged first download."""
        phone = self.phones[p]
        if what != "reconfigure":
            self.drop(phone, strand=what == "strand")
        elif not phone.queued and phone.channel is not None:
            phone.destroy()
            fresh = self.new_phone(phone.name, phone.user["username"], phone.user["business_unit_id"], phone.token)
            fresh.downloading = list(ENTITIES)
            self.phones[p] = fresh
            self.connect(fresh)

    def drop(self, phone: Phone, strand: bool) -> None:
        if phone.channel is None:
            return
        if strand and phone.outbox:
            self.stranded.append((phone.channel, phone.outbox))
        phone.channel, phone.outbox, phone.inbox = None, [], []

    @precondition(lambda self: bool(self.stranded))
    @rule(pick=PICKS)
    def stranded_frame_arrives(self, pick: int) -> None:
        """The oldest frame still in flight on a dropped connection reaches the server (nobody hears back)."""
        if self.stranded:
            channel, frames = self.stranded[pick % len(self.stranded)]
            self.deliver(channel, frames.pop(0))
            self.stranded = [(c, f) for c, f in self.stranded if f]

    # --- the server ---------------------------------------------------------------------

    @rule(
        what=st.sampled_from(["create", "edit", "edit_pending", "assign", "detection"]),
        entity=st.sampled_from(ENTITIES),
        pick=PICKS,
        who=st.sampled_from(["alice", "bob", "dave"]),
        value=VALUES,
    )
    def server(self, what: str, entity: str, pick: int, who: str, value: str) -> None:
        """On the web: a user creates a record; alice edits one (often one a phone has an edit of
        waiting, so a feed crosses it) or gives it to another user (it enters or leaves bob's
        scope); alice switches conflict detection on (server wins) or off."""
        if what == "detection":
            self.set_detection(value != "a")
            return
        ids = sorted(rid for rid, rec in self.ref.records.items() if rec.entity == entity)
        if what == "edit_pending":
            waiting = {rid for phone in self.phones for rid in phone.pending_ids(entity)}
            ids, what = sorted(waiting & set(ids)) or ids, "edit"
        if what == "create" or not ids:
            self.server_create(entity, "alice" if who == "dave" else who, value)
            return
        rid = ids[pick % len(ids)]
        if what == "edit":
            field = {"account": "name", "contact": "lastname", "lead": "subject", "opportunity": "name"}[entity]
            self.ref.server_update(rid, {field: value})
            self.as_user(self.alice, lambda s, m, p, a: ops.update(s, m, p, a, m.entity(entity), rid, {field: value}))
        else:
            user = self.world.users[who]
            self.ref.assign(rid, user)
            payload = {"ownerid@odata.bind": f"/systemusers({user})"}
            self.as_user(self.alice, lambda s, m, p, a: ops.assign(s, m, p, a, m.entity(entity), rid, payload))

    def server_create(self, entity: str, user: str, value: str) -> None:
        rid, user_id = self.mint(), self.world.users[user]
        payload = {FIELDS[entity][0]: value, **({"lastname": value} if entity == "lead" else {})}
        self.ref.server_create(user_id, entity, rid, payload)
        self.as_user(
            user_id, lambda s, m, p, a: ops.create(s, m, p, a, m.entity(entity), {**payload, PRIMARY[entity]: rid})
        )

    # --- the end: drain every queue, then compare ---------------------------------------

    def settle(self, phone: Phone) -> None:
        """Deliver and read until nothing is in flight for this phone."""
        while phone.outbox or phone.inbox:
            while phone.outbox:
                phone.inbox += self.deliver(phone.channel, phone.outbox.pop(0))
            frames, phone.inbox = phone.inbox, []
            phone.read(frames)

    def teardown(self) -> None:
        for channel, frames in self.stranded:
            for text in frames:
                self.deliver(channel, text)
        self.stranded = []
        for phone in self.phones:
            if phone.channel is None:
                self.connect(phone)
            self.settle(phone)
            while phone.queued:
                phone.push(phone.queued)
                self.settle(phone)
        for phone in self.phones:
            phone.more = True
            while phone.more:
                phone.pull()
                self.settle(phone)
        self.check_drained()

    def check_drained(self) -> None:
        """Every phone holds the server's view for its user; the server holds the reference's records.

        Lookup display names are left out: a record keeps the name its lookup target had when the
        record last changed (renaming an account does not send its contacts again).
        """
        svc = services(self.app)
        with svc.db.session() as s:
            model = svc.registry.model(s, self.org_id)
            for user_id in {phone.user_id for phone in self.phones}:
                principal = load_principal(s, model, user_id)
                for entity in ENTITIES:
                    page = download_page(s, model, principal, entity, None, 5000)
                    server = {r[PRIMARY[entity]]: without_lookup_names(r) for r in page["records"]}
                    assert set(server) == set(self.ref.visible(user_id, entity)), (user_id, entity)
                    for phone in self.phones:
                        if phone.user_id == user_id:
                            held = {rid: without_lookup_names(r) for rid, r in phone.held(entity).items()}
                            assert held == server, f"{phone.name} {entity}: holds {held}, the server's view {server}"
            for phone in self.phones:
                assert not (phone.queued or phone.outbox or phone.inbox or phone.downloading), phone.name
                assert set(phone.state["held"]) <= set(ENTITIES), phone.state["held"].keys()
            for entity in ENTITIES:
                table = model.table(model.entity(entity))
                rows = s.execute(select(table).where(table.c.organizationid == self.org_id)).mappings()
                got = {r[PRIMARY[entity]]: stored(entity, r) for r in rows}
                want = {
                    rid: {**rec.fields, "ownerid": rec.owner, "versionnumber": rec.version}
                    for rid, rec in self.ref.records.items()
                    if rec.entity == entity
                }
                assert got == want, f"{entity}: the server holds {got}, the reference {want}"
            devices = list(self.ref.ledger)
            ledger = s.execute(
                select(opledger.c.deviceid, opledger.c.seq, opledger.c.op_id, opledger.c.status).where(
                    opledger.c.deviceid.in_(devices)
                )
            ).all()
            got_ledger: dict[str, dict[int, tuple[str, str]]] = {d: {} for d in devices}
            for row in ledger:
                got_ledger[row.deviceid][row.seq] = (row.op_id, row.status)
            assert got_ledger == self.ref.ledger
        assert not self.ref.pending


def stored(entity: str, row: Any) -> dict[str, Any]:
    """A stored row in the reference's terms."""
    out: dict[str, Any] = {}
    for f in FIELDS[entity]:
        if (entity, f) in POLYMORPHIC:
            out[f] = (row[f"{f}__type"], row[f]) if row[f] else None
        else:
            out[f] = row[f]
    out["ownerid"] = row["ownerid"]
    out["versionnumber"] = row["versionnumber"]
    return out


COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,  # the same examples on every run, and no example database
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}


@pytest.fixture(scope="module")
def device(pw: Any) -> Iterator[Device]:
    """One headless Chromium page for every phone of every run (a store per phone, deleted per run).

    Without Chromium the model is skipped with the reason, except under CI, where it fails."""
    why = chromium_missing()
    if why is not None:
        if under_ci():
            pytest.fail(f"CI=true and the sync model cannot run: {why}", pytrace=False)
        pytest.skip(why)
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield Device(browser.new_page())
    finally:
        browser.close()


def model_world(url: str, device: Device) -> Iterator[World]:
    app = create_app(
        {
            "DATABASE_URL": url,
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "t",
            "RATE_LIMITS": False,  # thousands of runs share three users: the per-user limits would throttle them
        }
    )
    with app.app_context():
        world = make_world(app, device)
        device.call("useDoc", world.doc)
        yield world
    services(app).db.dispose()


@pytest.fixture
def sqlite_world(tmp_path: Any, device: Device) -> Iterator[World]:
    yield from model_world(f"sqlite:///{tmp_path}/model.db", device)


@pytest.fixture
def pg_world(pg_schema: PgSchema, device: Device) -> Iterator[World]:
    _empty_pg(pg_schema)
    yield from model_world(pg_schema.url, device)


def run(world: World, examples: int, steps: int) -> None:
    """Run the state machine `examples` times, each at most `steps` steps long."""
    run_state_machine_as_test(
        lambda: SyncModel(world), settings=settings(max_examples=examples, stateful_step_count=steps, **COMMON)
    )


def test_every_phone_converges_on_the_server_and_the_server_on_the_reference(sqlite_world: World) -> None:
    """120 runs on SQLite (the deep run has 20,000): phones, server and reference agree once the queues drain."""
    run(sqlite_world, 120, 20)


@pytest.mark.postgres
def test_the_model_holds_on_postgresql(pg_world: World) -> None:
    """The same model, 20 runs on PostgreSQL."""
    run(pg_world, 20, 20)


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
def test_the_model_holds_on_a_deep_run(sqlite_world: World) -> None:
    """The deep run: 20,000 longer runs on SQLite (select it with `-m slow`)."""
    run(sqlite_world, 20_000, 60)


@pytest.mark.parametrize("detection", [False, True])
def test_a_feed_crossing_a_pending_edit_leaves_the_edit_shown_until_its_ack(
    sqlite_world: World, detection: bool
) -> None:
    """The interleaving the random runs rarely build: the web changes a record while the phone
    holds an edit of it not yet pushed, and the live feed arrives first. The real store must keep
    showing the user's edit over the server's newer version, then settle as the conflict rule says."""
    model = SyncModel(sqlite_world)
    model.start(detection, [])
    model.server_create("account", "alice", "a")
    model.sync(0, 0, "read")  # alice's first phone holds the record
    phone = model.phones[0]
    (held,) = phone.views("account")
    model.update(0, "account", 0, "b", 0)  # her edit waits in the queue
    model.server("edit", "account", 0, "alice", "c")  # the web changes the same field
    model.live_changes(0)
    model.read_frames(0, 4)  # the newer server version arrives over the pending edit
    (shown,) = phone.views("account")
    assert shown["accountid"] == held["accountid"]
    assert shown["name"] == "b", "the pending edit must stay on top of the feed"
    assert phone.queued == 1
    model.teardown()  # pushed, acked and compared with the server and the reference
    (settled,) = phone.views("account")
    assert settled["name"] == ("c" if detection else "b")
