// @ts-check
/**
 * The search index: quick find by prefix over each entity's quick-find columns, their words, and
 * dates (beyond the reference: "2026-11-" finds November's records).
 *
 * A plain store keeps each record's tokens ("entity|token") in the records' multi-entry `tokens`
 * index and finds a prefix with one key range per entity. A sealed store keeps no readable
 * tokens: the same tokens are built in memory from the opened records at the first search after
 * unlocking (or after the entity changed), sorted, and a prefix is found by binary search.
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
      /** "token\0position": the built-in sort orders by code unit, as IndexedDB compares keys. @type {string[]} */
      const entries = [];
      views.forEach((view, i) => {
        for (const token of this.#tokensOf(entity, view)) entries.push(`${token}\u0000${i}`);
      });
      entries.sort();
      index = { keys: entries, views: entries.map((e) => views[Number(e.slice(e.lastIndexOf("\u0000") + 1))]) };
      if (generation === this.host.generation) this.memory.set(entity, index);
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
}
