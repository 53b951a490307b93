// @ts-check
/**
 * The device store of one (organisation, user): what screens, the sync loop and the offline
 * client APIs call. It puts the thin layers together and tells listeners what changed:
 *
 *   idb.js      the IndexedDB schema and transactions (shared with the service worker)
 *   codec.js    values as stored: plain, or sealed under the app PIN (vault.js holds the keys)
 *   records.js  records: the server's state, the pending view, rebase, acks
 *   viewcache.js  the views kept in memory (every record, and each query's sorted result),
 *               patched record by record as they change
 *   queue.js    the operation queue (add, peek in order, ack, count) and sync errors
 *   search.js   the quick-find index
 *   meta.js     settings by key, and the wrapped data key
 *   rules.js    the server's record rules the device mirrors (derived fields, labels, states)
 *
 * The store holds the metadata (customizations) and the lock state: with the app PIN on, it
 * opens locked and nothing is read until `unlock`.
 */
import { LOCKED, PLAIN, SealedCodec } from "./codec.js";
import { ERRORS, META, QUEUE, RECORDS, dbName, deleteDB, getAll, openDB, promised, transact } from "./idb.js";
import * as meta from "./meta.js";
import * as queue from "./queue.js";
import { Records, uuid } from "./records.js";
import { applyEffect, newView, nowIso, parseBind, setWire } from "./rules.js";
import { SEARCH_LIMIT, SearchIndex, normalise, primaryName, tokens } from "./search.js";
import { MAX_ATTEMPTS, Vault, WrongPin, unwrap, wrap } from "./vault.js";
import { ViewCache } from "./viewcache.js";

export { destroyStore } from "./meta.js";
export { normalise, nowIso, primaryName, uuid };

/**
 * @typedef {import("./rules.js").EntityMeta} EntityMeta
 * @typedef {import("./queue.js").Op} Op
 */

export class Store {
  /**
   * @param {IDBDatabase} db
   * @param {string} org
   * @param {{id: string, username: string, business_unit_id?: string}} user
   */
  constructor(db, org, user) {
    this.db = db;
    this.org = org;
    this.user = user;
    /** @type {any} */
    this.customizations = null;
    /** @type {Record<string, EntityMeta>} */
    this.entities = {};
    /** @type {Record<string, EntityMeta>} */
    this.bySet = {};
    /** @type {Set<(change: {entities: string[]}) => void>} */
    this.listeners = new Set();
    this.generation = 0; // moves on every change, so a read that raced a write is not cached
    /** How values are stored: plain, sealed (unlocked), or locked. @type {import("./codec.js").Codec} */
    this.codec = PLAIN;
    /** The views kept in memory, patched on each change (viewcache.js). */
    this.views = new ViewCache(this);
    this.records = new Records(this);
    this.searchIndex = new SearchIndex(this);
  }

  /**
   * Open the store of one (organisation, user).
   * @param {string} org
   * @param {{id: string, username: string, business_unit_id?: string}} user
   */
  static async open(org, user) {
    const store = new Store(await openDB(dbName(org, user.id)), org, user);
    if (await meta.wrapping(store.db)) {
      store.codec = LOCKED; // the PIN opens it (unlock); nothing else is read until then
      return store;
    }
    const doc = await store.getMeta("customizations", null);
    if (doc) store.useCustomizations(doc);
    return store;
  }

  // --- the vault (app PIN) ---------------------------------------------------------------

  /** Whether this store is encrypted (locked or not). */
  get encrypted() {
    return this.codec.sealed;
  }

  /** Encrypted, and the PIN not given yet: nothing may be read. */
  get locked() {
    return this.codec === LOCKED;
  }

  /** The unlocked data key, or null. @returns {Vault|null} */
  get vault() {
    return this.codec instanceof SealedCodec ? this.codec.vault : null;
  }

  /** The wrapped data key, or null when the store is not encrypted. */
  wrapping() {
    return meta.wrapping(this.db);
  }

  /**
   * Unlock with the PIN. A wrong PIN counts (before the slow check, so closing the app does not
   * dodge it); after MAX_ATTEMPTS wrong ones in a row the wrapped key is deleted and only a
   * reset with the server's copy opens the store again.
   * @param {string} pin
   */
  async unlock(pin) {
    const wrapping = await this.wrapping();
    if (!wrapping) throw new Error("This store has no PIN.");
    if (!wrapping.wrapped) throw Object.assign(new Error("Too many wrong PINs. Connect to the internet and reset the PIN."), { code: "reset_needed" });
    const failures = wrapping.failures + 1;
    await meta.putWrapping(this.db, { ...wrapping, failures });
    const vault = await unwrap(wrapping, pin);
    if (!vault) {
      const left = MAX_ATTEMPTS - failures;
      if (left <= 0) await meta.putWrapping(this.db, { ...wrapping, failures, wrapped: null });
      throw new WrongPin(left);
    }
    await meta.putWrapping(this.db, { ...wrapping, failures: 0 });
    await this.#opened(vault);
  }

