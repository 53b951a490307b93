// @ts-check
/**
 * The only module that touches IndexedDB. One database per (organisation, user) store on the
 * device; its object stores are named here and nowhere else.
 *
 *   records  key [entity, id]: {entity, id, server, view, pending, tokens}
 *            server = the last state the server confirmed; view = server + pending operations
 *   queue    key seq: the pending operations, in order (PROTOCOL.md §5 op + created_at,
 *            the local effects and the records they touch)
 *   meta     key "key": device id, next seq, cursor, customizations, checkpoints, sync times;
 *            "vault": the data key wrapped by the app PIN, when the store is encrypted
 *   errors   key op_id: sync errors the user can read, retry or discard
 *
 * With the app PIN on (DESIGN.md §6) the values are sealed by store.js: only the keys, the
 * entity, seq numbers, the "entity|id" pairs an op touches and pending counts stay readable.
 */

export const DB_PREFIX = "outpost";
export const DB_VERSION = 1;
export const RECORDS = "records";
export const QUEUE = "queue";
export const META = "meta";
export const ERRORS = "errors";

/** @param {string} org @param {string} userId */
export function dbName(org, userId) {
  return `${DB_PREFIX}:${org}:${userId}`;
}

/**
 * A request's result as a promise.
 * @template T
 * @param {IDBRequest<T>} req
 * @returns {Promise<T>}
 */
export function promised(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/**
 * Open (creating or upgrading) a store database.
 * @param {string} name
 * @returns {Promise<IDBDatabase>}
 */
export function openDB(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, DB_VERSION);
    req.onupgradeneeded = (event) => {
      const db = req.result;
      // Walk each schema version in turn, so an old device upgrades step by step.
      if (event.oldVersion < 1) {
        const records = db.createObjectStore(RECORDS, { keyPath: ["entity", "id"] });
        records.createIndex("entity", "entity");
        records.createIndex("tokens", "tokens", { multiEntry: true });
        const queue = db.createObjectStore(QUEUE, { keyPath: "seq" });
        queue.createIndex("touches", "touches", { multiEntry: true }); // "entity|id" of every record an op changes
        db.createObjectStore(META, { keyPath: "key" });
        db.createObjectStore(ERRORS, { keyPath: "op_id" });
      }
    };
    req.onsuccess = () => {
      const db = req.result;
      // Another tab deleting or upgrading this database must not be blocked by us.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error("The device store is open in an older version of the app; close other tabs."));
  });
}

/**
 * Run `fn` in one transaction and resolve with its result once the transaction commits.
 * Everything `fn` does commits together or not at all.
 * @template T
 * @param {IDBDatabase} db
 * @param {string[]} stores
 * @param {IDBTransactionMode} mode
 * @param {(tx: IDBTransaction) => Promise<T> | T} fn
 * @returns {Promise<T>}
 */
export function transact(db, stores, mode, fn) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(stores, mode, { durability: "strict" });
    /** @type {T} */
    let result;
    let failed = false;
    tx.oncomplete = () => (failed ? undefined : resolve(result));
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("The device store transaction was aborted."));
    Promise.resolve()
      .then(() => fn(tx))
      .then((value) => {
        result = value;
      })
      .catch((err) => {
        failed = true;
        try {
          tx.abort();
        } catch {
          /* already finished */
        }
        reject(err);
      });
  });
}

/**
 * Await a promise that is not IndexedDB's (WebCrypto) without letting the transaction commit:
 * a transaction ends once no request is pending, so keep one cheap read pending until the
 * promise settles, and settle inside that read's callback, while the transaction is active.
 * @template T
 * @param {IDBTransaction} tx
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
export function during(tx, promise) {
  return new Promise((resolve, reject) => {
    /** @type {{ok: boolean, value: any}|null} */
    let settled = null;
    promise.then(
      (value) => (settled = { ok: true, value }),
      (value) => (settled = { ok: false, value }),
    );
    const store = tx.objectStore(tx.objectStoreNames[0]);
    const spin = () => {
      const req = store.count(IDLE_KEY);
      req.onsuccess = () => {
        if (!settled) spin();
        else if (settled.ok) resolve(settled.value);
        else reject(settled.value);
      };
      req.onerror = () => reject(req.error);
    };
    spin();
  });
}
const IDLE_KEY = -1; // no store here has number keys below 1: counting it reads nothing

/**
 * Every value of an index range (or a whole store).
 * @param {IDBObjectStore | IDBIndex} source
 * @param {IDBKeyRange | IDBValidKey | null} [query]
 * @param {number} [count]
 */
export function getAll(source, query, count) {
  return promised(source.getAll(query ?? null, count));
}

/**
 * Delete a store database entirely.
 * @param {string} name
 */
export function deleteDB(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = () => resolve(undefined);
    req.onerror = () => reject(req.error);
    req.onblocked = () => resolve(undefined); // finishes once the other connections close
  });
}

/** The names of every Outpost store database on this device. */
export async function listStores() {
  if (!indexedDB.databases) return [];
  const all = await indexedDB.databases();
  return all.map((d) => d.name || "").filter((n) => n.startsWith(`${DB_PREFIX}:`));
}
