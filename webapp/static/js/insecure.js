// @ts-check
/**
 * A page that is not a secure context: `outpost demo --host` opened from a phone as
 * http://<address>:8000/. Browsers give service workers (the offline app shell), Background Sync
 * and WebCrypto's `crypto.subtle` and `crypto.randomUUID` only to HTTPS pages and localhost.
 * Online use still works there: this module supplies `crypto.randomUUID` from
 * `crypto.getRandomValues` (which every page has), and says plainly what does not work.
 * Imported by app.js before anything that mints an id.
 */

/** Whether offline use is possible on this page. */
export const secure = globalThis.isSecureContext !== false;

/** What the screens say on such a page. */
export const INSECURE_TEXT =
  "This address is not secure (plain HTTP), so Outpost works online only here: browsers allow the offline app only over HTTPS or on localhost.";

/** A random (version 4) UUID from getRandomValues. @returns {`${string}-${string}-${string}-${string}-${string}`} */
function randomUUID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return /** @type {any} */ (`${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`);
}

if (typeof crypto.randomUUID !== "function") {
  Object.defineProperty(crypto, "randomUUID", { value: randomUUID, configurable: true });
}
