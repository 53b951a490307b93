// @ts-check
/**
 * The search index: quick find by prefix over each entity's quick-find columns, their words, and
 * dates (beyond the reference: "2026-11-" finds November's records).
 *
 * A plain store keeps each record's tokens ("entity|token") in the records' multi-entry `tokens`
 * index and finds a prefix with one key range per entity. A sealed store keeps no readable
 * tokens: the same tokens are built in memory from the opened records at the first search after
 * unlocking (or after many of an entity's records changed), sorted ("token\0id", the order of the
 * plain store's index), and a prefix is found by binary search; a few changed records are patched
 * in (their old tokens taken out, their new ones put in at their place).
 */
import { RECORDS, getAll, transact } from "./idb.js";

export const SEARCH_LIMIT = 50;
const REINDEX_DELAY_MS = 300; // after the last change, rebuild a stale in-memory index (sealed stores)

/** @typedef {import("./rules.js").EntityMeta} EntityMeta */

/** Case-folded text for search (the same lower-casing as queries). @param {string} s */
export function normalise(s) {
  return String(s || "").trim().toLowerCase();
}

/** @param {EntityMeta} meta @param {any} record */
export function primaryName(meta, record) {
  return String((meta && record?.[meta.primary_name]) ?? "");
}

/**
 * A record's search tokens ("entity|token"): quick-find values and their words, and dates.
 * @param {EntityMeta|undefined} meta @param {string} entity @param {any} view
 * @returns {string[]}
 */
