"""Faults end to end in a real Chromium: the app, the real server process, a broken network between them.

The phone reaches the server through `tests.faultproxy.FaultProxy` (its `base_url` is the
proxy's), which swallows an ack after the server committed, cuts every connection at seeded
random moments, or interrupts the first download; a tab is also killed in the middle of a burst
of local writes. Each test checks the device (IndexedDB, through the app or read raw) and the
server (its database: the operation ledger and the change log).

Every random choice comes from `random.Random(SEED)` (`OUTPOST_FAULT_SEED` overrides it) and the
seed is in every failure message. CI runs short profiles; the long ones are marked `slow`:

    .venv/bin/pytest tests/e2e/test_faults.py -m slow
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from contextlib import suppress
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Error, Page, expect
from sqlalchemy import select

from benchmarks.live import HttpSession, SyncClient
from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    call,
    database,
    fill_sign_in,
    open_app,
    raw_store,
    sign_in,
    status,
    store_names,
    wait_for,
    wait_synced,
)
from tests.e2e.waits import wait_until
from tests.faultproxy import DOWN, UP, FaultProxy
from webapp.crm.tables import changelog
from webapp.sync import stream
from webapp.sync.tables import opledger

SEED = int(os.environ.get("OUTPOST_FAULT_SEED", "2611"))
SETTLE_MS = 90_000  # the longest a device may take to converge once the network is steady again


# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


# --- helpers ----------------------------------------------------------------------------------


def network_down(proxy: FaultProxy, context: BrowserContext) -> None:
    """The phone loses its network: the proxy refuses everything and the browser knows it is offline."""
    context.set_offline(True)
    proxy.block()
    for page in context.pages:
        wait_until(page, f"{CTX}.sync.status.connection !== 'online'")


def network_up(proxy: FaultProxy, context: BrowserContext) -> None:
    """The network is back (the browser fires `online`, which the app listens to)."""
    proxy.unblock()
    context.set_offline(False)


def create_offline(page: Page, names: list[str]) -> list[str]:
    """Create accounts through the app's offline client API (`Xrm.WebApi.offline.createRecord`); their ids."""
    return call(  # type: ignore[no-any-return]
        page,
        """async (names) => {
            const ids = [];
            for (const name of names) ids.push((await Xrm.WebApi.offline.createRecord("account", { name })).id);
            return ids;
        }""",
        names,
        timeout=60_000,
    )


def device_view(page: Page) -> dict[str, dict[str, int]]:
    """Every offline entity's records on the device: {entity: {id: versionnumber}}."""
    return call(  # type: ignore[no-any-return]
        page,
        """async () => {
            const s = window.Outpost.ctx.store;
            const out = {};
            for (const e of s.offlineEntities()) {
                const rows = await s.all(e.logical_name);
                out[e.logical_name] = Object.fromEntries(rows.map((r) => [r[e.primary_id], r.versionnumber]));
            }
            return out;
        }""",
        timeout=30_000,
    )


def primary_ids(page: Page) -> dict[str, str]:
    """{entity: primary id attribute} of every offline entity on the device."""
    return call(  # type: ignore[no-any-return]
        page,
        "() => Object.fromEntries("
        "window.Outpost.ctx.store.offlineEntities().map((e) => [e.logical_name, e.primary_id]))",
    )


def server_view(server: LiveServer, username: str, keys: dict[str, str]) -> dict[str, dict[str, int]]:
    """What the server gives this user's device for the same entities (a first download over a socket)."""
    device = SyncClient(HttpSession(server.url, username))
    try:
        device.hello()
        out: dict[str, dict[str, int]] = {}
        for entity, key in keys.items():
            out[entity] = {}
            after = None
            while True:
                page = device.request({"type": "download", "entity": entity, "after": after, "limit": 5000}, timeout=60)
                assert page["type"] == "page", page
                out[entity].update({r[key]: r["versionnumber"] for r in page["records"]})
                after = page["next"]
                if after is None:
                    break
        return out
    finally:
        device.close()


def wait_converged(page: Page, server: LiveServer, username: str, timeout_ms: float, seed: int) -> None:
    """Wait until the device is synced (queue empty, idle) and holds exactly the server's view for the user."""
    wait_synced(page, timeout_ms)
    keys = primary_ids(page)
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        want = server_view(server, username, keys)
        have = device_view(page)
        if have == want:
            return
        if time.monotonic() > deadline:
            diff = {
                e: {
                    "missing": sorted(set(want[e]) - set(have.get(e, {})))[:5],
                    "extra": sorted(set(have.get(e, {})) - set(want[e]))[:5],
                    "stale": [i for i in want[e] if i in have.get(e, {}) and have[e][i] != want[e][i]][:5],
                }
                for e in want
                if want[e] != have.get(e)
            }
            raise AssertionError(f"the device did not converge with the server (seed {seed}): {diff}\n{status(page)}")
        page.wait_for_timeout(250)  # a live change may still be on its way: ask both again


