// @ts-check
/**
 * The device store: server state plus pending operations (DESIGN.md §5).
 *
 * Each record keeps `server` (the last state the server confirmed, with its version) and
 * `view` (what the user sees) = server + the still-pending operations, applied in order. A
 * local write stores the new view and its operation in ONE transaction. A server change
 * rebases: the confirmed state moves and the pending operations are applied again on top,
 * so an incoming change never hides an unsynced edit. An ack drops the operation and takes
 * the server's record; a rejected operation is dropped the same way, which rolls its local
 * effect back to the server's state.
 *
 * Encryption at rest (DESIGN.md §6, the app PIN): with a vault, every value is sealed on its
 * way into IndexedDB and opened on its way out, here and nowhere else. What stays readable is
 * what IndexedDB must index and cannot hide: record keys (entity, id) and pending counts, op
 * seq numbers and the "entity|id" pairs they touch, meta keys, error ids and seqs, and three
 * meta values that are not user data (the wrapped key, the device id, the next seq). The
 * search tokens index is left empty: quick find runs on an index built in memory after
 * unlock. Crypto inside a write transaction is awaited with `during` (idb.js), so each write
 * still commits as one transaction.
 */
import { ERRORS, META, QUEUE, RECORDS, dbName, deleteDB, during, getAll, openDB, promised, transact } from "./idb.js";
import { MAX_ATTEMPTS, Vault, WrongPin, unwrap, wrap } from "./vault.js";

const LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname";
const FORMATTED = "@OData.Community.Display.V1.FormattedValue";
const SEARCH_LIMIT = 50;
const VAULT = "vault"; // the meta row holding the wrapped data key
const PLAIN_META = new Set([VAULT, "device_id", "next_seq"]); // read before unlocking, or inside a write
const REINDEX_DELAY_MS = 300; // after the last change, rebuild a stale in-memory index (encrypted stores)

/**
 * @typedef {{logical_name: string, entity_set: string, primary_id: string, primary_name: string,
 *   ownership: string, attributes: any[], quick_find: string[], offline_commands: string[],
 *   views: any[], form: any, related: any[], is_activity?: boolean, display_name: string,
 *   display_collection_name: string}} EntityMeta
 * @typedef {{op_id: string, seq: number, kind: string, entity: string, id: string,
 *   base_version: number|null, changes: Record<string, any>, command?: string, args?: any,
 *   created_at: string, labels?: Record<string, string|null>, effects?: any[], touches?: string[]}} Op
 */

/** A fresh lower-case UUID. */
export function uuid() {
  return crypto.randomUUID();
}

