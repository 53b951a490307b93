"""The views the device keeps in memory stay identical to a fresh computation as records change.

webapp/static/js/viewcache.js patches the kept records of an entity and each query's sorted
result record by record instead of throwing them away (issue #14). This differential test drives
the real store (store.js, records.js, the real IndexedDB) in a real Chromium through a seeded
random sequence of server pages, local creates / updates / deletes, acks (applied and rejected)
and removes, on accounts and on tasks (seen through activitypointer too), and after every step
compares, for several system views, the first page, the next page and the whole result from
`Data.query` (kept and patched) with `runQuery` over the records read afresh from IndexedDB, and
quick find (an index in memory when sealed, patched alike) with an index built afresh.
It runs plain and with the store sealed under a PIN. It also checks that small changes were
patched in (the kept sorted result survived) and large ones rebuilt, so it tests the patching.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Page

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

SEED = 1414
STEPS = 70

OPEN = """
async ({doc, name, pin}) => {
  const {Store} = await import('/static/js/store.js');
  const {Data} = await import('/static/js/data.js');
  const {Records} = await import('/static/js/records.js');
  const {ViewCache} = await import('/static/js/viewcache.js');
  const {SearchIndex} = await import('/static/js/search.js');
  const odata = await import('/static/js/odata.js');
  const store = await Store.open(name, {id: '00000000-0000-4000-8000-00000000abcd', username: 'views'});
  store.useCustomizations(doc);
  if (pin) await store.setPin(crypto.getRandomValues(new Uint8Array(32)), pin);
  const data = new Data(store, {status: {offlineReady: true}, kick() {}});
  window.__vc = {store, data, Records, ViewCache, SearchIndex, odata};
  return store.encrypted;
}
"""

# One step, then the comparison: returns what differs (or null) and whether the kept sorted
# results of the changed entity survived the step (patched) or were dropped (rebuilt).
STEP = """
async ({step, views}) => {
  const {store, data, Records, ViewCache, SearchIndex, odata} = window.__vc;
  const kept = (entity) => [...(store.views.sorted.get(entity)?.values() || [])].map((v) => v.sorted);
  const before = {account: kept('account'), task: kept('task'), activitypointer: kept('activitypointer')};
  if (step.kind === 'server') await store.applyServer(step.records.map((record) => ({entity: step.entity, record})));
  else if (step.kind === 'remove') await store.applyRemoves(step.ids.map((id) => ({entity: step.entity, id})));
  else if (step.kind === 'write') {
    // The sequence does not follow which records exist: an update or delete of one gone creates it.
    const there = await store.get(step.entity, step.id);
    const op = step.op === 'create' || !there ? (there ? 'update' : 'create') : step.op;
    const field = step.entity === 'account' ? 'name' : 'subject';
    await store.write(op, step.entity, step.id, op === 'delete' ? {} : {[field]: 'x', ...step.changes});
  }
  else if (step.kind === 'ack') {
    const ops = await store.pending(step.count);
    const results = ops.map((op) => {
      const meta = store.entities[op.entity];
      const result = {seq: op.seq, op_id: op.op_id, status: step.status};
      if (step.status === 'applied' && op.kind !== 'delete') {
        const record = {...step.template, [meta.primary_id]: op.id, versionnumber: step.version};
        for (const field of ['name', 'subject']) if (op.changes[field]) record[field] = op.changes[field];
        result.records = [{entity: op.entity, record}];
      }
      if (step.status === 'applied' && op.kind === 'delete') result.removed = [{entity: op.entity, id: op.id}];
      return result;
    });
    await store.applyAck(results);
  }
  const survived = {};
  for (const [entity, arrays] of Object.entries(before)) {
    const now = kept(entity);
    survived[entity] = arrays.length > 0 && arrays.every((a) => now.includes(a));
  }
  // A fresh computation: the records read again from IndexedDB (nothing kept), sorted afresh.
  const fresh = new Records(Object.assign(Object.create(store), {views: new ViewCache(store)}));
  const problems = [];
  // Quick find (in memory when sealed, patched like the views) against an index built afresh.
  const search = new SearchIndex(Object.assign(Object.create(store), {all: (entity) => fresh.all(entity)}));
  const typed = [['account', 'a'], ['account', 'ze'], ['account', 'Émile'], ['task', 'b'], ['task', 'ka']];
  for (const [entity, text] of typed) {
    const got = JSON.stringify(await store.search([entity], text, 50));
    const want = JSON.stringify(await search.search([entity], text, 50));
    if (got !== want) problems.push(`search ${entity} '${text}' differs`);
  }
  for (const entity of ['account', 'task']) {
    const got = await store.all(entity);
    const want = await fresh.all(entity);
    const same = JSON.stringify(got) === JSON.stringify(want);
    if (!same) problems.push(`all(${entity}): ${got.length} kept vs ${want.length} read`);
  }
  for (const {entity, options, size} of views) {
    const meta = store.entities[entity];
    const records = await fresh.all(entity);
    const run = {entities: store.entities, userId: store.user.id};
    const computed = (opts, max) => odata.runQuery(records, opts, meta, {...run, maxPageSize: max}).value;
    const check = (what, got, want) => {
      if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${entity} ${options}: ${what} differs`);
    };
    check('the whole result', (await data.query(entity, options, 1000000)).entities, computed(options, 1000000));
    const first = await data.query(entity, options, size);
    check('the first page', first.entities, computed(options, size));
    if (first.nextSkip !== null) {
      const next = odata.nextPageOptions(options, first.nextSkip);
      check('the next page', (await data.query(entity, next, size)).entities, computed(next, size));
    }
  }
  const sizes = {account: (await store.all('account')).length, task: (await store.all('task')).length};
  return {problems, survived, sizes};
}
"""

VIEWS = [
    {"entity": "account", "options": "$select=name,address1_city&$filter=statecode eq 0&$orderby=name asc", "size": 7},
    {"entity": "account", "options": "$orderby=revenue desc,name asc", "size": 5},
    {"entity": "account", "options": "$filter=contains(name,'a')&$orderby=address1_city asc", "size": 6},
    {"entity": "account", "options": "$select=name", "size": 9},
    {"entity": "task", "options": "$orderby=subject asc", "size": 4},
    {"entity": "activitypointer", "options": "$select=subject&$orderby=subject desc", "size": 5},
]

WORDS = ["alpha", "Beta", "gamma", "ÄRGER", "delta", "apple", "Zebra", "zebra", "omega", "Émile", "", "kappa"]
CITIES = ["Oslo", "oslo", "Zürich", None, "Bergen", "Åre"]


class World:
    """The ids the sequence knows, and the next server version."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: dict[str, list[str]] = {"account": [], "task": []}
        self.version = 1000

    def name(self) -> str:
        return f"{self.rng.choice(WORDS)} {self.rng.randrange(30)}".strip()

    def record(self, entity: str, rid: str) -> dict[str, Any]:
        self.version += 1
        if entity == "account":
            return {
                "accountid": rid,
                "name": self.name() if self.rng.random() > 0.05 else None,
                "address1_city": self.rng.choice(CITIES),
                "revenue": self.rng.choice([None, 0, 7, 1000, 1000.5, self.rng.randrange(100_000)]),
                "statecode": self.rng.choice([0, 0, 0, 1]),
                "versionnumber": self.version,
            }
        return {"activityid": rid, "subject": self.name(), "activitytypecode": "task", "versionnumber": self.version}

    def server_page(self, entity: str, count: int) -> dict[str, Any]:
        known = self.ids[entity]
        records = []
        for _ in range(count):
            if known and self.rng.random() < 0.5:
                rid = self.rng.choice(known)
            else:
                rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                known.append(rid)
            records.append(self.record(entity, rid))
        return {"kind": "server", "entity": entity, "records": records}

    def step(self) -> dict[str, Any]:
        entity = self.rng.choice(["account", "account", "task"])
        known = self.ids[entity]
        roll = self.rng.random()
        if roll < 0.30:
            # mostly patched (a few records), now and then rebuilt (more than PATCH_MIN and 1%)
            return self.server_page(entity, self.rng.choice([1, 1, 2, 3, 5, 40]))
        if roll < 0.45 and known:
            return {"kind": "remove", "entity": entity, "ids": self.rng.sample(known, min(len(known), 2))}
        if roll < 0.85:
            op = self.rng.choice(["create", "update", "update", "delete"]) if known else "create"
            field = "name" if entity == "account" else "subject"
            if op == "create":
                rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                known.append(rid)
                return {"kind": "write", "op": op, "entity": entity, "id": rid, "changes": {field: self.name()}}
            changes = {field: self.name()} if op == "update" else {}
            if op == "update" and entity == "account" and self.rng.random() < 0.5:
                changes["revenue"] = self.rng.randrange(5000)
            return {"kind": "write", "op": op, "entity": entity, "id": self.rng.choice(known), "changes": changes}
        self.version += 1
        template = self.record(entity, "")
        return {
            "kind": "ack",
            "count": self.rng.choice([1, 1, 3]),
            "status": self.rng.choice(["applied", "applied", "rejected"]),
            "template": template,
            "version": self.version,
        }


@pytest.mark.parametrize("pin", [None, "246810"], ids=["plain", "encrypted"])
def test_kept_views_equal_a_fresh_computation_after_every_change(
    live_server: LiveServer, phone_page: Page, pin: str | None
) -> None:
    api = live_server.client("admin")
    doc = api.get("/api/metadata").json
    phone_page.goto("/")
    encrypted = phone_page.evaluate(OPEN, {"doc": doc, "name": f"views-{pin or 'plain'}", "pin": pin})
    assert encrypted is bool(pin)
    world = World(random.Random(SEED))
    steps = [world.server_page("account", 300), world.server_page("task", 60)]
    steps += [world.step() for _ in range(STEPS)]
    patched = rebuilt = 0
    for number, step in enumerate(steps):
        result = phone_page.evaluate(STEP, {"step": step, "views": VIEWS})
        assert not result["problems"], (number, {k: v for k, v in step.items() if k != "records"}, result["problems"])
        if step["kind"] == "server" and number >= 2:
            entity = step["entity"]
            size = result["sizes"][entity]
            if result["survived"][entity]:
                patched += 1
                assert len(step["records"]) <= max(16, size // 100), (number, len(step["records"]), size)
            else:
                rebuilt += 1
                assert len(step["records"]) > max(16, size // 100), (number, len(step["records"]), size)
    assert patched >= 5 and rebuilt >= 1, (patched, rebuilt)
