// @ts-check
/**
 * Encryption at rest for the device store (DESIGN.md §6), with WebCrypto only.
 *
 *   data key   32 random bytes; every sealed value is AES-256-GCM under it, with a fresh
 *              96-bit IV and the value's place in the store as additional data (so a
 *              ciphertext cannot be moved to another row). Imported non-extractable.
 *   PIN key    PBKDF2-SHA-256 (600,000 iterations, a random 16-byte salt) of the app PIN; it
 *              only wraps the data key (AES-GCM), which is all the device keeps of it.
 *   server     a copy of the raw data key, sent once when the PIN is first set, so the user
 *              can reset a forgotten PIN (api/devicekeys.py).
 *
 * The raw data key exists in memory only while a PIN is set or reset; after that only the
 * non-extractable CryptoKey stays, for as long as the app is unlocked.
 */

export const PBKDF2_ITERATIONS = 600_000;
export const MAX_ATTEMPTS = 10; // wrong PINs in a row before the wrapped key is deleted
export const MIN_PIN_LENGTH = 6;
const IV_BYTES = 12;
const CHECK = "outpost-vault"; // sealed at set-up: tells a right key (from the server) from a wrong one

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * What the device keeps of the key (plaintext by necessity: it is read before unlocking).
 * @typedef {{salt: Uint8Array<ArrayBuffer>, iterations: number, wrapped: Uint8Array<ArrayBuffer>|null, check: Uint8Array<ArrayBuffer>, failures: number}} Wrapping
 */

export class WrongPin extends Error {
  /** @param {number} left attempts left before the wrapped key is deleted */
  constructor(left) {
    super(left > 0 ? `That PIN is not right. ${left} attempt${left === 1 ? "" : "s"} left.` : "That PIN is not right.");
    this.left = left;
  }
}

/** 32 fresh random bytes: a new data key. */
export function newDataKey() {
  return crypto.getRandomValues(new Uint8Array(32));
}

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** @param {string} text */
export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** The AES-GCM key that wraps the data key, from the PIN. @param {string} pin @param {Uint8Array<ArrayBuffer>} salt @param {number} iterations */
async function pinKey(pin, salt, iterations) {
  const material = await crypto.subtle.importKey("raw", encoder.encode(pin), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** @param {CryptoKey} key @param {Uint8Array<ArrayBuffer>} plain @param {string} where */
async function encrypt(key, plain, where) {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const body = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(where) }, key, plain));
  const out = new Uint8Array(IV_BYTES + body.length);
  out.set(iv);
  out.set(body, IV_BYTES);
  return out;
}

/** @param {CryptoKey} key @param {Uint8Array<ArrayBuffer>} sealed @param {string} where */
async function decrypt(key, sealed, where) {
  const bytes = sealed instanceof Uint8Array ? sealed : new Uint8Array(sealed);
  const iv = bytes.subarray(0, IV_BYTES);
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: encoder.encode(where) }, key, bytes.subarray(IV_BYTES)));
}

export class Vault {
  /** @param {CryptoKey} key the data key (non-extractable) */
  constructor(key) {
    this.key = key;
  }

  /** The vault of a raw data key. @param {Uint8Array<ArrayBuffer>} raw */
  static async fromRaw(raw) {
    return new Vault(await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]));
  }

  /** Encrypt any JSON value; `where` names its place in the store. @param {any} value @param {string} where */
  seal(value, where) {
    return encrypt(this.key, encoder.encode(JSON.stringify(value)), where);
  }

  /** Decrypt what `seal` made for the same place (rejects when the key or place is wrong). @param {Uint8Array<ArrayBuffer>} sealed @param {string} where */
  async open(sealed, where) {
    return JSON.parse(decoder.decode(await decrypt(this.key, sealed, where)));
  }

  /** Whether this key sealed `wrapping.check`: true for the store's own key. @param {Wrapping} wrapping */
  async fits(wrapping) {
    try {
      return (await this.open(wrapping.check, "check")) === CHECK;
    } catch {
      return false;
    }
  }
}

/**
 * Wrap a raw data key under a PIN (and seal the check value with the data key itself).
 * @param {Uint8Array<ArrayBuffer>} raw @param {string} pin
 * @returns {Promise<Wrapping>}
 */
export async function wrap(raw, pin) {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await pinKey(pin, salt, PBKDF2_ITERATIONS);
  const vault = await Vault.fromRaw(raw);
  return {
    salt,
    iterations: PBKDF2_ITERATIONS,
    wrapped: await encrypt(key, raw, "data-key"),
    check: await vault.seal(CHECK, "check"),
    failures: 0,
  };
}

/**
 * The vault a PIN opens, or null when the PIN is wrong.
 * @param {Wrapping} wrapping @param {string} pin
 */
export async function unwrap(wrapping, pin) {
  if (!wrapping.wrapped) return null;
  const key = await pinKey(pin, wrapping.salt, wrapping.iterations);
  let raw;
  try {
    raw = await decrypt(key, wrapping.wrapped, "data-key");
  } catch {
    return null; // the GCM tag does not match: another PIN
  }
  const vault = await Vault.fromRaw(raw);
  raw.fill(0);
  return vault;
}