def device_id(page: Page) -> str:
    return str(call(page, f"() => {CTX}.store.getMeta('device_id', null)"))


def check_ops_applied_once(server: LiveServer, device: str, seed: int) -> list[Any]:
    """Every op the device sent is in the ledger once, seqs 1..n, and made exactly one change each."""
    with database(server) as engine, engine.connect() as conn:
        ledger = conn.execute(
            select(opledger.c.seq, opledger.c.op_id, opledger.c.kind, opledger.c.recordid, opledger.c.status)
            .where(opledger.c.deviceid == device)
            .order_by(opledger.c.seq)
        ).all()
        assert [r.seq for r in ledger] == list(range(1, len(ledger) + 1)), f"seed {seed}"
        assert len({r.op_id for r in ledger}) == len(ledger), f"seed {seed}"
        assert all(r.status == "applied" for r in ledger), (
            f"seed {seed}: {[r for r in ledger if r.status != 'applied']}"
        )
        ids = sorted({r.recordid for r in ledger})
        changes = conn.execute(
            select(changelog.c.recordid, changelog.c.operation).where(
                changelog.c.entity == "account", changelog.c.recordid.in_(ids)
            )
        ).all()
    assert Counter((r.recordid, r.operation) for r in changes) == Counter((r.recordid, r.kind) for r in ledger), (
        f"a change the device made was applied twice or never (seed {seed})"
    )
    return ledger


# --- (b) the ack lost after the commit ---------------------------------------------------------


def test_an_ack_lost_after_the_commit_is_re_sent_by_the_app_and_applied_once(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    page = phone.new_page()
    sign_in(page, "east1")
    network_down(proxy, phone)
    names = [f"Lost ack {i:02d}" for i in range(20)]
    ids = create_offline(page, names)
    proxy.drop_next(lambda f: f.get("type") == "ack" and len(f["results"]) == len(names))
    network_up(proxy, phone)
    wait_synced(page, timeout=60_000)
    swallowed = proxy.received("ack", delivered=False)
    assert len(swallowed) == 1, "the ack was never swallowed"
    pushes = [p for p in proxy.sent("push") if any(op["id"] in ids for op in p["ops"])]
    assert len(pushes) == 2, f"the app sent its queue {len(pushes)} times"
    assert [(o["seq"], o["op_id"]) for o in pushes[0]["ops"]] == [(o["seq"], o["op_id"]) for o in pushes[1]["ops"]]
    acks = [a for a in proxy.received("ack") if any(r["op_id"] == pushes[0]["ops"][0]["op_id"] for r in a["results"])]
    assert len(acks) == 1, f"seed {SEED}"
    first = [(r["op_id"], r["seq"], r["status"]) for r in swallowed[0]["results"]]
    assert [(r["op_id"], r["seq"], r["status"]) for r in acks[0]["results"]] == first  # the first answers again
    ledger = check_ops_applied_once(live_server, device_id(page), SEED)
    assert sorted(r.recordid for r in ledger) == sorted(ids)
    views = [call(page, "([e, i]) => window.Outpost.ctx.store.get(e, i)", ["account", i]) for i in ids]
    assert [v["name"] for v in views] == names and all(v["versionnumber"] for v in views)


# --- (c) the tab killed in a burst of local writes ---------------------------------------------

BURST = 200


@pytest.mark.parametrize("how", ["crashed", "closed"])
def test_a_tab_killed_in_a_burst_of_writes_leaves_each_record_with_its_operation_or_neither(
    live_server: LiveServer, phone_context: BrowserContext, how: str
) -> None:
    rng = random.Random(f"{SEED}-{how}")
    page = phone_context.new_page()
    sign_in(page, "east1")
    [store] = store_names(page)
    live_server.stop()
    phone_context.set_offline(True)
    wait_until(page, f"{CTX}.sync.status.connection !== 'online'")
    resolved_before_kill = rng.randrange(10, BURST - 20)
    # Every create starts at once, none awaited by the burst; the page answers once `resolved_before_kill`
    # of them have resolved, and the tab is killed at once, with the rest in flight.
    page.evaluate(
        """([count, answerAfter]) => new Promise((resolve) => {
            let settled = 0;
            for (let i = 0; i < count; i++) {
                Xrm.WebApi.offline.createRecord("account", { name: `Burst ${String(i).padStart(3, "0")}` }).then(
                    () => { if (++settled === answerAfter) resolve(settled); },
                    () => {},
                );
            }
        })""",
        [BURST, resolved_before_kill],
    )
    if how == "crashed":
        with suppress(Error):  # the renderer dies under the navigation: "Page crashed"
            page.goto("chrome://crash", timeout=10_000)
        page.close()  # the crashed tab, gone (a crashed page in the context fails later calls on it)
    else:
        page.close(run_before_unload=False)
    reopened = phone_context.new_page()
    open_app(reopened)
    raw = raw_store(reopened, store)
    assert raw is not None
    burst = {r["id"]: r for r in raw["records"] if (r["view"] or {}).get("name", "").startswith("Burst ")}
    ops = [op for op in raw["queue"] if op["entity"] == "account" and op["kind"] == "create"]
    per_id = Counter(op["id"] for op in ops)
    assert set(per_id) == set(burst), (
        f"seed {SEED} ({how} after {resolved_before_kill}): records without an op "
        f"{sorted(set(burst) - set(per_id))[:3]}, ops without a record {sorted(set(per_id) - set(burst))[:3]}"
    )
    assert set(per_id.values()) <= {1}, f"an op is queued twice (seed {SEED})"
    assert all(r["server"] is None for r in burst.values())
    seqs = sorted(op["seq"] for op in raw["queue"])
    assert seqs == list(range(1, len(seqs) + 1)) and raw["meta"].get("next_seq") == len(seqs) + 1, (
        f"the queue has a gap (seed {SEED}): {seqs[:5]}… next_seq {raw['meta'].get('next_seq')}"
    )
    kept = len(burst)
    assert resolved_before_kill <= kept <= BURST, f"a write the app had confirmed was lost (seed {SEED})"
    print(f"\n  [figure] {how} after {resolved_before_kill} confirmed writes: {kept} of {BURST} records and ops kept")
    # Back online, the queue drains: each surviving record reaches the server once.
    live_server.start()
    phone_context.set_offline(False)
    wait_synced(reopened, timeout=60_000)
    ledger = check_ops_applied_once(live_server, device_id(reopened), SEED)
    assert sorted(r.recordid for r in ledger if r.kind == "create") == sorted(burst)


# --- (d) the network flapping during a sync ----------------------------------------------------


class ServerWork:
    """Changes made on the server while the device syncs (new accounts for the same user, over HTTP)."""

    def __init__(self, server: LiveServer, username: str, every: float = 0.1) -> None:
        self.api = server.client(username)
        self.every = every
        self.made = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="server-work", daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.every):
            resp = self.api.post("/api/data/accounts", {"name": f"Server side {self.made:04d}"})
            if resp.status != 201:
                self.errors.append(f"{resp.status} {resp.json}")
                return
            self.made += 1

    def __enter__(self) -> ServerWork:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(30)


