"""Live fan-out: each commit is read once per process and handed to the devices that may see it.

A device that is caught up (its last pull or wake read the feed to the end) is *followed*: the
fan-out keeps its cursor, its channel's cached principal, what it holds of each entity
(`profile.Holding`) and its place in an index. When the hub hears of a commit (`Hub.notify`,
in this process at once, from others by NOTIFY), one worker reads the change log after the
last number it has read — once, whatever the number of devices (`feed.read_once`) — and:

1. reads which users' security epoch moved lately (one query): their devices leave the
   fan-out and do their own read, reloading the principal and reconciling (as before);
2. finds the candidate devices of each changed record through the index — by organisation,
   then entity: the owner, the business unit, the principals it is (or was) shared with, the
   writer, and the devices that hold every record of the entity — without looking at the
   others, so the cost of a change grows with those who may receive it, not with all connected;
3. decides for each candidate, in Python from the same declarations the SQL uses
   (`feed.decide`: `Holding` and `Reach`, proven equal by tests/test_fanout_scope.py), what
   `changes_since` would send it; checks the receivers' sessions (one query); serialises each
   record once per field-security shape (`to_records`) and adds each device's access letters;
4. queues a `Delivery` (the frames for cursor `start` → `upto`) on each receiver's
   subscription and wakes it. `Channel.wake` sends it only if its cursor is still `start`.

Whatever the fan-out cannot decide exactly falls back to the device's own feed read (the
path a pull takes): a device not caught up, behind what the worker read, with a `related`
filter, with a stale principal or metadata, with a session no longer live, or with a time
window not checked for `PLAN_EVERY`; and every device after the listener's gap.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import or_, select

from webapp.crm.changes import utcnow
from webapp.crm.epoch import ORG
from webapp.crm.query import QueryOptions, to_records
from webapp.crm.tables import securityepoch
from webapp.security.accounts import usersession
from webapp.security.operations import ACCESS, access_letters
from webapp.security.scope import Principal
from webapp.sync.feed import Read, decide, read_once
from webapp.sync.follower import Delivery, Follower, Prepared, index_keys
from webapp.sync.profile import downloadable, holding, window_days

log = logging.getLogger("outpost.sync")
EPOCH_MARGIN = dt.timedelta(seconds=60)  # epoch rows re-read this far back (a bump's clock is its transaction's start)
PLAN_EVERY = 60.0  # seconds between scope plans (time windows) for a followed device that reconciles


class FanOut:
    """The per-process reader and its index of followed devices."""

    def __init__(self, db: Any, registry: Any) -> None:
        self.db, self.registry = db, registry
        self._lock = threading.RLock()
        self._wanted = threading.Condition(self._lock)
        self._pending: dict[str, float] = {}  # org → when the first unread commit was heard
        self._worker: threading.Thread | None = None
        self._busy = False
        self._stopping = False
        self.pos: dict[str, int] = {}  # org → the last change number read
        self._org_epochs: dict[str, int] = {}  # org → its epoch row as last read
        self._since: dict[str, dt.datetime] = {}  # org → epoch rows are read from here
        self._index: dict[tuple[Any, ...], set[Follower]] = defaultdict(set)
        self._count: dict[str, int] = defaultdict(int)  # org → followed devices
        self.passes = 0  # reads done (tests, benchmarks)
        self.decisions = 0  # devices decided for, summed over passes (tests, benchmarks)

    # -- following -------------------------------------------------------------------------

    def mark(self, org_id: str) -> int | None:
        """Where the reader stands; a channel notes it before reading the feed itself."""
        with self._lock:
            return self.pos.get(org_id)

    def follow(self, sub: Any, model: Any, principal: Principal, cursor: int, mark: int | None, **how: Any) -> bool:
        """Follow a device whose own read (started when the reader stood at `mark`) reached the
        end at `cursor`. False when the reader has since read past what that read could see:
        the caller must read again."""
        org = sub.org_id
        with self._lock:
            self._drop(sub)
            pos = self.pos.get(org)
            if pos is not None and cursor < pos and mark != pos:
                return False
            if pos is None:
                self.pos[org] = cursor
                self._since[org] = _wall() - EPOCH_MARGIN
            holdings = {e.logical_name: holding(model, principal, e) for e in downloadable(model)}
            f = Follower(sub, cursor, principal, model.revision, how["epoch"], holdings, how.get("clock"))
            f.windows = bool(how.get("reconciles")) and any(window_days(model, e) for e in downloadable(model))
            f.related = any(h.offline and h.filter is None for h in holdings.values())
            f.keys = index_keys(org, principal, holdings, f.related)
            for key in f.keys:
                self._index[key].add(f)
            self._count[org] += 1
            sub.follower = f
            return True

    def unfollow(self, sub: Any) -> None:
        """The device reads for itself from now on (until it follows again)."""
        with self._lock:
            self._drop(sub)

    def _drop(self, sub: Any) -> None:
        f = getattr(sub, "follower", None)
        if f is None:
            return
        sub.follower = None
        for key in f.keys:
            found = self._index.get(key)
            if found is not None:
                found.discard(f)
                if not found:
                    del self._index[key]
        self._count[sub.org_id] -= 1
        if self._count[sub.org_id] <= 0:  # no one left to read for: start afresh with the next
            for table in (self._count, self.pos, self._org_epochs, self._since):
                table.pop(sub.org_id, None)

    def _release(self, f: Follower) -> None:
        """Hand a device back to its own feed read (and wake it for that)."""
        with self._lock:
            if f.sub.follower is not f:
                return
            self._drop(f.sub)
        f.sub.full = True
        f.sub.event.set()

    def followers(self, org_id: str) -> int:
        """How many devices of an organisation are followed."""
        with self._lock:
            return self._count.get(org_id, 0)

    # -- reading ---------------------------------------------------------------------------

    def changed(self, org_id: str) -> None:
        """A commit in this organisation: read it (in the worker) if anyone is followed."""
        with self._lock:
            if org_id not in self.pos:
                return
            self._pending.setdefault(org_id, time.monotonic())
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="outpost-fanout", daemon=True)
                self._worker.start()
            self._wanted.notify_all()

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every commit heard is read and delivered (tests, benchmarks)."""
        with self._lock:
            return self._wanted.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self) -> None:
        """End the worker."""
        with self._lock:
            self._stopping = True
            self._wanted.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wanted.wait()
                if self._stopping:
                    return
                org, heard = next(iter(self._pending.items()))
                del self._pending[org]
                self._busy = True
            try:
                self.run(org, heard)
            finally:
                with self._lock:
                    self._busy = False
                    self._wanted.notify_all()

    def run(self, org_id: str, heard: float | None = None) -> None:
        """Read what committed after the reader's position and deliver it (a failure hands the
        organisation's devices back to their own reads)."""
        try:
            self._run(org_id, heard if heard is not None else time.monotonic())
        except Exception:
            log.exception("live fan-out failed; the devices read for themselves")
            with self._lock:
                lost = list(self._index.get((org_id, "all"), ()))
            for f in lost:
                self._release(f)

    def _run(self, org_id: str, heard: float) -> None:
        more = True
        while more:
            with self.db.session() as s:
                with self._lock:
                    start = self.pos.get(org_id)
                if start is None:
                    return
                model = self.registry.model(s, org_id)
                read = read_once(s, model, start)
                with self._lock:
                    if self.pos.get(org_id) != start:
                        return  # everyone left meanwhile (a newcomer starts from its own cursor)
                    self.pos[org_id] = read.upto
                self.passes += 1
                more = read.more
                self._moved_epochs(s, org_id)
                if read.upto > start:
                    self._deliver(s, model, read, heard)

    def _moved_epochs(self, s: Any, org_id: str) -> None:
        """Devices whose user's access changed (any process, any kind) read for themselves.

        Each follower keeps the epoch its principal was loaded at (`epoch.current`: the
        organisation's row plus the user's). One query reads the organisation's row and the rows
        bumped lately; a user's row compares their followers, the organisation's row (when it
        moved) all of them — an organisation-wide change makes every device reconcile anyway."""
        with self._lock:
            since = self._since.get(org_id)
        if since is None:
            return
        rows = s.execute(
            select(securityepoch.c.principalid, securityepoch.c.epoch, securityepoch.c.changedon).where(
                securityepoch.c.organizationid == org_id,
                or_(securityepoch.c.principalid == ORG, securityepoch.c.changedon >= since),
            )
        ).all()
        org_row = next((r for r in rows if r.principalid == ORG), None)
        org_epoch = int(org_row.epoch) if org_row is not None else 0
        users = {r.principalid: int(r.epoch) for r in rows if r.principalid != ORG and r.changedon >= since}
        with self._lock:
            recent = [r.changedon for r in rows if r.changedon >= since]
            if recent:
                self._since[org_id] = max(recent) - EPOCH_MARGIN
            before = self._org_epochs.get(org_id)
            self._org_epochs[org_id] = org_epoch
            if before == org_epoch or (before is None and (org_row is None or org_row.changedon < since)):
                stale = {
                    f
                    for u, e in users.items()
                    for f in self._index.get((org_id, "user", u), ())
                    if f.epoch != org_epoch + e
                }
                everyone: list[Follower] = []
            else:
                stale, everyone = set(), list(self._index.get((org_id, "all"), ()))
        if everyone:
            ids = sorted({f.principal.user_id for f in everyone})
            found = dict(
                s.execute(
                    select(securityepoch.c.principalid, securityepoch.c.epoch).where(
                        securityepoch.c.organizationid == org_id, securityepoch.c.principalid.in_(ids)
                    )
                ).all()
            )
            stale = {f for f in everyone if f.epoch != org_epoch + int(found.get(f.principal.user_id, 0))}
        for f in stale:
            self._release(f)

    def _candidates(self, org_id: str, read: Read) -> dict[Follower, set[tuple[str, str]]]:
        """For each device that may receive something, the records that may concern it."""
        out: dict[Follower, set[tuple[str, str]]] = defaultdict(set)
        with self._lock:
            related = set(self._index.get((org_id, "related"), ()))
            for key, rows in read.rows.items():
                entity = key[0]
                probes: set[tuple[Any, ...]] = {(org_id, "every", entity)}
                current = read.current[key]
                states = [(r.ownerid, r.owningbusinessunit) for r in rows]
                if current is not None:
                    states.append((current.get("ownerid"), current.get("owningbusinessunit")))
                for owner, unit in states:
                    probes.update([(org_id, "owner", entity, owner), (org_id, "unit", entity, unit)])
                for who in {*read.shares[key], *read.shared_with[key], *(r.changedby for r in rows)}:
                    probes.add((org_id, "principal", who))
                for probe in probes:
                    for f in self._index.get(probe, ()):
                        out[f].add(key)
        for f in related:
            self._release(f)
            out.pop(f, None)
        return out

    def _deliver(self, s: Any, model: Any, read: Read, heard: float) -> None:
        """Decide, check sessions, serialise and queue (steps 3 and 4). Devices of one user at
        one epoch and cursor hold the same principal and cursor, so they share one decision
        and one frame: the work per extra device of theirs is a queue append and a wake."""
        now = utcnow()
        candidates = self._candidates(model.org_id, read)
        self.decisions += len(candidates)
        groups: dict[tuple[Any, ...], list[Follower]] = defaultdict(list)
        keys_of: dict[tuple[Any, ...], set[tuple[str, str]]] = defaultdict(set)
        for f, keys in candidates.items():
            if f.revision != model.revision or (f.windows and time.monotonic() - f.planned >= PLAN_EVERY):
                self._release(f)
                continue
            same = (f.principal.user_id, f.epoch, f.revision, f.at, f.clock)
            groups[same].append(f)
            keys_of[same] |= keys
        decided: dict[tuple[Any, ...], tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]] = {}
        for same, fs in groups.items():
            f = fs[0]
            found = decide(read, f.principal, f.holdings, f.at, f.clock() if f.clock else now, keys_of[same])
            if found is None:
                for other in fs:
                    self._release(other)
            elif found[0] or found[1]:
                decided[same] = found
        if not decided:
            return
        tokens = sorted({f.sub.token_hash for same in decided for f in groups[same]})
        live = set(
            s.execute(
                select(usersession.c.tokenhash).where(
                    usersession.c.tokenhash.in_(tokens),
                    usersession.c.revokedon.is_(None),
                    usersession.c.expireson > now,
                )
            ).scalars()
        )
        wire = self._serialise(s, model, {groups[same][0]: found for same, found in decided.items()})
        for same, (upserts, removes) in decided.items():
            first = groups[same][0]
            out = []
            for entity_name, row in upserts:
                entity = model.entity(entity_name)
                record = dict(wire[first.shape(model, entity)][(entity_name, row[entity.primary_id])])
                shares = read.shares[(entity_name, row[entity.primary_id])]
                record[ACCESS] = access_letters(first.principal, entity, row, shares, first.reaches_of(entity))
                out.append({"entity": entity_name, "record": record})
            frame = Prepared(type="changes", cursor=read.upto, upserts=out, removes=removes, more=False)
            frame.text = json.dumps(frame, separators=(",", ":"))
            for f in groups[same]:
                if f.sub.token_hash not in live:
                    self._release(f)  # its own read closes the socket (1008)
                    continue
                with self._lock:
                    if f.sub.follower is not f:
                        continue  # it pulled meanwhile: its next wake starts from its own cursor
                    f.sub.inbox.append(Delivery(f.at, read.upto, [frame]))
                    f.at = read.upto
                f.sub.woken = f.sub.woken or heard  # the live push latency starts here (webapp/metrics.py)
                f.sub.event.set()

    def _serialise(
        self, s: Any, model: Any, decided: dict[Follower, Any]
    ) -> dict[tuple[Any, ...], dict[tuple[str, str], dict[str, Any]]]:
        """Each upserted record serialised once per field-security shape (hidden fields, hidden
        lookup names) among its receivers."""
        wanted: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = defaultdict(dict)
        for f, (upserts, _) in decided.items():
            for entity_name, row in upserts:
                entity = model.entity(entity_name)
                wanted[f.shape(model, entity)][row[entity.primary_id]] = row
        out: dict[tuple[Any, ...], dict[tuple[str, str], dict[str, Any]]] = {}
        for shape, rows in wanted.items():
            entity_name, hidden, names = shape
            entity = model.entity(entity_name)
            records = to_records(
                s, model, entity, list(rows.values()), QueryOptions(), {entity_name: set(hidden)}, None, names
            )
            out[shape] = {(entity_name, rid): record for rid, record in zip(rows, records, strict=True)}
        return out


def _wall() -> dt.datetime:
    """The clock `epoch.bump` stamps its rows with (never a test's moved `utcnow`)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
