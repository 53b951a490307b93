// @ts-check
/**
 * Records on the device: the server's state and the user's pending view of each (DESIGN.md §5).
 *
 * Each records row keeps `server` (the last state the server confirmed, with its version) and
 * `view` (what the user sees) = server + the still-pending operations, applied in order by
 * rules.js. A local write stores the new view and its operation in ONE transaction. A server
 * change rebases: the confirmed state moves and the pending operations are applied again on
 * top, so an incoming change never hides an unsynced edit. An ack drops the operation and
 * takes the server's record; a rejected operation is dropped the same way, which rolls its
 * local effect back to the server's state.
 *
 * Values pass through the store's codec (sealed under the app PIN, or not); crypto inside a
 * write transaction is awaited with `during` (idb.js), so each write still commits as one
 * transaction. Each write returns the records it touched with their new views (`Changes`); the
 * store patches what it keeps in memory (viewcache.js) and tells its listeners.
 */
import { ERRORS, META, QUEUE, RECORDS, during, getAll, promised, transact } from "./idb.js";
import * as queue from "./queue.js";
import { FORMATTED, applyEffect, bindLabels, nowIso } from "./rules.js";
import { tokens } from "./search.js";
import { Changes } from "./viewcache.js";

/**
 * @typedef {import("./codec.js").Codec} Codec
 * @typedef {import("./codec.js").RecordRow} RecordRow
 * @typedef {import("./queue.js").Op} Op
 * @typedef {import("./rules.js").Schema} Schema
 */

/** A fresh lower-case UUID. */
export function uuid() {
  return crypto.randomUUID();
}

/**
 * What the fields an update changes held when the change was made (as the user saw them), for
 * the three-way view of a conflict: `{attr: {value, label}}`.
 * @param {any} meta @param {any} view @param {Record<string, any>} changes
 */
function beforeValues(meta, view, changes) {
  /** @type {Record<string, {value: any, label: string|null}>} */
  const out = {};
  for (const key of Object.keys(changes)) {
    let name = key.endsWith("@odata.bind") ? key.slice(0, -"@odata.bind".length) : key;
    let attr = meta?.attributes.find((/** @type {any} */ a) => a.logical_name === name);
    if (!attr && key.endsWith("@odata.bind") && name.includes("_")) {
      name = name.slice(0, name.lastIndexOf("_"));
      attr = meta?.attributes.find((/** @type {any} */ a) => a.logical_name === name);
    }
    if (!attr) continue;
    const field = attr.type === "lookup" ? `_${name}_value` : name;
    out[name] = { value: view[field] ?? null, label: view[`${field}${FORMATTED}`] ?? null };
  }
  return out;
}

export class Records {
  /**
   * @param {{db: IDBDatabase, codec: Codec, generation: number, entities: Schema["entities"],
   *   bySet: Schema["bySet"], user: Schema["user"], activityTypes: () => string[],
   *   views: import("./viewcache.js").ViewCache}} host
   *   the store: its database, codec, metadata, change generation (read live) and the views it keeps
   */
  constructor(host) {
    this.host = host;
  }

  /** What is kept in memory of the records (viewcache.js); `cache.clear()` forgets it all (a cold start). */
  get cache() {
    return this.host.views;
  }

  // --- rows ------------------------------------------------------------------------------

  /** A records row inside a transaction, opened. @param {IDBTransaction} tx @param {string} entity @param {string} id @returns {Promise<RecordRow|undefined>} */
  async row(tx, entity, id) {
    const raw = await promised(tx.objectStore(RECORDS).get([entity, id]));
    return raw?.sealed ? during(tx, this.host.codec.openRecord(raw)) : raw;
  }

  /** Store a records row inside a transaction (with its search tokens when plain). @param {IDBTransaction} tx @param {RecordRow} row */
  async putRow(tx, row) {
    const codec = this.host.codec;
    await promised(tx.objectStore(RECORDS).put(codec.sealed ? await during(tx, codec.sealRecord(row)) : row));
  }