LOCAL_WORK = """([prefix, every]) => {
    // Local writes while the network flaps: a create every `every` ms, an update of an earlier one every third.
    const w = window;
    w.__work = { made: [], failed: [], stop: false };
    let i = 0;
    const tick = async () => {
        if (w.__work.stop) return;
        try {
            if (i % 3 === 2) {
                const id = w.__work.made[Math.floor(i / 3) % w.__work.made.length];
                await Xrm.WebApi.offline.updateRecord("account", id, { name: `${prefix} ${i} (renamed)` });
            } else {
                w.__work.made.push((await Xrm.WebApi.offline.createRecord("account", { name: `${prefix} ${i}` })).id);
            }
        } catch (err) {
            w.__work.failed.push(String(err?.message ?? err));
        }
        i += 1;
        setTimeout(tick, every);
    };
    tick();
}"""


def flapping_sync(live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext, flaps: int, seed: int) -> None:
    """Queue work offline, then sync while the proxy cuts every connection `flaps` times at seeded moments."""
    rng = random.Random(seed)
    page = phone.new_page()
    sign_in(page, "east1")
    network_down(proxy, phone)
    create_offline(page, [f"Before the flapping {i:03d}" for i in range(60)])
    with ServerWork(live_server, "east1") as server_work:
        page.evaluate(LOCAL_WORK, ["During the flapping", 150])
        proxy.flap(flaps, rng, low=0.2, high=1.6)
        network_up(proxy, phone)
        proxy.wait_flapped(timeout=flaps * 2.0 + 30)
        call(page, "() => { window.__work.stop = true; }")
    work = call(page, "() => window.__work")
    assert not work["failed"] and not server_work.errors, f"seed {seed}: {work['failed']} {server_work.errors}"
    print(
        f"\n  [figure] {flaps} cuts ({proxy.connections} connections relayed); {len(work['made'])} records made"
        f" on the device and {server_work.made} on the server during the flapping"
    )
    wait_converged(page, live_server, "east1", SETTLE_MS, seed)
    ledger = check_ops_applied_once(live_server, device_id(page), seed)
    assert len(ledger) >= 60 + len(work["made"]), f"seed {seed}"


