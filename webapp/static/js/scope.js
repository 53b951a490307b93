// @ts-check
/**
 * Scope checks on the device (docs/protocol.md §5, "Scope checks").
 *
 * After a security change or as time passes a window, the server may send a `scope` frame: per
 * entity, a summary of the ids a fresh download would give this device now. Here the device
 * compares it with the ids it holds from the server, drops at once what it holds in buckets the
 * server says are empty, and builds the `reconcile` frames carrying its ids in every other
 * bucket that differs. The server answers those with `changes` (tagged with the check's id):
 * removes for ids out of scope, upserts for records missing — applied like any other changes.
 *
 * The checksum is a rule the server computes too (webapp/sync/checksum.py); both are tested
 * against tests/cases/scope_checksum.json. Ids are lower-case UUIDs, so code point order is the
 * plain string order used here.
 */

/** A reconcile frame carries at most this many ids, and buckets the server counted at most this many in. */
export const MAX_PER_FRAME = 5000;
const DIGEST_LENGTH = 16;

/** @param {string} a @param {string} b */
function byCodePoint(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The digest of a set of ids: SHA-256 of the ids sorted and joined by "\n", 16 hex digits.
 * @param {Iterable<string>} ids
 * @returns {Promise<string>}
 */
export async function digest(ids) {
  const sorted = [...ids].sort(byCodePoint);
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(sorted.join("\n")));
  return [...new Uint8Array(hash)]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")
    .slice(0, DIGEST_LENGTH);
}

/** The bucket depth the server uses for `count` ids. @param {number} count */
export function depthFor(count) {
  if (count <= 1000) return 0;
  if (count <= 16000) return 1;
  return 2;
}

/**
 * Ids grouped by their first `depth` characters.
 * @param {Iterable<string>} ids @param {number} depth
 * @returns {Map<string, string[]>}
 */
export function buckets(ids, depth) {
  /** @type {Map<string, string[]>} */
  const out = new Map();
  for (const id of ids) {
    const key = id.slice(0, depth);
    const group = out.get(key);
    if (group) group.push(id);
    else out.set(key, [id]);
  }
  return out;
}

/**
 * `{prefix: [count, digest]}` for every non-empty bucket.
 * @param {Iterable<string>} ids @param {number} depth
 * @returns {Promise<Record<string, [number, string]>>}
 */
export async function summarise(ids, depth) {
  /** @type {Record<string, [number, string]>} */
  const out = {};
  for (const [key, group] of buckets(ids, depth)) out[key] = [group.length, await digest(group)];
  return out;
}

/**
 * @typedef {{depth: number, complete: boolean, refresh: boolean, buckets: Record<string, [number, string]>}} EntityCheck
 * @typedef {{type: "scope", check: string, cursor: number, entities: Record<string, EntityCheck>}} ScopeFrame
 * @typedef {{type: "reconcile", check: string, held: Record<string, Record<string, string[]>>, done: boolean}} ReconcileFrame
 */

/**
 * Compare a `scope` frame with what the device holds.
 * @param {ScopeFrame} frame
 * @param {(entity: string) => Promise<string[]>} heldIds the ids the device holds from the server (the store's `heldIds`)
 * @returns {Promise<{drop: {entity: string, id: string, reason: string}[], frames: ReconcileFrame[], refresh: Set<string>}>}
 *   `drop`: what to remove at once (buckets the server says are empty); `frames`: to send in
 *   order; `refresh`: entities whose answers replace records even at the same version
 */
export async function answer(frame, heldIds) {
  /** @type {{entity: string, id: string, reason: string}[]} */
  const drop = [];
  /** @type {[string, string, string[], number][]} */
  const differ = [];
  /** @type {Set<string>} */
  const refresh = new Set();
  for (const [entity, check] of Object.entries(frame.entities)) {
    if (check.refresh) refresh.add(entity);
    const mine = buckets(await heldIds(entity), check.depth);
    const keys = new Set(Object.keys(check.buckets));
    if (check.complete) for (const key of mine.keys()) keys.add(key);
    for (const key of [...keys].sort(byCodePoint)) {
      const [count, serverDigest] = check.buckets[key] ?? [0, ""];
      const ids = mine.get(key) ?? [];
      if (count === 0) {
        for (const id of ids) drop.push({ entity, id, reason: "out_of_scope" });
        continue;
      }
      const same = count === ids.length && (await digest(ids)) === serverDigest;
      if (!same || check.refresh) differ.push([entity, key, ids, count]);
    }
  }
  /** @type {ReconcileFrame[]} */
  const frames = [];
  /** @type {Record<string, Record<string, string[]>>} */
  let held = {};
  let sent = 0;
  let counted = 0;
  for (const [entity, key, ids, count] of differ) {
    if (Object.keys(held).length && (sent + ids.length > MAX_PER_FRAME || counted + count > MAX_PER_FRAME)) {
      frames.push({ type: "reconcile", check: frame.check, held, done: false });
      held = {};
      sent = counted = 0;
    }
    (held[entity] ??= {})[key] = ids;
    sent += ids.length;
    counted += count;
  }
  frames.push({ type: "reconcile", check: frame.check, held, done: true });
  return { drop, frames, refresh };
}
