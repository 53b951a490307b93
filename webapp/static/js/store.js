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
 */
import { ERRORS, META, QUEUE, RECORDS, dbName, deleteDB, getAll, openDB, promised, transact } from "./idb.js";

const LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname";
const FORMATTED = "@OData.Community.Display.V1.FormattedValue";
const SEARCH_LIMIT = 50;

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
  }

  /**
   * Open the store of one (organisation, user).
   * @param {string} org
   * @param {{id: string, username: string, business_unit_id?: string}} user
   */
  static async open(org, user) {
    const store = new Store(await openDB(dbName(org, user.id)), org, user);
    const doc = await store.getMeta("customizations", null);
    if (doc) store.useCustomizations(doc);
    return store;
  }

  get name() {
    return dbName(this.org, this.user.id);
  }

  /** Close the database connection. */
  close() {
    this.db.close();
  }

  /** Delete this store and everything in it (Reconfigure, wipe). */
  async destroy() {
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
    return row === undefined ? fallback : row.value;
  }

  /** @param {string} key @param {any} value */
  async setMeta(key, value) {
    await transact(this.db, [META], "readwrite", (tx) => promised(tx.objectStore(META).put({ key, value })));
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
    return row?.view ?? null;
  }

  /** Every record of an entity as the user sees it (activitypointer: every activity). @param {string} entity */
  async all(entity) {
    const cached = this.cache.get(entity);
    if (cached) return cached.slice();
    const names = entity === "activitypointer" ? this.activityTypes() : [entity];
    const generation = this.generation;
    const out = await transact(this.db, [RECORDS], "readonly", async (tx) => {
      const index = tx.objectStore(RECORDS).index("entity");
      const views = [];
      for (const name of names) {
        for (const row of await getAll(index, name)) if (row.view) views.push(row.view);
      }
      return views;
    });
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
    return transact(this.db, [RECORDS], "readonly", async (tx) => {
      const index = tx.objectStore(RECORDS).index("tokens");
      /** @type {Map<string, {entity: string, record: any, rank: number}>} */
      const hits = new Map();
      for (const name of entities) {
        const meta = this.entities[name];
        if (!meta) continue;
        const prefix = `${name}|${needle}`;
        const rows = await getAll(index, IDBKeyRange.bound(prefix, `${prefix}\uffff`), limit * 4);
        for (const row of rows) {
          if (!row.view) continue;
          const key = `${name}|${row.id}`;
          const rank = rankOf(meta, row.view, needle);
          const seen = hits.get(key);
          if (!seen || seen.rank > rank) hits.set(key, { entity: name, record: row.view, rank });
        }
      }
      return [...hits.values()]
        .sort((a, b) => a.rank - b.rank || primaryName(this.entities[a.entity], a.record).localeCompare(primaryName(this.entities[b.entity], b.record)))
        .slice(0, limit);
    });
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
      const records = tx.objectStore(RECORDS);
      const meta = tx.objectStore(META);
      const row = (await promised(records.get([entity, id]))) || null;
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
      op.labels = await this.#labels(records, effects);
      await promised(tx.objectStore(QUEUE).add(op));
      await promised(meta.put({ key: "next_seq", value: seq + 1 }));
      const touched = new Set();
      for (const effect of effects) {
        await this.#rebase(tx, effect.entity, effect.id);
        touched.add(effect.entity);
      }
      const after = await promised(records.get([entity, id]));
      return { op, view: after?.view ?? null, touched: [...touched] };
    });
    this.notify(result.touched);
    return { op: result.op, view: result.view };
  }

  /** Names of the lookup targets an op's effects bind, resolved now so the view can show them. */
  async #labels(/** @type {IDBObjectStore} */ records, /** @type {any[]} */ effects) {
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
        const row = await promised(records.get([target.entity, target.id]));
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
    const row = (await promised(records.get([entity, id]))) || { entity, id, server: null };
    const ops = /** @type {Op[]} */ (await getAll(tx.objectStore(QUEUE).index("touches"), `${entity}|${id}`));
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
    await promised(records.put({ entity, id, server: row.server, view, pending, tokens: view ? this.tokens(entity, view) : [] }));
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
    const touched = await transact(this.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const touched = new Set();
      const touches = tx.objectStore(QUEUE).index("touches");
      const anyPending = (await promised(tx.objectStore(QUEUE).count())) > 0; // a first download has none
      for (const { entity, record } of items) {
        const meta = this.entities[entity];
        if (!meta) continue;
        const id = record[meta.primary_id];
        const row = await promised(records.get([entity, id]));
        if (row?.server && row.server.versionnumber >= record.versionnumber) continue; // own change coming back
        if (!anyPending || (await promised(touches.count(`${entity}|${id}`))) === 0) {
          await promised(records.put({ entity, id, server: record, view: record, pending: 0, tokens: this.tokens(entity, record) }));
        } else {
          await promised(records.put({ ...(row || { entity, id }), server: record }));
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
      const records = tx.objectStore(RECORDS);
      for (const { entity, id } of removes) {
        const row = await promised(records.get([entity, id]));
        if (!row) continue;
        await promised(records.put({ ...row, server: null }));
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
      const records = tx.objectStore(RECORDS);
      const touched = new Set();
      for (const result of results) {
        const op = /** @type {Op|undefined} */ (await promised(queue.get(result.seq)));
        if (!op || op.op_id !== result.op_id) continue; // already handled (a duplicate ack)
        await promised(queue.delete(result.seq));
        if (result.status !== "applied") {
          await promised(
            tx.objectStore(ERRORS).put({
              op_id: op.op_id,
              seq: op.seq,
              status: result.status,
              label: result.status === "conflict" ? "Automatically resolved" : "Rejected",
              reason: result.reason || null,
              sent: { kind: op.kind, entity: op.entity, id: op.id, changes: op.changes, command: op.command, args: op.args },
              kept: result.records?.[0]?.record ?? null,
              at: nowIso(),
            }),
          );
        }
        for (const { entity, record } of result.records || []) {
          const meta = this.entities[entity];
          if (!meta) continue;
          const id = record[meta.primary_id];
          const row = await promised(records.get([entity, id]));
          const newer = !row?.server || row.server.versionnumber === null || row.server.versionnumber <= record.versionnumber;
          await promised(records.put({ ...(row || { entity, id }), server: newer ? record : row.server }));
          touched.add(entity);
        }
        for (const { entity, id } of result.removed || []) {
          const row = await promised(records.get([entity, id]));
          if (row) await promised(records.put({ ...row, server: null }));
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
    return transact(this.db, [QUEUE], "readonly", (tx) => getAll(tx.objectStore(QUEUE), null, limit));
  }

  async pendingCount() {
    return transact(this.db, [QUEUE], "readonly", (tx) => promised(tx.objectStore(QUEUE).count()));
  }

  /** Sync errors, newest first. */
  async errors() {
    const all = await transact(this.db, [ERRORS], "readonly", (tx) => getAll(tx.objectStore(ERRORS)));
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
    await transact(this.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const rows = await getAll(records.index("entity"), entity);
      for (const row of rows) {
        if (row.pending) {
          await promised(records.put({ ...row, server: null }));
          await this.#rebase(tx, entity, row.id);
        } else {
          await promised(records.delete([entity, row.id]));
        }
      }
    });
  }
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