def test_the_network_flapping_during_a_sync_still_converges_with_each_operation_applied_once(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    flapping_sync(live_server, proxy, phone, flaps=5, seed=SEED)


@pytest.mark.slow
def test_fifty_network_flaps_during_a_sync_still_converge_with_each_operation_applied_once(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    flapping_sync(live_server, proxy, phone, flaps=50, seed=SEED)


# --- (e) the first download interrupted ---------------------------------------------------------

EXTRA_ACCOUNTS = 4500  # so accounts take three pages of the app's 2,000 (download.js STREAM_PAGE)


def add_accounts(server: LiveServer, username: str, count: int) -> None:
    """`count` accounts owned by `username`, pushed by another device of theirs."""
    device = SyncClient(HttpSession(server.url, username))
    try:
        seq = device.hello()["next_seq"]
        for start in range(0, count, 500):
            ops = [
                {
                    "op_id": f"bulk-{seq + i}",
                    "seq": seq + i,
                    "kind": "create",
                    "entity": "account",
                    "id": f"00000000-0000-4000-8000-{start + i:012d}",
                    "base_version": None,
                    "changes": {"name": f"Bulk {start + i:04d}"},
                }
                for i in range(min(500, count - start))
            ]
            ack = device.request({"type": "push", "ops": ops}, timeout=120)
            assert ack["type"] == "ack" and all(r["status"] == "applied" for r in ack["results"]), ack
            seq += len(ops)
    finally:
        device.close()


def test_the_first_download_interrupted_three_times_resumes_where_it_was_and_ends_with_each_record_once(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext
) -> None:
    add_accounts(live_server, "east1", EXTRA_ACCOUNTS)
    rng = random.Random(SEED)
    # Three streamed pages never arrive: an early page (by how many pages were delivered before it)
    # and two of the three account pages (so at least one in the middle of an entity). Each cut
    # closes the socket with the pages after it still in flight (the stream keeps a window of them).
    plan = {("*", rng.randrange(0, 3))} | {("account", p) for p in rng.sample(range(3), 2)}
    delivered_pages: Counter[str] = Counter()

    def interrupted(frame: dict[str, Any]) -> bool:
        if frame.get("type") != "rows":
            return False
        for key in (("*", delivered_pages["*"]), (frame["entity"], delivered_pages[frame["entity"]])):
            if key in plan:
                plan.discard(key)
                return True
        delivered_pages.update(["*", frame["entity"]])
        return False

    page = phone.new_page()
    open_app(page)
    fill_sign_in(page, "east1")
    dialog = page.get_by_role("dialog", name="Offline Updates Available")
    proxy.drop_every(interrupted)
    dialog.get_by_role("button", name="Update").click()
    expect(dialog).to_be_hidden()
    wait_for(
        page,
        f"() => {CTX}.sync.status.offlineReady === true && {CTX}.sync.status.download === null",
        timeout=120_000,
        what=f"the first download completes (seed {SEED}, cuts left {sorted(plan)})",
    )
    proxy.clear_drops()
    assert len(proxy.received("rows", delivered=False)) >= 3, f"seed {SEED}"
    assert not plan, f"seed {SEED}: cuts not made {plan}"
    # Streamed: pages in flight before their acks, one ack per page the device committed.
    streams = proxy.sent("stream")
    assert streams and all(s["window"] > 1 for s in streams), streams
    # Resumed, not restarted: each stream starts after the last page the device was given of
    # its entity (every page delivered before a cut is committed, so none is asked for again).
    frames = list(proxy.frames)
    last_next: dict[str, str | None] = {}
    for f in frames:
        if f.direction == DOWN and f.message.get("type") == "rows" and f.delivered:
            last_next[f.message["entity"]] = f.message["next"]
        elif f.direction == UP and f.message.get("type") == "stream":
            entity = f.message["entity"]
            assert f.message["after"] == last_next.get(entity), f"seed {SEED}: {f.message} after {last_next}"
    assert any(s["after"] is not None for s in streams), f"seed {SEED}: no cut in the middle of an entity: {streams}"
    # Each record arrived once, and the device holds exactly the server's records.
    delivered: Counter[tuple[str, str]] = Counter()
    keys = primary_ids(page)
    for answer in proxy.received("rows"):
        entity = answer["entity"]
        delivered.update((entity, r[keys[entity]]) for r in stream.decode(answer))
    assert set(delivered.values()) == {1}, f"a record was downloaded twice (seed {SEED})"
    assert sum(1 for e, _ in delivered if e == "account") >= EXTRA_ACCOUNTS
    want = server_view(live_server, "east1", keys)
    assert device_view(page) == want, f"seed {SEED}"
    assert {(e, i) for e, ids in want.items() for i in ids} == set(delivered), f"seed {SEED}"
