// @ts-check
/**
 * The download worker (a module worker): the first download's pages are parsed, decoded, given
 * their search tokens (sealed under the PIN's data key, when the store has one) and committed
 * here, in one transaction each, so the page's main thread only forwards frames and shows
 * progress (download.js). It shares the IndexedDB schema (idb.js) and the codec (codec.js).
 *
 * Messages, in order: `{type: "open", name, key?}` (the database; `key`, the unlocked data key,
 * a CryptoKey), `{type: "begin", entity, meta, mark, cursor}`, then `{type: "rows", text}` per
 * page; `{type: "drain"}` is answered `{type: "drained"}` once every page before it is committed. Each `rows` is answered as `Sink.rows` says (downloadpage.js); a failure as
 * `{type: "failed", message}`.
 */
import { PLAIN, SealedCodec } from "./codec.js";
import { Sink } from "./downloadpage.js";
import { openDB } from "./idb.js";
import { Vault } from "./vault.js";

const scope = /** @type {any} */ (globalThis);
/** @type {Sink|null} */
let sink = null;
let chain = Promise.resolve();

/** @param {any} msg */
async function handle(msg) {
  if (msg.type === "open") {
    const db = await openDB(msg.name);
    sink = new Sink(db, msg.key ? new SealedCodec(new Vault(msg.key)) : PLAIN);
  } else if (msg.type === "begin") {
    sink?.begin(msg);
  } else if (msg.type === "rows") {
    if (!sink) throw new Error("The download worker has no database open.");
    scope.postMessage(await sink.rows(msg.text));
  } else if (msg.type === "drain") {
    scope.postMessage({ type: "drained" }); // every page before it is committed
  }
}

scope.onmessage = (/** @type {MessageEvent} */ event) => {
  chain = chain
    .then(() => handle(event.data))
    .catch((err) => scope.postMessage({ type: "failed", message: String(err?.message || err) }));
};
