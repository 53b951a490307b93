// @ts-check
/**
 * How values look on disk: as they are (`PLAIN`), or sealed under the app PIN's data key
 * (`SealedCodec`, DESIGN.md §6). The records, queue, meta and errors layers hand every value
 * to their store's codec on the way into IndexedDB and back on the way out; nothing else sees
 * ciphertext.
 *
 * What a sealed row keeps readable is what IndexedDB must index or what is read before
 * unlocking: record keys (entity, id), the server's version number and the pending count; op
 * seq numbers and the "entity|id" pairs they touch; meta keys and three meta values that are
 * not user data (the wrapped key, the device id, the next seq); error ids and seqs. The
 * search tokens index of a sealed record stays empty.
 *
 * Each codec works in a page, a worker or the service worker alike (no DOM).
 */

/** Meta rows read before unlocking, or inside a write where no crypto may run: never sealed. */
export const PLAIN_META = new Set(["vault", "device_id", "next_seq"]);

/**
 * A records row as the code uses it: `server` = the last state the server confirmed, `view` =
 * server + the pending operations, `pending` = how many effects are applied on top.
 * @typedef {{entity: string, id: string, server: any, view: any, pending: number, tokens?: string[]}} RecordRow
 */

/** The locked store's error: nothing may be read or written before the PIN. */
export function lockedError() {
  return Object.assign(new Error("The device store is locked: unlock it with the PIN."), { code: "locked" });
}

/** Values stored as they are. */
export const PLAIN = Object.freeze({
  sealed: false,
  /** @param {RecordRow} row */
  sealRecord: async (row) => row,
  /** @param {any} raw @returns {Promise<RecordRow>} */
  openRecord: async (raw) => raw,
  /** @param {any} op */
  sealOp: async (op) => op,
  /** @param {any} raw */
  openOp: async (raw) => raw,
  /** @param {string} key @param {any} value */
  sealMeta: async (key, value) => ({ key, value }),
  /** @param {any} row */
  openMeta: async (row) => row.value,
  /** @param {any} error */
  sealError: async (error) => error,
  /** @param {any} raw */
  openError: async (raw) => raw,
  readable: () => true,
  forget() {},
});

/** @typedef {typeof PLAIN | typeof LOCKED | SealedCodec} Codec */

/**
 * Values sealed with AES-GCM under the store's data key, each with its place as additional data
 * (so a ciphertext cannot be moved to another row).
 */
export class SealedCodec {
  /** @param {import("./vault.js").Vault} vault */
  constructor(vault) {
    /** @type {import("./vault.js").Vault|null} */
    this.vault = vault;
    this.sealed = true;
    /**
     * Records opened (or sealed) in this session, by "entity|id", with the IV of their sealed
     * value: a value is sealed with a fresh IV each time, so an unchanged IV means an unchanged
     * record and it need not be decrypted again. @type {Map<string, {iv: string, row: RecordRow}>}
     */
    this.opened = new Map();
  }

  /** The vault, or the locked error once the key has left memory. */
  #key() {
    if (!this.vault) throw lockedError();
    return this.vault;
  }

  /** Whether values can be opened now (the key is still in memory). */
  readable() {
    return this.vault !== null;
  }

  /** The data key leaves memory (the store closes or is destroyed). */
  forget() {
    this.vault = null;
    this.opened.clear();
  }

  /** A records row as stored. @param {RecordRow} row */
  async sealRecord(row) {
    const { entity, id, server, view, pending } = row;
    const body = view === server ? { server, same: true } : { server, view };
    const version = server?.versionnumber ?? null; // readable, so a download need not decrypt to compare
    const sealed = await this.#key().seal(body, `records|${entity}|${id}`);
    this.opened.set(`${entity}|${id}`, { iv: ivOf(sealed), row: { entity, id, pending, server, view, tokens: [] } });
    return { entity, id, pending, version, tokens: [], sealed };
  }

  /** A records row as the code uses it. @param {any} raw @returns {Promise<RecordRow>} */
  async openRecord(raw) {
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

  /** @param {any} op */
  async sealOp(op) {
    return { seq: op.seq, touches: op.touches, sealed: await this.#key().seal(op, `queue|${op.seq}`) };
  }

  /** @param {any} raw */
  async openOp(raw) {
    if (!raw?.sealed) return raw;
    return this.#key().open(raw.sealed, `queue|${raw.seq}`);
  }

  /** @param {string} key @param {any} value */
  async sealMeta(key, value) {
    if (PLAIN_META.has(key)) return { key, value };
    return { key, sealed: await this.#key().seal(value, `meta|${key}`) };
  }

  /** @param {any} row a meta row as stored */
  async openMeta(row) {
    return row.sealed ? this.#key().open(row.sealed, `meta|${row.key}`) : row.value;
  }

  /** @param {any} error a sync error row */
  async sealError(error) {
    return { op_id: error.op_id, seq: error.seq, sealed: await this.#key().seal(error, `errors|${error.op_id}`) };
  }

  /** @param {any} raw */
  async openError(raw) {
    return raw?.sealed ? this.#key().open(raw.sealed, `errors|${raw.op_id}`) : raw;
  }
}

/**
 * The codec of a locked store: it reads the plain meta rows (the wrapped key, the device id)
 * and refuses everything sealed.
 */
export const LOCKED = Object.freeze({
  ...PLAIN,
  sealed: true,
  sealRecord: async () => Promise.reject(lockedError()),
  /** @param {any} raw */
  openRecord: async (raw) => (raw?.sealed ? Promise.reject(lockedError()) : raw),
  sealOp: async () => Promise.reject(lockedError()),
  /** @param {any} raw */
  openOp: async (raw) => (raw?.sealed ? Promise.reject(lockedError()) : raw),
  /** @param {string} key @param {any} value */
  sealMeta: async (key, value) => (PLAIN_META.has(key) ? { key, value } : Promise.reject(lockedError())),
  /** @param {any} row */
  openMeta: async (row) => (row.sealed ? Promise.reject(lockedError()) : row.value),
  sealError: async () => Promise.reject(lockedError()),
  /** @param {any} raw */
  openError: async (raw) => (raw?.sealed ? Promise.reject(lockedError()) : raw),
  readable: () => false,
});

/** The IV of a sealed value, as a string to compare. @param {Uint8Array|ArrayBuffer} sealed */
function ivOf(sealed) {
  const bytes = sealed instanceof Uint8Array ? sealed : new Uint8Array(sealed);
  return String.fromCharCode(...bytes.subarray(0, 12));
}