/** Now, as the wire format writes datetimes. */
export function nowIso() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

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
    /** Views by entity, kept until that entity changes (lists and queries read them often). @type {Map<string, any[]>} */
    this.cache = new Map();
    this.generation = 0; // moves on every change, so a read that raced a write is not cached
    /** Seals and opens values when the store is encrypted and unlocked. @type {Vault|null} */
    this.vault = null;
    this.locked = false; // encrypted, and the PIN not given yet: nothing may be read
    /** Quick-find tokens in memory, by entity (encrypted stores). @type {Map<string, {keys: string[], views: any[]}>} */
    this.searchIndex = new Map();
    /**
     * Records opened (or sealed) in this session, by "entity|id", with the IV of their sealed
     * value: a value is sealed with a fresh IV each time, so an unchanged IV means an unchanged
     * record and it need not be decrypted again. @type {Map<string, {iv: string, row: any}>}
     */
    this.opened = new Map();
    /** Quick-find tokens of each view object (encrypted stores). @type {WeakMap<object, string[]>} */
    this.tokenCache = new WeakMap();
    /** Entities whose in-memory index is rebuilt soon. @type {Set<string>} */
    this.stale = new Set();
    this.reindexTimer = 0;
  }

  /**
   * Open the store of one (organisation, user).
   * @param {string} org
   * @param {{id: string, username: string, business_unit_id?: string}} user
   */
  static async open(org, user) {
    const store = new Store(await openDB(dbName(org, user.id)), org, user);
    if (await store.wrapping()) {
      store.locked = true; // the PIN opens it (unlock); nothing else is read until then
      return store;
    }
    const doc = await store.getMeta("customizations", null);
    if (doc) store.useCustomizations(doc);
    return store;
  }

  // --- the vault (app PIN) ---------------------------------------------------------------

  /** Whether this store is encrypted (locked or not). */
  get encrypted() {
    return this.locked || this.vault !== null;
  }

  /** The wrapped data key, or null when the store is not encrypted. @returns {Promise<import("./vault.js").Wrapping|null>} */
  async wrapping() {
    const row = await transact(this.db, [META], "readonly", (tx) => promised(tx.objectStore(META).get(VAULT)));
    return row?.value ?? null;
  }

  /** @param {import("./vault.js").Wrapping} wrapping */
  async #putWrapping(wrapping) {
    await transact(this.db, [META], "readwrite", (tx) => promised(tx.objectStore(META).put({ key: VAULT, value: wrapping })));
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
    await this.#putWrapping({ ...wrapping, failures });
    const vault = await unwrap(wrapping, pin);
    if (!vault) {
      const left = MAX_ATTEMPTS - failures;
      if (left <= 0) await this.#putWrapping({ ...wrapping, failures, wrapped: null });
      throw new WrongPin(left);
    }
    await this.#putWrapping({ ...wrapping, failures: 0 });
    await this.#opened(vault);
  }

  /** @param {Vault} vault */
  async #opened(vault) {
    this.vault = vault;
    this.locked = false;
    const doc = await this.getMeta("customizations", null);
    if (doc) this.useCustomizations(doc);
  }

  /**
   * Encrypt this store under a data key wrapped by a new PIN: a new key (setting the PIN), or
   * the store's own key from the server (Forgot PIN), which must fit the store.
   * @param {Uint8Array} raw @param {string} pin
   */
  async setPin(raw, pin) {
    const vault = await Vault.fromRaw(raw);
    const current = await this.wrapping();
    if (current && !(await vault.fits(current))) throw new Error("The server's key does not open this device's data; reconfigure the device.");
    const wrapping = await wrap(raw, pin);
    if (!current) await this.#sealEverything(vault, wrapping);
    else await this.#putWrapping(wrapping);
    await this.#opened(vault);
  }

  /** Seal every value already stored (a store that had data before the PIN was turned on) and keep the wrapped key, in one transaction. @param {Vault} vault @param {import("./vault.js").Wrapping} wrapping */
  async #sealEverything(vault, wrapping) {
    const stores = [RECORDS, QUEUE, META, ERRORS];
    const rows = await transact(this.db, stores, "readonly", async (tx) => Promise.all(stores.map((name) => getAll(tx.objectStore(name)))));
    this.vault = vault;
    const [records, ops, metas, errors] = rows;
    const sealed = [
      await Promise.all(records.map((r) => this.#sealRecord(r))),
      await Promise.all(ops.map((op) => this.#sealOp(op))),
      await Promise.all(metas.map((m) => this.#sealMeta(m.key, m.value))),
      await Promise.all(errors.map((e) => this.#sealError(e))),
    ];
    await transact(this.db, stores, "readwrite", async (tx) => {
      stores.forEach((name, i) => sealed[i].forEach((value) => tx.objectStore(name).put(value)));
      await promised(tx.objectStore(META).put({ key: VAULT, value: wrapping }));
    });
  }

  /** The vault, or an error when the store is locked. */
  #key() {
    if (!this.vault) throw Object.assign(new Error("The device store is locked: unlock it with the PIN."), { code: "locked" });
    return this.vault;
  }

  /** A records row as stored: sealed when encrypted. @param {any} row */
  async #sealRecord(row) {
    if (!this.vault) return row;
    const { entity, id, server, view, pending } = row;
    const body = view === server ? { server, same: true } : { server, view };
    const version = server?.versionnumber ?? null; // readable, so a download need not decrypt to compare
    const sealed = await this.vault.seal(body, `records|${entity}|${id}`);
    this.opened.set(`${entity}|${id}`, { iv: ivOf(sealed), row: { entity, id, pending, server, view, tokens: [] } });
    return { entity, id, pending, version, tokens: [], sealed };
  }

  /** A records row as the code uses it. @param {any} raw */
  async #openRecord(raw) {
    if (!raw?.sealed) return raw;
    const key = `${raw.entity}|${raw.id}`;
    const iv = ivOf(raw.sealed);
    const known = this.opened.get(key);
    if (known && known.iv === iv && this.vault) return known.row;
    const body = await this.#key().open(raw.sealed, `records|${raw.entity}|${raw.id}`);
    const row = { entity: raw.entity, id: raw.id, pending: raw.pending, server: body.server, view: body.same ? body.server : body.view, tokens: [] };
    this.opened.set(key, { iv, row });
    return row;
  }

  /** An encrypted store's quick-find index went stale: build it again in the background, once changes settle. @param {string} entity */
  #reindexSoon(entity) {
    this.stale.add(entity);
    clearTimeout(this.reindexTimer);
    this.reindexTimer = setTimeout(() => {
      const names = [...this.stale];
      this.stale.clear();
      (async () => {
        for (const name of names) if (this.vault) await this.#searchMemory(name, "", 0);
      })().catch((err) => console.warn("rebuilding the search index", err));
    }, REINDEX_DELAY_MS);
  }

  /**
   * After unlocking: open every record of the offline entities and build their quick-find
   * indexes in the background, so the first list or search does not wait for the decryption.
   */
  async warm() {
    for (const e of this.offlineEntities()) {
      if (!this.vault) return; // locked or destroyed meanwhile
      await this.#searchMemory(e.logical_name, "", 0);
    }
  }

  /** @param {Op} op */
  async #sealOp(op) {
    if (!this.vault) return op;
    return { seq: op.seq, touches: op.touches, sealed: await this.vault.seal(op, `queue|${op.seq}`) };
  }

  /** @param {any} raw @returns {Promise<Op>} */
  async #openOp(raw) {
    if (!raw?.sealed) return raw;
    return this.#key().open(raw.sealed, `queue|${raw.seq}`);
  }

  /** @param {string} key @param {any} value */
  async #sealMeta(key, value) {
    if (!this.vault || PLAIN_META.has(key)) return { key, value };
    return { key, sealed: await this.vault.seal(value, `meta|${key}`) };
  }

  /** @param {any} error a sync error row */
  async #sealError(error) {
    if (!this.vault) return error;
    return { op_id: error.op_id, seq: error.seq, sealed: await this.vault.seal(error, `errors|${error.op_id}`) };
  }

  /** A records row inside a transaction, opened. @param {IDBTransaction} tx @param {string} entity @param {string} id */
  async #row(tx, entity, id) {
    const raw = await promised(tx.objectStore(RECORDS).get([entity, id]));
    return raw?.sealed ? during(tx, this.#openRecord(raw)) : raw;
  }

  /** Store a records row inside a transaction. @param {IDBTransaction} tx @param {any} row */
  async #putRow(tx, row) {
    await promised(tx.objectStore(RECORDS).put(this.vault ? await during(tx, this.#sealRecord(row)) : row));
  }

  get name() {
    return dbName(this.org, this.user.id);
  }

  /** Close the database connection. */
  close() {
    this.db.close();
    this.vault = null; // the data key leaves memory with the store
    this.opened.clear();
  }

  /**
   * Delete this store and everything in it (Reconfigure, sign-out with clearing, wipe). The
   * wrapped key goes first, on its own: whatever the deletion leaves behind is unreadable.
   */
  async destroy() {
    if (this.encrypted) await transact(this.db, [META], "readwrite", (tx) => promised(tx.objectStore(META).delete(VAULT))).catch(() => {});
    this.vault = null;
    this.opened.clear();
    this.db.close();
    await deleteDB(this.name);
  }

  /** @param {(change: {entities: string[]}) => void} fn */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** @param {string[]} entities */
  notify(entities) {
    const unique = [...new Set(entities)];
    this.generation += 1;
    for (const name of unique) {
      this.cache.delete(name);
      if (this.searchIndex.delete(name)) this.#reindexSoon(name);
      if (this.entities[name]?.is_activity) this.cache.delete("activitypointer");
    }
    for (const fn of this.listeners) {
      try {
        fn({ entities: unique });
      } catch (err) {
        console.error("store listener failed", err);
      }
    }
  }

  // --- meta ---------------------------------------------------------------------------

  /** @param {string} key @param {any} fallback */
  async getMeta(key, fallback) {
    const row = await transact(this.db, [META], "readonly", (tx) => promised(tx.objectStore(META).get(key)));
    if (row === undefined) return fallback;
    return row.sealed ? this.#key().open(row.sealed, `meta|${key}`) : row.value;
  }

  /** @param {string} key @param {any} value */
  async setMeta(key, value) {
    const row = await this.#sealMeta(key, value);
    await transact(this.db, [META], "readwrite", (tx) => promised(tx.objectStore(META).put(row)));
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

  // --- reads --------------------------------------------------------------------------

  /** @param {string} entity @param {string} id */
  async get(entity, id) {
    const row = await transact(this.db, [RECORDS], "readonly", (tx) => promised(tx.objectStore(RECORDS).get([entity, id])));
    return (await this.#openRecord(row))?.view ?? null;
  }

  /** Every record of an entity as the user sees it (activitypointer: every activity). @param {string} entity */
  async all(entity) {
    const cached = this.cache.get(entity);
    if (cached) return cached.slice();
    const names = entity === "activitypointer" ? this.activityTypes() : [entity];
    const generation = this.generation;
    const rows = await transact(this.db, [RECORDS], "readonly", async (tx) => {
      const index = tx.objectStore(RECORDS).index("entity");
      /** @type {any[]} */
      let all = [];
      // concat, not push(...rows): spreading 200,000 rows as arguments overflows the call stack
      for (const name of names) all = all.concat(await getAll(index, name));
      return all;
    });
    const opened = this.encrypted ? await Promise.all(rows.map((row) => this.#openRecord(row))) : rows;
    const out = [];
    for (const row of opened) if (row.view) out.push(row.view);
    if (generation === this.generation) this.cache.set(entity, out);
    return out.slice();
  }

  activityTypes() {
    return Object.values(this.entities)
      .filter((e) => e.is_activity)
      .map((e) => e.logical_name);
  }

  /** Record counts per entity (views only). */
  async counts() {
    return transact(this.db, [RECORDS], "readonly", async (tx) => {
      /** @type {Record<string, number>} */
      const out = {};
      const index = tx.objectStore(RECORDS).index("entity");
      for (const e of Object.values(this.entities)) out[e.logical_name] = await promised(index.count(e.logical_name));
      return out;
    });
  }

  /**
   * Prefix search over quick-find columns (and dates) through the tokens index.
   * @param {string[]} entities @param {string} text @param {number} [limit]
   * @returns {Promise<{entity: string, record: any, rank: number}[]>}
   */
  async search(entities, text, limit = SEARCH_LIMIT) {
    const needle = normalise(text);
    if (!needle) return [];
    const names = entities.filter((name) => this.entities[name]);
    /** @type {Map<string, any[]>} the views whose tokens start with the needle, by entity */
    const found = new Map();
    if (this.encrypted) {
      for (const name of names) found.set(name, await this.#searchMemory(name, needle, limit * 4));
    } else {
      await transact(this.db, [RECORDS], "readonly", async (tx) => {
        const index = tx.objectStore(RECORDS).index("tokens");
        for (const name of names) {
          const prefix = `${name}|${needle}`;
          const rows = await getAll(index, IDBKeyRange.bound(prefix, `${prefix}\uffff`), limit * 4);
          found.set(name, rows.map((row) => row.view).filter(Boolean));
        }
      });
    }
    /** @type {Map<string, {entity: string, record: any, rank: number}>} */
    const hits = new Map();
    for (const [name, views] of found) {
      const meta = this.entities[name];
      for (const view of views) {
        const key = `${name}|${view[meta.primary_id]}`;
        const rank = rankOf(meta, view, needle);
        const seen = hits.get(key);
        if (!seen || seen.rank > rank) hits.set(key, { entity: name, record: view, rank });
      }
    }
    return [...hits.values()]
      .sort((a, b) => a.rank - b.rank || primaryName(this.entities[a.entity], a.record).localeCompare(primaryName(this.entities[b.entity], b.record)))
      .slice(0, limit);
  }

  /**
   * An encrypted store's quick find: the same tokens, sorted in memory (built from the
   * decrypted views at the first search after a change, kept until the entity changes).
   * @param {string} entity @param {string} needle @param {number} max
   */
  async #searchMemory(entity, needle, max) {
    let index = this.searchIndex.get(entity);
    if (!index) {
      const generation = this.generation;
      const views = await this.all(entity);
      /** "token\0position": the built-in sort orders by code unit, as IndexedDB compares keys. @type {string[]} */
      const entries = [];
      views.forEach((view, i) => {
        for (const token of this.#tokensOf(entity, view)) entries.push(`${token}\u0000${i}`);
      });
      entries.sort();
      index = { keys: entries, views: entries.map((e) => views[Number(e.slice(e.lastIndexOf("\u0000") + 1))]) };
      if (generation === this.generation) this.searchIndex.set(entity, index);
    }
    let lo = 0;
    let hi = index.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (index.keys[mid] < needle) lo = mid + 1;
      else hi = mid;
    }
    const out = [];
    for (let i = lo; i < index.keys.length && out.length < max && index.keys[i].startsWith(needle); i++) out.push(index.views[i]);
    return out;
  }

  // --- local writes -------------------------------------------------------------------

  /**
   * Apply a user's change locally and queue its operation, in one transaction.
   * @param {"create"|"update"|"delete"|"command"} kind
   * @param {string} entity
   * @param {string} id
   * @param {Record<string, any>} changes Web API form: attribute values and `x@odata.bind`
   * @param {{command?: string, args?: any, effects?: {kind: string, entity: string, id: string, changes: Record<string, any>}[]}} [extra]
   *   a command's local effects (each a create/update/delete on some record), all in this one op
   * @returns {Promise<{op: Op, view: any}>}
   */
  async write(kind, entity, id, changes, extra = {}) {
    this.entity(entity);
    const result = await transact(this.db, [RECORDS, QUEUE, META], "readwrite", async (tx) => {
      const meta = tx.objectStore(META);
      const row = (await this.#row(tx, entity, id)) || null;
      if (kind === "create" && row?.view) throw Object.assign(new Error(`A record with id ${id} already exists.`), { errorCode: "duplicate_id" });
      if (kind !== "create" && !row?.view && kind !== "command") throw Object.assign(new Error(`There is no ${entity} with id ${id}.`), { errorCode: "not_found" });
      const seqRow = await promised(meta.get("next_seq"));
      const seq = seqRow ? seqRow.value : 1;
      /** @type {Op} */
      const op = {
        op_id: uuid(),
        seq,
        kind,
        entity,
        id,
        base_version: row?.server?.versionnumber ?? null,
        changes,
        created_at: nowIso(),
      };
      if (extra.command) {
        op.command = extra.command;
        op.args = extra.args || {};
      }
      const effects = kind === "command" ? extra.effects || [] : [{ kind, entity, id, changes }];
      op.effects = effects;
      op.touches = [...new Set(effects.map((e) => `${e.entity}|${e.id}`))];
      op.labels = await this.#labels(tx, effects);
      await promised(tx.objectStore(QUEUE).add(this.vault ? await during(tx, this.#sealOp(op)) : op));
      await promised(meta.put({ key: "next_seq", value: seq + 1 }));
      const touched = new Set();
      for (const effect of effects) {
        await this.#rebase(tx, effect.entity, effect.id);
        touched.add(effect.entity);
      }
      const after = await this.#row(tx, entity, id);
      return { op, view: after?.view ?? null, touched: [...touched] };
    });
    this.notify(result.touched);
    return { op: result.op, view: result.view };
  }

  /** Names of the lookup targets an op's effects bind, resolved now so the view can show them. */
  async #labels(/** @type {IDBTransaction} */ tx, /** @type {any[]} */ effects) {
    /** @type {Record<string, string|null>} */
    const labels = {};
    // Records created by this same operation (a command's new account, say) are not stored yet.
    for (const effect of effects) {
      const meta = this.entities[effect.entity];
      if (effect.kind !== "create" || !meta) continue;
      const draft = { ...(effect.changes || {}) };
      derive(meta, draft);
      labels[`/${meta.entity_set}(${effect.id})`] = draft[meta.primary_name] ?? null;
    }
    for (const effect of effects) {
      for (const [key, value] of Object.entries(effect.changes || {})) {
        if (!key.endsWith("@odata.bind") || typeof value !== "string") continue;
        const target = this.parseBind(value);
        if (!target || value in labels) continue;
        const row = await this.#row(tx, target.entity, target.id);
        const meta = this.entities[target.entity];
        labels[value] = row?.view && meta ? row.view[meta.primary_name] ?? null : row?.server?.[meta?.primary_name ?? ""] ?? null;
      }
    }
    return labels;
  }

  /** @param {string} bind "/accounts(<id>)" */
  parseBind(bind) {
    const m = /^\/?([A-Za-z_][A-Za-z0-9_]*)\(([0-9a-fA-F-]{36})\)$/.exec(bind);
    if (!m || !this.bySet[m[1]]) return null;
    return { entity: this.bySet[m[1]].logical_name, id: m[2].toLowerCase() };
  }

  /**
   * Recompute a record's view from its server state and the pending ops that touch it.
   * @param {IDBTransaction} tx @param {string} entity @param {string} id
   */
  async #rebase(tx, entity, id) {
    const records = tx.objectStore(RECORDS);
    const row = (await this.#row(tx, entity, id)) || { entity, id, server: null };
    const raw = await getAll(tx.objectStore(QUEUE).index("touches"), `${entity}|${id}`);
    const ops = /** @type {Op[]} */ (this.vault ? await during(tx, Promise.all(raw.map((op) => this.#openOp(op)))) : raw);
    let view = row.server ? { ...row.server } : null;
    let pending = 0;
    for (const op of ops) {
      for (const effect of op.effects || []) {
        if (effect.entity !== entity || effect.id !== id) continue;
        view = this.applyEffect(view, effect, op.labels || {});
        pending += 1;
      }
    }
    if (!view && !row.server && pending === 0) {
      await promised(records.delete([entity, id]));
      return;
    }
    await this.#putRow(tx, { entity, id, server: row.server, view, pending, tokens: view ? this.tokens(entity, view) : [] });
  }

  /**
   * One effect on a view: create, update or delete, with the same derivations as the server.
   * @param {any} view @param {{kind: string, entity: string, id: string, changes: Record<string, any>}} effect
   * @param {Record<string, string|null>} labels
   */
  applyEffect(view, effect, labels) {
    const meta = this.entity(effect.entity);
    if (effect.kind === "delete") return null;
    let next;
    if (effect.kind === "create") {
      next = this.newView(meta, effect.id);
    } else {
      if (!view) return null; // an update of a record that is gone: nothing to show
      next = { ...view };
    }
    for (const [key, value] of Object.entries(effect.changes || {})) this.setWire(meta, next, key, value, labels);
    derive(meta, next);
    next.modifiedon = nowIso();
    return next;
  }

  /** The starting view of a record created on the device. @param {EntityMeta} meta @param {string} id */
  newView(meta, id) {
    /** @type {Record<string, any>} */
    const v = { [meta.primary_id]: id, versionnumber: null, createdon: nowIso(), modifiedon: nowIso() };
    for (const a of meta.attributes) {
      if (a.logical_name === meta.primary_id) continue;
      if (a.type === "lookup") v[`_${a.logical_name}_value`] = null;
      else v[a.logical_name] = null;
    }
    if (meta.ownership === "user") {
      v._ownerid_value = this.user.id;
      v[`_ownerid_value${LOOKUP_NAME}`] = "systemuser";
      v._owningbusinessunit_value = this.user.business_unit_id ?? null;
      if (v._owningbusinessunit_value) v[`_owningbusinessunit_value${LOOKUP_NAME}`] = "businessunit";
    }
    const state = meta.attributes.find((a) => a.logical_name === "statuscode");
    if (state) {
      v.statecode = 0;
      v.statuscode = state.options.find((/** @type {any} */ o) => o.state === 0)?.value ?? null;
      labelOption(meta, v, "statecode");
      labelOption(meta, v, "statuscode");
    }
    if (meta.is_activity) v.activitytypecode = meta.logical_name;
    return v;
  }

  /**
   * Write one Web API change into a wire-format view.
   * @param {EntityMeta} meta @param {Record<string, any>} view @param {string} key @param {any} value
   * @param {Record<string, string|null>} labels
   */
  setWire(meta, view, key, value, labels) {
    if (key.endsWith("@odata.bind")) {
      let name = key.slice(0, -"@odata.bind".length);
      let attr = meta.attributes.find((a) => a.logical_name === name);
      if (!attr && name.includes("_")) {
        name = name.slice(0, name.lastIndexOf("_"));
        attr = meta.attributes.find((a) => a.logical_name === name);
      }
      if (!attr) return;
      const target = value ? this.parseBind(value) : null;
      view[`_${attr.logical_name}_value`] = target ? target.id : null;
      view[`_${attr.logical_name}_value${LOOKUP_NAME}`] = target ? target.entity : null;
      if (target) view[`_${attr.logical_name}_value${FORMATTED}`] = labels[value] ?? null;
      else delete view[`_${attr.logical_name}_value${FORMATTED}`];
      return;
    }
    if (key === meta.primary_id) return;
    view[key] = value;
    delete view[`${key}${FORMATTED}`]; // the server's label (money, yes/no) no longer matches
    labelOption(meta, view, key);
    if (key === "statuscode" || key === "statecode") {
      const status = meta.attributes.find((a) => a.logical_name === "statuscode");
      if (status && key === "statuscode" && value !== null) {
        const opt = status.options.find((/** @type {any} */ o) => o.value === value);
        if (opt && opt.state !== undefined) view.statecode = opt.state;
      }
      if (status && key === "statecode") {
        const current = status.options.find((/** @type {any} */ o) => o.value === view.statuscode);
        if (!current || current.state !== value) view.statuscode = status.options.find((/** @type {any} */ o) => o.state === value)?.value ?? null;
      }
      labelOption(meta, view, "statecode");
      labelOption(meta, view, "statuscode");
    }
  }

  /**
   * A view's tokens without the entity prefix, remembered per view object: an unchanged record
   * keeps its view object (this.opened), so rebuilding an index tokenises only what changed.
   * @param {string} entity @param {any} view @returns {string[]}
   */
  #tokensOf(entity, view) {
    let tokens = this.tokenCache.get(view);
    if (!tokens) {
      const skip = entity.length + 1;
      tokens = this.tokens(entity, view).map((t) => t.slice(skip));
      this.tokenCache.set(view, tokens);
    }
    return tokens;
  }

  /** Search tokens: quick-find values and words, and dates (beyond the reference). @param {string} entity @param {any} view */
  tokens(entity, view) {
    const meta = this.entities[entity];
    if (!meta) return [];
    const out = new Set();
    const add = (/** @type {string} */ s) => {
      const n = normalise(s);
      if (!n) return;
      out.add(`${entity}|${n}`);
      for (const word of n.split(/[\s,;:/()\-.@]+/)) if (word && word !== n) out.add(`${entity}|${word}`);
    };
    for (const col of meta.quick_find || []) if (typeof view[col] === "string") add(view[col]);
    for (const a of meta.attributes) {
      if ((a.type === "date" || a.type === "datetime") && typeof view[a.logical_name] === "string") {
        out.add(`${entity}|${view[a.logical_name].slice(0, 10)}`);
      }
    }
    return [...out];
  }

  // --- server state -------------------------------------------------------------------

  /**
   * Records the server sent (download pages, live changes, acks): keep the newer version and
   * rebase pending operations on top.
   * @param {{entity: string, record: any}[]} items
   */
  async applyServer(items) {
    if (!items.length) return;
    // Encrypted: seal the common case (no pending operation) for every item at once, before the
    // transaction, rather than one by one inside it.
    const presealed = this.vault
      ? await Promise.all(
          items.map(({ entity, record }) => {
            const meta = this.entities[entity];
            return meta ? this.#sealRecord({ entity, id: record[meta.primary_id], server: record, view: record, pending: 0 }) : null;
          }),
        )
      : null;
    const touched = await transact(this.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const touched = new Set();
      const touches = tx.objectStore(QUEUE).index("touches");
      const anyPending = (await promised(tx.objectStore(QUEUE).count())) > 0; // a first download has none
      for (const [i, { entity, record }] of items.entries()) {
        const meta = this.entities[entity];
        if (!meta) continue;
        const id = record[meta.primary_id];
        const raw = await promised(records.get([entity, id]));
        const known = raw?.sealed ? raw.version : raw?.server?.versionnumber;
        if (known !== null && known !== undefined && known >= record.versionnumber) continue; // own change coming back
        if (!anyPending || (await promised(touches.count(`${entity}|${id}`))) === 0) {
          await promised(records.put(presealed ? presealed[i] : { entity, id, server: record, view: record, pending: 0, tokens: this.tokens(entity, record) }));
        } else {
          const row = raw?.sealed ? await during(tx, this.#openRecord(raw)) : raw;
          await this.#putRow(tx, { ...(row || { entity, id }), server: record });
          await this.#rebase(tx, entity, id);
        }
        touched.add(entity);
      }
      return [...touched];
    });
    this.notify(touched);
  }

  /** Records that left the device (deleted, or out of the user's filter or scope). @param {{entity: string, id: string}[]} removes */
  async applyRemoves(removes) {
    if (!removes.length) return;
    await transact(this.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      for (const { entity, id } of removes) {
        const row = await this.#row(tx, entity, id);
        if (!row) continue;
        await this.#putRow(tx, { ...row, server: null });
        await this.#rebase(tx, entity, id);
      }
    });
    this.notify(removes.map((r) => r.entity));
  }

  /**
   * An ack: each result drops its op and brings the server's records, in one transaction, so
   * nothing leaves the queue before its result is stored.
   * @param {any[]} results
   */
  async applyAck(results) {
    const touched = await transact(this.db, [RECORDS, QUEUE, ERRORS], "readwrite", async (tx) => {
      const queue = tx.objectStore(QUEUE);
      const touched = new Set();
      for (const result of results) {
        const stored = await promised(queue.get(result.seq));
        const op = /** @type {Op|undefined} */ (stored?.sealed ? await during(tx, this.#openOp(stored)) : stored);
        if (!op || op.op_id !== result.op_id) continue; // already handled (a duplicate ack)
        await promised(queue.delete(result.seq));
        if (result.status !== "applied") {
          const error = {
            op_id: op.op_id,
            seq: op.seq,
            status: result.status,
            label: result.status === "conflict" ? "Automatically resolved" : "Rejected",
            reason: result.reason || null,
            sent: { kind: op.kind, entity: op.entity, id: op.id, changes: op.changes, command: op.command, args: op.args },
            kept: result.records?.[0]?.record ?? null,
            at: nowIso(),
          };
          await promised(tx.objectStore(ERRORS).put(this.vault ? await during(tx, this.#sealError(error)) : error));
        }
        for (const { entity, record } of result.records || []) {
          const meta = this.entities[entity];
          if (!meta) continue;
          const id = record[meta.primary_id];
          const row = await this.#row(tx, entity, id);
          const newer = !row?.server || row.server.versionnumber === null || row.server.versionnumber <= record.versionnumber;
          await this.#putRow(tx, { ...(row || { entity, id }), server: newer ? record : row.server });
          touched.add(entity);
        }
        for (const { entity, id } of result.removed || []) {
          const row = await this.#row(tx, entity, id);
          if (row) await this.#putRow(tx, { ...row, server: null });
          touched.add(entity);
        }
        for (const effect of op.effects || []) {
          await this.#rebase(tx, effect.entity, effect.id);
          touched.add(effect.entity);
        }
        for (const { entity, record } of result.records || []) {
          const meta = this.entities[entity];
          if (meta) await this.#rebase(tx, entity, record[meta.primary_id]);
        }
        for (const { entity, id } of result.removed || []) await this.#rebase(tx, entity, id);
      }
      return [...touched];
    });
    this.notify(touched);
  }

  /** The first `limit` pending operations, in seq order. @param {number} limit */
  async pending(limit) {
    const ops = await transact(this.db, [QUEUE], "readonly", (tx) => getAll(tx.objectStore(QUEUE), null, limit));
    return this.encrypted ? Promise.all(ops.map((op) => this.#openOp(op))) : ops;
  }

  async pendingCount() {
    return transact(this.db, [QUEUE], "readonly", (tx) => promised(tx.objectStore(QUEUE).count()));
  }

  /** Sync errors, newest first. */
  async errors() {
    const rows = await transact(this.db, [ERRORS], "readonly", (tx) => getAll(tx.objectStore(ERRORS)));
    const all = this.encrypted ? await Promise.all(rows.map((row) => (row.sealed ? this.#key().open(row.sealed, `errors|${row.op_id}`) : row))) : rows;
    return all.sort((a, b) => b.seq - a.seq);
  }

  /** Forget a sync error (Discard). @param {string} opId */
  async discardError(opId) {
    await transact(this.db, [ERRORS], "readwrite", (tx) => promised(tx.objectStore(ERRORS).delete(opId)));
  }

  /** Replace every record of an entity (a fresh first download of it). @param {string} entity */
  async clearEntity(entity) {
    this.generation += 1;
    this.cache.delete(entity);
    this.searchIndex.delete(entity);
    await transact(this.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const rows = await getAll(records.index("entity"), entity);
      for (const raw of rows) {
        if (raw.pending) {
          const row = raw.sealed ? await during(tx, this.#openRecord(raw)) : raw;
          await this.#putRow(tx, { ...row, server: null });
          await this.#rebase(tx, entity, row.id);
        } else {
          await promised(records.delete([entity, raw.id]));
        }
      }
    });
  }
}

/** The IV of a sealed value, as a string to compare. @param {Uint8Array|ArrayBuffer} sealed */
function ivOf(sealed) {
  const bytes = sealed instanceof Uint8Array ? sealed : new Uint8Array(sealed);
  return String.fromCharCode(...bytes.subarray(0, 12));
}

/** Case-folded text for search (the same lower-casing as queries). @param {string} s */
export function normalise(s) {
  return String(s || "").trim().toLowerCase();
}

/** @param {EntityMeta} meta @param {any} record */
export function primaryName(meta, record) {
  return String((meta && record?.[meta.primary_name]) ?? "");
}

/** Lower is better: exact name, name prefix, other column prefix, word prefix. @param {EntityMeta} meta @param {any} view @param {string} needle */
function rankOf(meta, view, needle) {
  const name = normalise(primaryName(meta, view));
  if (name === needle) return 0;
  if (name.startsWith(needle)) return 1;
  for (const col of meta.quick_find || []) if (normalise(view[col]).startsWith(needle)) return 2;
  return 3;
}

/** @param {EntityMeta} meta @param {Record<string, any>} view @param {string} key */
function labelOption(meta, view, key) {
  const attr = meta.attributes.find((a) => a.logical_name === key);
  if (!attr || attr.type !== "optionset") return;
  const opt = attr.options.find((/** @type {any} */ o) => o.value === view[key]);
  if (opt) view[`${key}${FORMATTED}`] = opt.label;
  else delete view[`${key}${FORMATTED}`];
}

/** The server's derivations, mirrored (records.py `_derive`). @param {EntityMeta} meta @param {Record<string, any>} v */
function derive(meta, v) {
  const names = new Set(meta.attributes.map((a) => a.logical_name));
  if (names.has("fullname") && names.has("lastname")) {
    v.fullname = [v.firstname, v.lastname].filter(Boolean).join(" ") || null;
  }
  if (meta.logical_name === "opportunityproduct") {
    v.extendedamount = v.quantity != null && v.priceperunit != null ? Math.round(v.quantity * v.priceperunit * 10000) / 10000 : null;
  }
}

/**
 * Delete a store database by name, its wrapped key first (Clear this device).
 * @param {string} name
 */
export async function destroyStore(name) {
  const db = await openDB(name);
  await transact(db, [META], "readwrite", (tx) => promised(tx.objectStore(META).delete(VAULT))).catch(() => {});
  db.close();
  await deleteDB(name);
}
