// @ts-check
/**
 * What the device keeps in memory of its records between reads, kept up to date change by
 * change instead of thrown away (issue #14: a view stays instant when one record of 200,000
 * changes).
 *
 * Two things are kept per entity:
 *   lists   every view of the entity, in id order (the order IndexedDB reads them in), with
 *           their ids beside them: what `Records.all` returns without reading the database;
 *   sorted  the filtered, sorted views of each query run on the entity (odata.js `runQuery`'s
 *           memo entries: `{sorted, matches, compare}`): a view's next page, or the same view
 *           after a change, skips the filter and the sort.
 *
 * A store change says which records changed and what they look like now (`Changes`). Each
 * changed record is taken out of every kept array where it was (found by binary search: by id
 * in a list, by the query's own comparator in a sorted view, which finds the exact old view
 * because the order is total) and its new view put in at its place, if it still belongs there.
 *
 * The one rule for when not to patch: a change of more than PATCH_MIN records that is also more
 * than PATCH_SHARE of the entity (a download page, a scope refresh) drops what is kept of that
 * entity, and the next read rebuilds it in one pass, which is then cheaper than splicing each
 * record in. A change that names entities but not records (another tab's) drops them too.
 */

/** Changes up to this many records are always patched in. */
export const PATCH_MIN = 16;
/** Larger changes are patched only up to this share of the entity's records. */
export const PATCH_SHARE = 0.01;

/** How many kept sorted views of one entity at most (a handful of views; never unbounded). */
const MAX_VIEWS = 20;

/**
 * Whether a change of `count` records of an entity holding `size` is patched in (else rebuilt).
 * @param {number} count @param {number} size
 */
export function patchable(count, size) {
  return count <= PATCH_MIN || count <= size * PATCH_SHARE;
}

/** The records a store change touched: entity -> id -> the view now (null: gone). */
export class Changes {
  constructor() {
    /** @type {Map<string, Map<string, any>>} */
    this.byEntity = new Map();
  }

  /** @param {string} entity @param {string} id @param {any} view the new view, or null when the record left */
  set(entity, id, view) {
    let ids = this.byEntity.get(entity);
    if (!ids) this.byEntity.set(entity, (ids = new Map()));
    ids.set(id, view ?? null);
  }

  /** The entities changed. */
  get entities() {
    return [...this.byEntity.keys()];
  }
}

/**
 * The first index in `array` (sorted by `before(element) < 0` first) whose element is not before.
 * @template T @param {T[]} array @param {(element: T) => boolean} isBefore
 */
function lowerBound(array, isBefore) {
  let lo = 0;
  let hi = array.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (isBefore(array[mid])) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * @typedef {{sorted: any[], matches: ((record: any) => boolean) | null, compare: (a: any, b: any) => number}} SortedView
 *   one query's result: the matching views in its order, its filter and its comparator
 */

/**
 * Take `before` out of a sorted view and put `after` in at its place (either may be null).
 * Returns false when `before` was not where the comparator says (the view is then unusable).
 * @param {SortedView} view @param {any} before @param {any} after
 */
export function patchSorted(view, before, after) {
  const { sorted, matches, compare } = view;
  if (before && (!matches || matches(before))) {
    const at = lowerBound(sorted, (x) => compare(x, before) < 0);
    if (sorted[at] !== before) return false;
    sorted.splice(at, 1);
  }
  if (after && (!matches || matches(after))) sorted.splice(lowerBound(sorted, (x) => compare(x, after) < 0), 0, after);
  return true;
}

export class ViewCache {
  /** @param {{generation: number, entities: Record<string, any>}} host the store (its change generation and metadata, read live) */
  constructor(host) {
    this.host = host;
    /** @type {Map<string, {ids: string[], views: any[]}>} every view of an entity, in id order */
    this.lists = new Map();
    /** @type {Map<string, Map<string, SortedView>>} sorted views per entity (activitypointer too), by query */
    this.sorted = new Map();
  }

  /** The kept views of an entity (not activitypointer), or undefined. @param {string} entity */
  list(entity) {
    return this.lists.get(entity);
  }

  /**
   * Keep the views read for an entity, unless the store changed since `generation` (read before
   * the records were): that read may miss the change.
   * @param {string} entity @param {number} generation @param {string[]} ids @param {any[]} views
   */
  keepList(entity, generation, ids, views) {
    if (generation === this.host.generation) this.lists.set(entity, { ids, views });
  }

  /**
   * Where runQuery keeps the sorted views of `entity` (its memo), while the store has not changed
   * since `generation` (read before the records were); undefined otherwise (that result is not
   * kept, as the records it sorts may miss a change).
   * @param {string} entity @param {number} generation
   */
  memo(entity, generation) {
    if (generation !== this.host.generation) return undefined;
    let memo = this.sorted.get(entity);
    if (!memo) this.sorted.set(entity, (memo = new Map()));
    while (memo.size >= MAX_VIEWS) memo.delete(/** @type {string} */ (memo.keys().next().value)); // the oldest goes
    return memo;
  }

  /** Forget everything kept (a cold start, as after opening the store). */
  clear() {
    this.lists.clear();
    this.sorted.clear();
  }

  /** Forget everything kept of an entity (and of activitypointer when it is an activity). @param {string} entity */
  drop(entity) {
    this.lists.delete(entity);
    this.sorted.delete(entity);
    if (entity === "activitypointer" || this.host.entities[entity]?.is_activity) this.sorted.delete("activitypointer");
  }

  /**
   * A store change: patch what is kept of each entity it names, or drop it (see the rule above).
   * @param {string[]} entities every entity the change touched
   * @param {Changes} [changes] the records it touched; without them every named entity is dropped
   * @returns {Map<string, [any, any][]>} for each entity patched, its changed views as [before, after]
   *   (null for none): what else is kept of them (the sealed quick-find index) is patched alike
   */
  apply(entities, changes) {
    /** @type {Map<string, [any, any][]>} */
    const patched = new Map();
    for (const entity of new Set(entities)) {
      const changed = changes?.byEntity.get(entity);
      const list = this.lists.get(entity);
      const pairs = changed && list && patchable(changed.size, list.ids.length) ? this.#patch(entity, list, changed) : null;
      if (pairs) patched.set(entity, pairs);
      else this.drop(entity);
    }
    return patched;
  }

  /**
   * Patch one entity's list and sorted views: the changed views as [before, after], or null when a
   * sorted view did not hold a view where it should (then the caller drops them all).
   * @param {string} entity @param {{ids: string[], views: any[]}} list @param {Map<string, any>} changed
   */
  #patch(entity, list, changed) {
    /** @type {[any, any][]} */
    const pairs = [];
    for (const [id, view] of changed) {
      const after = view === null ? null : structuredClone(view); // the caller's object may change later
      const at = lowerBound(list.ids, (x) => x < id);
      const found = list.ids[at] === id;
      const before = found ? list.views[at] : null;
      if (found && after) list.views[at] = after;
      else if (found) {
        list.ids.splice(at, 1);
        list.views.splice(at, 1);
      } else if (after) {
        list.ids.splice(at, 0, id);
        list.views.splice(at, 0, after);
      }
      if (before || after) pairs.push([before, after]);
    }
    const kinds = this.host.entities[entity]?.is_activity ? [entity, "activitypointer"] : [entity];
    for (const kind of kinds) {
      for (const view of this.sorted.get(kind)?.values() || []) {
        for (const [before, after] of pairs) if (!patchSorted(view, before, after)) return null;
      }
    }
    return pairs;
  }
}
