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
 * @typedef {{entity: string, id: string, reason: string}} Drop
 * @typedef {{buckets: (depth: number) => AsyncIterable<[string, string[]]>, bucket: (prefix: string) => Promise<string[]>}} Held
 *   the ids a device holds from the server for one entity: every non-empty bucket in order, or one bucket
 */

/**
 * The ids of one entity held in memory, as a `Held` (tests, small stores).
 * @param {Iterable<string>} ids
 * @returns {Held}
 */
export function heldFrom(ids) {
  const sorted = [...ids].sort(byCodePoint);
  return {
    async *buckets(depth) {
      for (const [key, group] of [...buckets(sorted, depth)].sort((a, b) => byCodePoint(a[0], b[0]))) yield [key, group];
    },
    bucket: async (prefix) => sorted.filter((id) => id.startsWith(prefix)),
  };
}

/**
 * Answer a `scope` frame: compare each bucket with what the device holds, a bucket at a time.
 * Calls `drop` with what the device holds in buckets the server says are empty (remove at once),
 * and `send` with each `reconcile` frame in order (the last with `done`), as they fill, so
 * memory stays within a frame's ids whatever the device holds.
 * @param {ScopeFrame} frame
 * @param {(entity: string) => Promise<Held>} held the ids the device holds from the server (the store's `held`)
 * @param {{drop: (items: Drop[]) => Promise<void>|void, send: (frame: ReconcileFrame) => Promise<void>|void}} out
 * @returns {Promise<Set<string>>} the entities whose answers replace records even at the same version (`refresh`)
 */
export async function answer(frame, held, out) {
  /** @type {Set<string>} */
  const refresh = new Set();
  /** @type {Record<string, Record<string, string[]>>} */
  let pending = {};
  let any = false;
  let sent = 0;
  let counted = 0;
  /** @type {ReconcileFrame|null} */
  let ready = null; // a full frame, sent once the next one starts (the last one carries `done`)
  /** @param {string} entity @param {string} key @param {string[]} ids @param {number} count */
  const add = async (entity, key, ids, count) => {
    if (any && (sent + ids.length > MAX_PER_FRAME || counted + count > MAX_PER_FRAME)) {
      if (ready) await out.send(ready);
      ready = { type: "reconcile", check: frame.check, held: pending, done: false };
      pending = {};
      any = false;
      sent = counted = 0;
    }
    (pending[entity] ??= {})[key] = ids;
    any = true;
    sent += ids.length;
    counted += count;
  };
  for (const entity of Object.keys(frame.entities).sort(byCodePoint)) {
    const check = frame.entities[entity];
    if (check.refresh) refresh.add(entity);
    const mine = await held(entity);
    /** @param {string} key @param {string[]} ids */
    const visit = async (key, ids) => {
      const [count, serverDigest] = check.buckets[key] ?? [0, ""];
      if (count === 0) {
        if (ids.length) await out.drop(ids.map((id) => ({ entity, id, reason: "out_of_scope" })));
        return;
      }
      const same = count === ids.length && (await digest(ids)) === serverDigest;
      if (!same || check.refresh) await add(entity, key, ids, count);
    };
    const listed = Object.keys(check.buckets).sort(byCodePoint);
    if (!check.complete) {
      for (const key of listed) await visit(key, await mine.bucket(key));
      continue;
    }
    // Every bucket: the device's (in order) merged with the server's it lacks.
    let next = 0;
    for await (const [key, ids] of mine.buckets(check.depth)) {
      while (next < listed.length && byCodePoint(listed[next], key) < 0) await visit(listed[next++], []);
      if (listed[next] === key) next += 1;
      await visit(key, ids);
    }
    while (next < listed.length) await visit(listed[next++], []);
  }
  if (ready) await out.send(ready);
  await out.send({ type: "reconcile", check: frame.check, held: pending, done: true });
  return refresh;
}