  /** @param {Vault} vault */
  async #opened(vault) {
    this.codec = new SealedCodec(vault);
    const doc = await this.getMeta("customizations", null);
    if (doc) this.useCustomizations(doc);
  }

  /**
   * Encrypt this store under a data key wrapped by a new PIN: a new key (setting the PIN), or
   * the store's own key from the server (Forgot PIN), which must fit the store.
   * @param {Uint8Array<ArrayBuffer>} raw @param {string} pin
   */
  async setPin(raw, pin) {
    const vault = await Vault.fromRaw(raw);
    const current = await this.wrapping();
    if (current && !(await vault.fits(current))) throw new Error("The server's key does not open this device's data; reconfigure the device.");
    const wrapping = await wrap(raw, pin);
    if (!current) await this.#sealEverything(vault, wrapping);
    else await meta.putWrapping(this.db, wrapping);
    await this.#opened(vault);
  }

  /** Seal every value already stored (a store that had data before the PIN was turned on) and keep the wrapped key, in one transaction. @param {Vault} vault @param {import("./vault.js").Wrapping} wrapping */
  async #sealEverything(vault, wrapping) {
    const stores = [RECORDS, QUEUE, META, ERRORS];
    const rows = await transact(this.db, stores, "readonly", async (tx) => Promise.all(stores.map((name) => getAll(tx.objectStore(name)))));
    const codec = new SealedCodec(vault);
    this.codec = codec;
    const [records, ops, metas, errors] = rows;
    const sealed = [
      await Promise.all(records.map((r) => codec.sealRecord(r))),
      await Promise.all(ops.map((op) => codec.sealOp(op))),
      await Promise.all(metas.map((m) => codec.sealMeta(m.key, m.value))),
      await Promise.all(errors.map((e) => codec.sealError(e))),
    ];
    await transact(this.db, stores, "readwrite", async (tx) => {
      stores.forEach((name, i) => sealed[i].forEach((value) => tx.objectStore(name).put(value)));
      await promised(tx.objectStore(META).put({ key: meta.VAULT, value: wrapping }));
    });
  }

  /**
   * After unlocking: open every record of the offline entities and build their quick-find
   * indexes in the background, so the first list or search does not wait for the decryption.
   */
  async warm() {
    for (const e of this.offlineEntities()) {
      if (!this.vault) return; // locked or destroyed meanwhile
      await this.searchIndex.warm(e.logical_name);
    }
  }

  get name() {
    return dbName(this.org, this.user.id);
  }

  /** Close the database connection. */
  close() {
    this.db.close();
    this.codec.forget(); // the data key leaves memory with the store
  }

  /**
   * Delete this store and everything in it (Reconfigure, sign-out with clearing, wipe). The
   * wrapped key goes first, on its own: whatever the deletion leaves behind is unreadable.
   */
  async destroy() {
    if (this.encrypted) await meta.dropWrapping(this.db).catch(() => {});
    this.codec.forget();
    this.db.close();
    await deleteDB(this.name);
  }

  // --- listeners ---------------------------------------------------------------------------

  /** @param {(change: {entities: string[]}) => void} fn */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * These entities changed: patch the views kept of them with the records that changed (or,
   * without `changes`, as from another tab, forget them), and tell every listener.
   * @param {string[]} entities @param {import("./viewcache.js").Changes} [changes] the records touched, with their new views
   */
  notify(entities, changes) {
    const unique = [...new Set(entities)];
    this.generation += 1;
    const patched = this.views.apply(unique, changes);
    for (const name of unique) {
      const pairs = patched.get(name);
      if (pairs) this.searchIndex.patch(name, pairs);
      else this.searchIndex.changed(name);
    }
    for (const fn of this.listeners) {
      try {
        fn({ entities: unique });
      } catch (err) {
        console.error("store listener failed", err);
      }
    }
  }

  // --- meta and metadata -------------------------------------------------------------------

  /** @param {string} key @param {any} fallback */
  getMeta(key, fallback) {
    return meta.get(this.db, this.codec, key, fallback);
  }

  /** @param {string} key @param {any} value */
  setMeta(key, value) {
    return meta.set(this.db, this.codec, key, value);
  }

  /** This store's device id, minted on first use (a new store gets a new id). */
  async deviceId() {
    let id = await this.getMeta("device_id", null);
    if (!id) {
      id = uuid();
      await this.setMeta("device_id", id);
    }
    return id;
  }

  /** @param {any} doc the customizations document (GET /api/metadata) */
  useCustomizations(doc) {
    this.customizations = doc;
    this.entities = Object.fromEntries(doc.entities.map((/** @type {EntityMeta} */ e) => [e.logical_name, e]));
    this.bySet = Object.fromEntries(doc.entities.map((/** @type {EntityMeta} */ e) => [e.entity_set, e]));
  }

  /** The symbol of amounts in a record with no currency (the organisation's base currency). */
  get baseCurrencySymbol() {
    return this.customizations?.base_currency_symbol ?? "$";
  }

  /** @param {string} name */
  entity(name) {
    const e = this.entities[name];
    if (!e) throw Object.assign(new Error(`There is no entity '${name}' on this device.`), { errorCode: "unknown_entity" });
    return e;
  }

  /** Entities the device holds: offline-enabled in the profile and readable offline. */
  offlineEntities() {
    const profile = this.customizations?.offline_profile;
    if (!profile?.enabled) return [];
    return Object.values(this.entities).filter((e) => {
      if (!e.offline_commands.includes("read")) return false;
      if (e.logical_name === "activitypointer") return false;
      return Boolean(profile.entities?.[e.logical_name]?.enabled);
    });
  }

  activityTypes() {
    return Object.values(this.entities)
      .filter((e) => e.is_activity)
      .map((e) => e.logical_name);
  }

  /** @param {string} bind "/accounts(<id>)" */
  parseBind(bind) {
    return parseBind(this, bind);
  }

  /** @param {any} view @param {{kind: string, entity: string, id: string, changes: Record<string, any>}} effect @param {Record<string, string|null>} labels */
  applyEffect(view, effect, labels) {
    return applyEffect(this, view, effect, labels);
  }

  /** @param {EntityMeta} entityMeta @param {string} id */
  newView(entityMeta, id) {
    return newView(this, entityMeta, id);
  }

  /** @param {EntityMeta} entityMeta @param {Record<string, any>} view @param {string} key @param {any} value @param {Record<string, string|null>} labels */
  setWire(entityMeta, view, key, value, labels) {
    setWire(this, entityMeta, view, key, value, labels);
  }

  /** Search tokens of a view. @param {string} entity @param {any} view */
  tokens(entity, view) {
    return tokens(this.entities[entity], entity, view);
  }

  // --- records -------------------------------------------------------------------------------

  /** @param {string} entity @param {string} id */
  get(entity, id) {
    return this.records.get(entity, id);
  }

  /** Every record of an entity as the user sees it (activitypointer: every activity). @param {string} entity */
  all(entity) {
    return this.records.all(entity);
  }

  /** Record counts per entity (views only). */
  counts() {
    return this.records.counts();
  }

  /** The ids of an entity's records held from the server, sorted (records.js). @param {string} entity */
  heldIds(entity) {
    return this.records.heldIds(entity);
  }

  /**
   * The ids of an entity held from the server, read a bucket at a time (scope.js `answer`).
   * @param {string} entity
   * @returns {Promise<import("./scope.js").Held>}
   */
  async held(entity) {
    const local = await this.records.localOnly(entity);
    return {
      buckets: (depth) => this.records.heldBuckets(entity, depth, local),
      bucket: (prefix) => this.records.heldBucket(entity, prefix, local),
    };
  }

  /**
   * Prefix search over quick-find columns (and dates).
   * @param {string[]} entities @param {string} text @param {number} [limit]
   */
  search(entities, text, limit = SEARCH_LIMIT) {
    return this.searchIndex.search(entities, text, limit);
  }

  /**
   * Apply a user's change locally and queue its operation, in one transaction (records.js).
   * @param {"create"|"update"|"delete"|"command"} kind @param {string} entity @param {string} id
   * @param {Record<string, any>} changes
   * @param {{command?: string, args?: any, effects?: {kind: string, entity: string, id: string, changes: Record<string, any>}[]}} [extra]
   * @returns {Promise<{op: Op, view: any}>}
   */
  async write(kind, entity, id, changes, extra = {}) {
    this.entity(entity);
    const result = await this.records.write(kind, entity, id, changes, extra);
    this.notify(result.touched.entities, result.touched);
    return { op: result.op, view: result.view };
  }

  /**
   * Records the server sent: keep the newer version and rebase.
   * @param {{entity: string, record: any}[]} items @param {Set<string>} [replace] entities replaced even at the same version
   */
  async applyServer(items, replace) {
    if (!items.length) return;
    const changes = await this.records.applyServer(items, replace);
    this.notify(changes.entities, changes);
  }

  /** Records that left the device. @param {{entity: string, id: string}[]} removes */
  async applyRemoves(removes) {
    if (!removes.length) return;
    const changes = await this.records.applyRemoves(removes);
    this.notify(changes.entities, changes);
  }

  /** An ack: each result drops its op and brings the server's records. @param {any[]} results */
  async applyAck(results) {
    const changes = await this.records.applyAck(results);
    this.notify(changes.entities, changes);
  }

  /** Replace every record of an entity (a fresh first download of it). @param {string} entity */
  async clearEntity(entity) {
    this.generation += 1;
    this.searchIndex.drop(entity);
    await this.records.clearEntity(entity);
  }

  // --- the queue -------------------------------------------------------------------------------

  /** The first `limit` pending operations after seq `after` (0: from the start), in seq order. @param {number} limit @param {number} [after] */
  pending(limit, after = 0) {
    return queue.peek(this.db, this.codec, limit, after);
  }

  pendingCount() {
    return queue.count(this.db);
  }

  /** Sync errors, newest first. */
  errors() {
    return queue.errors(this.db, this.codec);
  }

  /** Forget a sync error (Discard). @param {string} opId */
  discardError(opId) {
    return queue.discardError(this.db, opId);
  }
}