  /** A plain row for a view, with its tokens. @param {string} entity @param {string} id @param {any} server @param {any} view @param {number} pending */
  #plainRow(entity, id, server, view, pending) {
    return { entity, id, server, view, pending, tokens: view ? tokens(this.host.entities[entity], entity, view) : [] };
  }

  // --- reads ----------------------------------------------------------------------------

  /** A record as the user sees it, or null. @param {string} entity @param {string} id */
  async get(entity, id) {
    const raw = await transact(this.host.db, [RECORDS], "readonly", (tx) => promised(tx.objectStore(RECORDS).get([entity, id])));
    return (await this.host.codec.openRecord(raw))?.view ?? null;
  }

  /** Every record of an entity as the user sees it (activitypointer: every activity). @param {string} entity */
  async all(entity) {
    if (entity !== "activitypointer") return (await this.#views(entity)).slice();
    /** @type {any[]} */
    let out = [];
    // concat, not push(...views): spreading 200,000 views as arguments overflows the call stack
    for (const name of this.host.activityTypes()) out = out.concat(await this.#views(name));
    return out;
  }

  /** The views of one entity in id order, as kept (viewcache.js) or read once and kept. @param {string} entity @returns {Promise<any[]>} */
  async #views(entity) {
    const kept = this.host.views.list(entity);
    if (kept) return kept.views;
    const generation = this.host.generation;
    const rows = await transact(this.host.db, [RECORDS], "readonly", (tx) => getAll(tx.objectStore(RECORDS).index("entity"), entity));
    const codec = this.host.codec;
    const opened = codec.sealed ? await Promise.all(rows.map((row) => codec.openRecord(row))) : rows;
    /** @type {string[]} */
    const ids = [];
    const views = [];
    for (const row of opened) {
      if (!row.view) continue;
      ids.push(row.id);
      views.push(row.view);
    }
    this.host.views.keepList(entity, generation, ids, views);
    return views;
  }

  /** Record counts per entity (views only). */
  async counts() {
    return transact(this.host.db, [RECORDS], "readonly", async (tx) => {
      /** @type {Record<string, number>} */
      const out = {};
      const index = tx.objectStore(RECORDS).index("entity");
      for (const e of Object.values(this.host.entities)) out[e.logical_name] = await promised(index.count(e.logical_name));
      return out;
    });
  }

  /**
   * The ids of an entity's records the device holds from the server (those the server sent and
   * has not taken back), sorted: what a scope checksum compares with the server's. Records only
   * created on the device (their operation not acked yet) are left out; only rows some queued
   * operation touches are read, everything else is keys only.
   * @param {string} entity
   * @returns {Promise<string[]>}
   */
  async heldIds(entity) {
    const local = await this.localOnly(entity);
    return (await this.#keys(IDBKeyRange.bound([entity, ""], [entity, []]))).filter((id) => !local.has(id));
  }

  /**
   * The ids of an entity the device holds only through its own queued operations (created here,
   * or taken back by the server while an edit waits): not held from the server. The queue is
   * short and its "entity|id" pairs are readable even when sealed.
   * @param {string} entity
   * @returns {Promise<Set<string>>}
   */
  async localOnly(entity) {
    return transact(this.host.db, [RECORDS, QUEUE], "readonly", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const prefix = `${entity}|`;
      const queued = new Set();
      for (const op of await getAll(tx.objectStore(QUEUE))) for (const key of op.touches || []) if (key.startsWith(prefix)) queued.add(key.slice(prefix.length));
      /** @type {Set<string>} */
      const local = new Set();
      for (const id of queued) {
        const raw = await promised(records.get([entity, id]));
        if (!raw) continue;
        const held = raw.sealed ? raw.version !== null && raw.version !== undefined : raw.server !== null && raw.server !== undefined;
        if (!held) local.add(id);
      }
      return local;
    });
  }

  /** The record ids (keys only, sorted) in a key range. @param {IDBKeyRange} range @returns {Promise<string[]>} */
  async #keys(range) {
    const keys = await transact(this.host.db, [RECORDS], "readonly", (tx) => promised(tx.objectStore(RECORDS).getAllKeys(range)));
    return /** @type {[string, string][]} */ (keys).map((k) => k[1]);
  }

  /**
   * The ids held from the server in one bucket (ids starting with `prefix`), sorted.
   * @param {string} entity @param {string} prefix @param {Set<string>} local from `localOnly`
   */
  async heldBucket(entity, prefix, local) {
    const range = prefix ? IDBKeyRange.bound([entity, prefix], [entity, `${prefix}\uffff`]) : IDBKeyRange.bound([entity, ""], [entity, []]);
    return (await this.#keys(range)).filter((id) => !local.has(id));
  }

  /**
   * Every non-empty bucket of the ids held from the server, in order, one bucket read at a time
   * (keys only, a short transaction each): a scope check over 200,000 records never holds more
   * than one bucket's ids.
   * @param {string} entity @param {number} depth @param {Set<string>} local from `localOnly`
   * @returns {AsyncGenerator<[string, string[]]>}
   */
  async *heldBuckets(entity, depth, local) {
    if (depth === 0) {
      const ids = await this.heldBucket(entity, "", local);
      if (ids.length) yield ["", ids];
      return;
    }
    let range = IDBKeyRange.bound([entity, ""], [entity, []]);
    for (;;) {
      const first = /** @type {[string, string]|undefined} */ (await transact(this.host.db, [RECORDS], "readonly", (tx) => promised(tx.objectStore(RECORDS).getKey(range))));
      if (!first) return;
      const prefix = first[1].slice(0, depth);
      const ids = await this.heldBucket(entity, prefix, local);
      if (ids.length) yield [prefix, ids];
      range = IDBKeyRange.bound([entity, `${prefix}\uffff`], [entity, []], true, true);
    }
  }

  // --- local writes ---------------------------------------------------------------------

  /**
   * Apply a user's change locally and queue its operation, in one transaction.
   * @param {"create"|"update"|"delete"|"command"} kind
   * @param {string} entity
   * @param {string} id
   * @param {Record<string, any>} changes Web API form: attribute values and `x@odata.bind`
   * @param {{command?: string, args?: any, effects?: {kind: string, entity: string, id: string, changes: Record<string, any>}[]}} [extra]
   *   a command's local effects (each a create/update/delete on some record), all in this one op
   * @returns {Promise<{op: Op, view: any, touched: Changes}>}
   */
  async write(kind, entity, id, changes, extra = {}) {
    const codec = this.host.codec;
    return transact(this.host.db, [RECORDS, QUEUE, META], "readwrite", async (tx) => {
      const row = (await this.row(tx, entity, id)) || null;
      if (kind === "create" && row?.view) throw Object.assign(new Error(`A record with id ${id} already exists.`), { errorCode: "duplicate_id" });
      if (kind !== "create" && !row?.view && kind !== "command") throw Object.assign(new Error(`There is no ${entity} with id ${id}.`), { errorCode: "not_found" });
      /** @type {Op} */
      const op = {
        op_id: uuid(),
        seq: await queue.nextSeq(tx),
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
      if (kind === "update" && row?.view) op.before = beforeValues(this.host.entities[entity], row.view, changes);
      // The record's name as the user knew it: an error can name it even after the record left the device.
      const primaryName = this.host.entities[entity]?.primary_name;
      if (primaryName) op.name = row?.view?.[primaryName] ?? changes[primaryName] ?? null;
      const effects = kind === "command" ? extra.effects || [] : [{ kind, entity, id, changes }];
      op.effects = effects;
      op.touches = [...new Set(effects.map((e) => `${e.entity}|${e.id}`))];
      op.labels = await bindLabels(this.host, effects, (e, i) => this.row(tx, e, i));
      await queue.add(tx, codec, op);
      const touched = new Changes();
      for (const effect of effects) await this.rebase(tx, effect.entity, effect.id, touched);
      const after = await this.row(tx, entity, id);
      return { op, view: after?.view ?? null, touched };
    });
  }

  /**
   * Recompute a record's view from its server state and the pending ops that touch it.
   * @param {IDBTransaction} tx @param {string} entity @param {string} id @param {Changes} changes gets the new view
   */
  async rebase(tx, entity, id, changes) {
    const row = (await this.row(tx, entity, id)) || { entity, id, server: null };
    const ops = await queue.touching(tx, this.host.codec, entity, id);
    let view = row.server ? { ...row.server } : null;
    let pending = 0;
    for (const op of ops) {
      for (const effect of op.effects || []) {
        if (effect.entity !== entity || effect.id !== id) continue;
        view = applyEffect(this.host, view, effect, op.labels || {});
        pending += 1;
      }
    }
    changes.set(entity, id, view);
    if (!view && !row.server && pending === 0) {
      await promised(tx.objectStore(RECORDS).delete([entity, id]));
      return;
    }
    await this.putRow(tx, this.#plainRow(entity, id, row.server, view, pending));
  }

  // --- server state ---------------------------------------------------------------------

  /**
   * Records the server sent (download pages, live changes, acks): keep the newer version and
   * rebase pending operations on top.
   * @param {{entity: string, record: any}[]} items
   * @param {Set<string>} [replace] entities whose records replace those held even at the same
   *   version (a scope check's `refresh`: the fields the user may read changed)
   * @returns {Promise<Changes>} the records touched
   */
  async applyServer(items, replace) {
    if (!items.length) return new Changes();
    const codec = this.host.codec;
    const entities = this.host.entities;
    // Sealed: seal the common case (no pending operation) for every item at once, before the
    // transaction, rather than one by one inside it.
    const presealed = codec.sealed
      ? await Promise.all(
          items.map(({ entity, record }) => {
            const meta = entities[entity];
            return meta ? codec.sealRecord({ entity, id: record[meta.primary_id], server: record, view: record, pending: 0 }) : null;
          }),
        )
      : null;
    return transact(this.host.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const changes = new Changes();
      const anyPending = !(await queue.isEmpty(tx)); // a first download has none
      for (const [i, { entity, record }] of items.entries()) {
        const meta = entities[entity];
        if (!meta) continue;
        const id = record[meta.primary_id];
        const raw = await promised(records.get([entity, id]));
        const known = raw?.sealed ? raw.version : raw?.server?.versionnumber;
        const same = known === record.versionnumber && replace?.has(entity);
        if (known !== null && known !== undefined && known >= record.versionnumber && !same) continue; // own change coming back
        if (!anyPending || !(await queue.touches(tx, entity, id))) {
          await promised(records.put(presealed ? presealed[i] : this.#plainRow(entity, id, record, record, 0)));
          changes.set(entity, id, record);
        } else {
          const row = raw?.sealed ? await during(tx, codec.openRecord(raw)) : raw;
          await this.putRow(tx, { .../** @type {RecordRow} */ (row || { entity, id }), server: record });
          await this.rebase(tx, entity, id, changes);
        }
      }
      return changes;
    });
  }

  /** Records that left the device (deleted, or out of the user's filter or scope). @param {{entity: string, id: string}[]} removes */
  async applyRemoves(removes) {
    const changes = new Changes();
    if (!removes.length) return changes;
    await transact(this.host.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      for (const { entity, id } of removes) {
        const row = await this.row(tx, entity, id);
        if (!row) continue;
        await this.putRow(tx, { ...row, server: null });
        await this.rebase(tx, entity, id, changes);
      }
    });
    return changes;
  }

  /**
   * An ack: each result drops its op and brings the server's records, in one transaction, so
   * nothing leaves the queue before its result is stored.
   * @param {any[]} results
   * @returns {Promise<Changes>} the records touched
   */
  async applyAck(results) {
    const codec = this.host.codec;
    const entities = this.host.entities;
    return transact(this.host.db, [RECORDS, QUEUE, ERRORS], "readwrite", async (tx) => {
      const changes = new Changes();
      for (const result of results) {
        const op = await queue.take(tx, codec, result);
        if (!op) continue; // already handled (a duplicate ack)
        if (result.status !== "applied") {
          // The record's name as the user knew it, so the error can say which record it was.
          const meta = entities[op.entity];
          const row = meta ? await this.row(tx, op.entity, op.id) : null;
          const name = (meta ? row?.view?.[meta.primary_name] ?? row?.server?.[meta.primary_name] : null) ?? op.name ?? null;
          await queue.recordError(tx, codec, op, result, nowIso(), name);
        }
        for (const { entity, record } of result.records || []) {
          const meta = entities[entity];
          if (!meta) continue;
          const id = record[meta.primary_id];
          const row = await this.row(tx, entity, id);
          const newer = !row?.server || row.server.versionnumber === null || row.server.versionnumber <= record.versionnumber;
          await this.putRow(tx, { .../** @type {RecordRow} */ (row || { entity, id }), server: newer ? record : row?.server });
        }
        for (const { entity, id } of result.removed || []) {
          const row = await this.row(tx, entity, id);
          if (row) await this.putRow(tx, { ...row, server: null });
        }
        // Rebase each record the op or its answer touched once (a create is in both): a replay
        // of thousands of ops spends its time here.
        /** @type {Map<string, [string, string]>} */
        const again = new Map();
        for (const effect of op.effects || []) again.set(`${effect.entity}|${effect.id}`, [effect.entity, effect.id]);
        for (const { entity, record } of result.records || []) {
          const meta = entities[entity];
          if (meta) again.set(`${entity}|${record[meta.primary_id]}`, [entity, record[meta.primary_id]]);
        }
        for (const { entity, id } of result.removed || []) again.set(`${entity}|${id}`, [entity, id]);
        for (const [entity, id] of again.values()) await this.rebase(tx, entity, id, changes);
      }
      return changes;
    });
  }

  /** Replace every record of an entity (a fresh first download of it). @param {string} entity */
  async clearEntity(entity) {
    this.host.views.drop(entity);
    const codec = this.host.codec;
    await transact(this.host.db, [RECORDS, QUEUE], "readwrite", async (tx) => {
      const records = tx.objectStore(RECORDS);
      const rows = await getAll(records.index("entity"), entity);
      for (const raw of rows) {
        if (raw.pending) {
          const row = raw.sealed ? await during(tx, codec.openRecord(raw)) : raw;
          await this.putRow(tx, { ...row, server: null });
          await this.rebase(tx, entity, row.id, new Changes()); // the whole entity is dropped from memory
        } else {
          await promised(records.delete([entity, raw.id]));
        }
      }
    });
  }
}
