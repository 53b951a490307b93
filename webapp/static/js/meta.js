// @ts-check
/**
 * The store's settings by key: the device id, the next seq, the sync cursor, the
 * customizations, download checkpoints, sync times, the CSRF token for Background Sync, and
 * `vault`, the data key wrapped by the app PIN (read before unlocking, so never sealed).
 * Values pass through the store's codec.
 */
import { META, deleteDB, openDB, promised, transact } from "./idb.js";

export const VAULT = "vault"; // the meta row holding the wrapped data key

/**
 * A setting, or `fallback` when it is not set.
 * @param {IDBDatabase} db @param {import("./codec.js").Codec} codec @param {string} key @param {any} fallback
 */
export async function get(db, codec, key, fallback) {
  const row = await transact(db, [META], "readonly", (tx) => promised(tx.objectStore(META).get(key)));
  if (row === undefined) return fallback;
  return codec.openMeta(row);
}

/** @param {IDBDatabase} db @param {import("./codec.js").Codec} codec @param {string} key @param {any} value */
export async function set(db, codec, key, value) {
  const row = await codec.sealMeta(key, value);
  await transact(db, [META], "readwrite", (tx) => promised(tx.objectStore(META).put(row)));
}

/** The wrapped data key, or null when the store is not encrypted. @param {IDBDatabase} db @returns {Promise<import("./vault.js").Wrapping|null>} */
export async function wrapping(db) {
  const row = await transact(db, [META], "readonly", (tx) => promised(tx.objectStore(META).get(VAULT)));
  return row?.value ?? null;
}

/** Keep the wrapped data key. @param {IDBDatabase} db @param {import("./vault.js").Wrapping} value */
export async function putWrapping(db, value) {
  await transact(db, [META], "readwrite", (tx) => promised(tx.objectStore(META).put({ key: VAULT, value })));
}

/** Delete the wrapped data key (first, before the database: what is left is unreadable). @param {IDBDatabase} db */
export async function dropWrapping(db) {
  await transact(db, [META], "readwrite", (tx) => promised(tx.objectStore(META).delete(VAULT)));
}

/**
 * Delete a store database by name, its wrapped key first (Clear this device).
 * @param {string} name
 */
export async function destroyStore(name) {
  const db = await openDB(name);
  await dropWrapping(db).catch(() => {});
  db.close();
  await deleteDB(name);
}