export function tokens(meta, entity, view) {
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

/** The first index of a sorted array of strings not below `key`. @param {string[]} keys @param {string} key */
function lowerBound(keys, key) {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Lower is better: exact name, name prefix, other column prefix, word prefix. @param {EntityMeta} meta @param {any} view @param {string} needle */
function rankOf(meta, view, needle) {
  const name = normalise(primaryName(meta, view));
  if (name === needle) return 0;
  if (name.startsWith(needle)) return 1;
  for (const col of meta.quick_find || []) if (normalise(view[col]).startsWith(needle)) return 2;
  return 3;
}

/**
 * Search over one store.
 * `host` gives what the index reads: the database, the metadata, whether values are sealed,
 * every view of an entity (`all`) and the store's change generation.
 */
export class SearchIndex {
  /**
   * @param {{db: IDBDatabase, entities: Record<string, EntityMeta>, generation: number,
   *   codec: import("./codec.js").Codec, all: (entity: string) => Promise<any[]>}} host
   */
  constructor(host) {
    this.host = host;
    /** Quick-find tokens in memory, by entity (sealed stores). @type {Map<string, {keys: string[], views: any[]}>} */
    this.memory = new Map();
    /** Quick-find tokens of each view object (sealed stores). @type {WeakMap<object, string[]>} */
    this.tokenCache = new WeakMap();
    /** Entities whose in-memory index is rebuilt soon. @type {Set<string>} */
    this.stale = new Set();
    this.reindexTimer = 0;
  }

  /** An entity changed: its in-memory index (if any) is rebuilt once changes settle. @param {string} entity */
  changed(entity) {
    if (this.memory.delete(entity)) this.#reindexSoon(entity);
  }

  /**
   * A few records of an entity changed (viewcache.js): take each one's old tokens out of its
   * in-memory index and put its new ones in, each found by binary search; an index that does not
   * hold a token where it should is rebuilt instead.
   * @param {string} entity @param {[any, any][]} pairs each changed view as [before, after] (null: none)
   */
  patch(entity, pairs) {
    const index = this.memory.get(entity);
    if (!index) return;
    const pid = this.host.entities[entity]?.primary_id;
    for (const [before, after] of pairs) {
      const id = (before ?? after)[pid];
      for (const token of before ? this.#tokensOf(entity, before) : []) {
        const key = `${token}\u0000${id}`;
        const at = lowerBound(index.keys, key);
        if (index.keys[at] !== key) return this.changed(entity);
        index.keys.splice(at, 1);
        index.views.splice(at, 1);
      }
      for (const token of after ? this.#tokensOf(entity, after) : []) {
        const key = `${token}\u0000${id}`;
        const at = lowerBound(index.keys, key);
        index.keys.splice(at, 0, key);
        index.views.splice(at, 0, after);
      }
    }
  }

  /** Forget an entity's in-memory index at once (its records are replaced). @param {string} entity */
  drop(entity) {
    this.memory.delete(entity);
  }

  clear() {
    this.memory.clear();
  }

  /** @param {string} entity */
  #reindexSoon(entity) {
    this.stale.add(entity);
    clearTimeout(this.reindexTimer);
    this.reindexTimer = setTimeout(() => {
      const names = [...this.stale];
      this.stale.clear();
      (async () => {
        for (const name of names) if (this.host.codec.sealed && this.host.codec.readable()) await this.#searchMemory(name, "", 0);
      })().catch((err) => console.warn("rebuilding the search index", err));
    }, REINDEX_DELAY_MS);
  }

  /** Build an entity's in-memory index now (after unlocking, in the background). @param {string} entity */
  async warm(entity) {
    await this.#searchMemory(entity, "", 0);
  }

  /**
   * Prefix search over quick-find columns (and dates), ranked.
   * @param {string[]} entities @param {string} text @param {number} [limit]
   * @returns {Promise<{entity: string, record: any, rank: number}[]>}
   */
  async search(entities, text, limit = SEARCH_LIMIT) {
    const needle = normalise(text);
    if (!needle) return [];
    const metas = this.host.entities;
    const names = entities.filter((name) => metas[name]);
    /** @type {Map<string, any[]>} the views whose tokens start with the needle, by entity */
    const found = new Map();
    if (this.host.codec.sealed) {
      for (const name of names) found.set(name, await this.#searchMemory(name, needle, limit * 4));
    } else {
      await transact(this.host.db, [RECORDS], "readonly", async (tx) => {
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
      const meta = metas[name];
      for (const view of views) {
        const key = `${name}|${view[meta.primary_id]}`;
        const rank = rankOf(meta, view, needle);
        const seen = hits.get(key);
        if (!seen || seen.rank > rank) hits.set(key, { entity: name, record: view, rank });
      }
    }
    return [...hits.values()]
      .sort((a, b) => a.rank - b.rank || primaryName(metas[a.entity], a.record).localeCompare(primaryName(metas[b.entity], b.record)))
      .slice(0, limit);
  }

  /**
   * A view's tokens without the entity prefix, remembered per view object: an unchanged record
   * keeps its view object (the codec's opened rows), so rebuilding tokenises only what changed.
   * @param {string} entity @param {any} view @returns {string[]}
   */
  #tokensOf(entity, view) {
    let found = this.tokenCache.get(view);
    if (!found) {
      const skip = entity.length + 1;
      found = tokens(this.host.entities[entity], entity, view).map((t) => t.slice(skip));
      this.tokenCache.set(view, found);
    }
    return found;
  }

  /**
   * A sealed store's quick find: the same tokens, sorted in memory (built from the opened views
   * at the first search after a change, kept until the entity changes).
   * @param {string} entity @param {string} needle @param {number} max
   */
  async #searchMemory(entity, needle, max) {
    let index = this.memory.get(entity);
    if (!index) {
      const generation = this.host.generation;
      const views = await this.host.all(entity);
      const pid = this.host.entities[entity]?.primary_id;
      const byId = new Map(views.map((view) => [String(view[pid]), view]));
      /** "token\0id": the built-in sort orders by code unit, as IndexedDB compares keys. @type {string[]} */
      const entries = [];
      for (const [id, view] of byId) for (const token of this.#tokensOf(entity, view)) entries.push(`${token}\u0000${id}`);
      entries.sort();
      index = { keys: entries, views: entries.map((e) => byId.get(e.slice(e.lastIndexOf("\u0000") + 1))) };
      if (generation === this.host.generation) this.memory.set(entity, index);
    }
    const lo = lowerBound(index.keys, needle);
    const out = [];
    for (let i = lo; i < index.keys.length && out.length < max && index.keys[i].startsWith(needle); i++) out.push(index.views[i]);
    return out;
  }
}
