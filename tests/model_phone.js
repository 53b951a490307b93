// @ts-check
/**
 * The sync model's phones (tests/model_phone.py): each one a real device store (store.js,
 * records.js, queue.js, viewcache.js, rules.js) in its own IndexedDB database. This file holds
 * no rule of its own: it calls the store as sync.js does and reports what the store then holds.
 * Calls come in batches (`batch`): one round trip from Python costs more than the store's work.
 */
import { ERRORS, META, QUEUE, RECORDS, getAll, openDB, promised, transact } from "/static/js/idb.js";
import { Store } from "/static/js/store.js";

/** @type {Map<string, Store>} */
const phones = new Map();
/** Emptied databases, for the next new store: creating an IndexedDB database takes ~0.4 s, emptying one ~1 ms. @type {IDBDatabase[]} */
const spare = [];
let opened = 0;
/** The customizations document every new store takes (sent once: it is 100 KB). @type {any} */
let doc = null;

/** Keep the customizations document for the stores opened next. @param {any} customizations */
export function useDoc(customizations) {
  doc = customizations;
}

/** Empty a store's database (every object store) and keep it for the next phone. @param {Store} store */
async function recycle(store) {
  const stores = [RECORDS, QUEUE, META, ERRORS];
  await transact(store.db, stores, "readwrite", async (tx) => {
    for (const name of stores) await promised(tx.objectStore(name).clear());
  });
  spare.push(store.db);
}

/** @param {string} name */
function phone(name) {
  const store = phones.get(name);
  if (!store) throw new Error(`no phone ${name}`);
  return store;
}

/**
 * What the store holds now: per entity, the views the user sees (through the store, so from the
 * views kept in memory), the views and server states of the rows in IndexedDB, and the queued
 * ops' local effects in seq order.
 * @param {Store} store @param {string[]} entities
 */
async function snapshot(store, entities) {
  /** @type {Record<string, any[]>} */
  const views = {};
  for (const entity of entities) views[entity] = await store.all(entity);
  const rows = await transact(store.db, [RECORDS], "readonly", (tx) => getAll(tx.objectStore(RECORDS)));
  /** @type {Record<string, Record<string, any>>} */
  const stored = {};
  /** @type {Record<string, Record<string, any>>} */
  const held = {};
  for (const row of rows) {
    if (row.view) (stored[row.entity] ??= {})[row.id] = row.view;
    if (row.server) (held[row.entity] ??= {})[row.id] = row.server;
  }
  const ops = (await store.pending(2 ** 32 - 1)).map((op) => ({ seq: op.seq, effects: op.effects ?? [] }));
  return { views, stored, held, ops };
}

/**
 * A phone's new store: a new `Store` (nothing kept in memory) on an empty database of its own.
 * @param {string} name @param {{id: string, username: string, business_unit_id?: string}} user
 */
export async function open(name, user) {
  const db = spare.pop() ?? (await openDB(`sync-model-${(opened += 1)}`));
  const store = new Store(db, "model", user);
  store.useCustomizations(doc);
  phones.set(name, store);
}

/** Every phone's store goes (a new run). */
export async function reset() {
  for (const store of phones.values()) await recycle(store);
  phones.clear();
}

/** One phone's store goes (reconfigured). @param {string} name */
export async function destroy(name) {
  await recycle(phone(name));
  phones.delete(name);
}

/**
 * A user's write: `store.write`, as the forms and commands call it.
 * @param {string} name
 * @param {[any, string, string, Record<string, any>, any]} args kind, entity, id, changes, extra
 */
export async function write(name, args) {
  await phone(name).write(...args);
}

/**
 * The first `limit` queued ops in their wire form (the fields sync.js `wireBatch` sends).
 * @param {string} name @param {number} limit
 */
export async function pending(name, limit) {
  const ops = await phone(name).pending(limit);
  return ops.map((op) => {
    /** @type {Record<string, any>} */
    const wire = { op_id: op.op_id, seq: op.seq, kind: op.kind, entity: op.entity, id: op.id, base_version: op.base_version, changes: op.changes };
    if (op.command) Object.assign(wire, { command: op.command, args: op.args });
    return wire;
  });
}

/**
 * Frames from the server, in order, each applied as sync.js applies it: an ack (`applyAck`), a
 * changes frame (`applyServer` then `applyRemoves`) or a download page (`applyServer`).
 * @param {string} name @param {any[]} frames
 */
export async function read(name, frames) {
  const store = phone(name);
  for (const frame of frames) {
    if (frame.type === "ack") await store.applyAck(frame.results);
    else if (frame.type === "changes") {
      await store.applyServer(frame.upserts || []);
      await store.applyRemoves(frame.removes || []);
    } else if (frame.type === "page") await store.applyServer(frame.records.map((/** @type {any} */ record) => ({ entity: frame.entity, record })));
    else throw new Error(`unexpected frame ${frame.type}`);
  }
}

/** The sync errors the store keeps (newest first). @param {string} name */
export async function errors(name) {
  return phone(name).errors();
}

const CALLS = { useDoc, open, reset, destroy, write, pending, read, errors };

/**
 * Run calls in order, each followed by a report of what its phone's store then holds when it
 * names one (`entities` given): every state the store passes through can be checked.
 * @param {[keyof CALLS, any[], string|null, string[]|null][]} calls function, arguments, phone, entities to report
 */
export async function batch(calls) {
  const results = [];
  const states = [];
  for (const [fn, args, name, entities] of calls) {
    results.push(await /** @type {(...a: any[]) => any} */ (CALLS[fn])(...args));
    if (name && entities) states.push([name, await snapshot(phone(name), entities)]);
  }
  return { results, states };
}
