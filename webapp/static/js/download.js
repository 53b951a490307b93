// @ts-check
/**
 * The first download, streamed (docs/protocol.md §5 "Streamed download", issue 14). For each
 * offline entity the device sends one `stream` frame; the server keeps STREAM_WINDOW pages in
 * flight and sends the next each time a page is acknowledged (`stream_ack`), which the device
 * does once that page is committed. The page's main thread never parses a page: the sync
 * socket hands each `rows` frame's text to the download worker (downloadworker.js), which
 * decodes it, computes the search tokens, seals it when the PIN is on and commits it with the
 * entity's checkpoint in one transaction. Here: the order of entities, the checkpoints that make
 * it resumable, progress, and pages that must go through the store (operations queued).
 * Without module workers the same writer (downloadpage.js) runs in the page.
 */
import { Sink } from "./downloadpage.js";

export const STREAM_PAGE = 2000;
export const STREAM_WINDOW = 3;
/** Lists and search are told of the records already written at most this often, while an entity downloads. */
const NOTIFY_MS = 3000;
/** How long a download cut off waits for the writer to commit the pages it already has. */
const DRAIN_MS = 30_000;

/**
 * @typedef {{store: import("./store.js").Store, send: (msg: any) => void, set: (patch: any) => void,
 *   synced: (entities: string[]) => Promise<void>, failure: (code: string, message: string) => Error}} Host
 * @typedef {{post: (msg: any) => void, close: () => void, replies: any[], wake: (() => void)|null}} Writer
 */

export class Download {
  /** @param {Host} host */
  constructor(host) {
    this.host = host;
    /** @type {Writer|null} */
    this.writer = null;
    /** @type {Error|null} */
    this.failed = null;
    this.lastNotify = 0;
  }

  /** A `rows` frame's text, as received: to the writer, unparsed. @param {string} text */
  rows(text) {
    this.writer?.post({ type: "rows", text });
  }

  /** The socket closed or the server refused: the download stops at its last committed page. @param {Error} err */
  fail(err) {
    this.failed = err;
    this.#wake();
  }

  #wake() {
    const w = this.writer;
    const fn = w?.wake;
    if (w) w.wake = null;
    fn?.();
  }

  /** The next answer of the writer. @returns {Promise<any>} */
  async #reply() {
    const w = /** @type {Writer} */ (this.writer);
    for (;;) {
      if (this.failed) throw this.failed;
      const reply = w.replies.shift();
      if (reply) return reply;
      await new Promise((resolve) => {
        w.wake = () => resolve(undefined);
      });
    }
  }

  /** Wait until the writer has committed every page handed to it (a while at most). */
  async #drain() {
    const w = /** @type {Writer} */ (this.writer);
    w.post({ type: "drain" });
    const until = Date.now() + DRAIN_MS;
    while (Date.now() < until) {
      const reply = w.replies.shift();
      if (reply?.type === "drained" || reply?.type === "failed") return;
      if (reply) continue; // committed after the cut: its checkpoint is stored with it
      await new Promise((resolve) => {
        w.wake = () => resolve(undefined);
        setTimeout(resolve, 500);
      });
    }
  }

  /** A worker over this store's database, or the same writer in the page. @returns {Promise<Writer>} */
  async #open() {
    const store = this.host.store;
    /** @type {Writer} */
    const writer = { post: () => {}, close: () => {}, replies: [], wake: null };
    const answer = (/** @type {any} */ reply) => {
      writer.replies.push(reply);
      this.#wake();
    };
    let worker = null;
    try {
      worker = new Worker(new URL("./downloadworker.js", import.meta.url), { type: "module" });
    } catch {
      worker = null; // no module workers here
    }
    if (worker) {
      const w = worker;
      w.onmessage = (e) => answer(e.data);
      w.onerror = (e) => answer({ type: "failed", message: e.message || "The download worker failed." });
      writer.post = (msg) => w.postMessage(msg);
      writer.close = () => w.terminate();
      w.postMessage({ type: "open", name: store.name, key: store.vault?.key ?? null });
    } else {
      const sink = new Sink(store.db, store.codec);
      let chain = Promise.resolve();
      writer.post = (msg) => {
        chain = chain.then(async () => {
          if (msg.type === "begin") sink.begin(msg);
          else if (msg.type === "drain") answer({ type: "drained" });
          else answer(await sink.rows(msg.text));
        }).catch((err) => answer({ type: "failed", message: String(err?.message || err) }));
      };
    }
    return writer;
  }

  /** The first download of every offline entity, resumable from each entity's checkpoint. */
  async all() {
    const { store } = this.host;
    const entities = store.offlineEntities().map((e) => e.logical_name);
    const version = store.customizations?.version ?? null;
    this.writer = await this.#open();
    this.lastNotify = Date.now();
    const done = [];
    try {
      for (const entity of entities) {
        const key = `download:${entity}`;
        /** @type {import("./downloadpage.js").Mark} */
        let mark = await store.getMeta(key, null);
        if (!mark || mark.version !== version) {
          await store.clearEntity(entity);
          mark = { version, after: null, received: 0, total: null, done: false };
        }
        if (!mark.done) await this.#entity(entity, mark, [...done]);
        done.push(entity);
        store.notify([entity]);
        await this.host.synced([entity]);
      }
    } finally {
      await this.#drain(); // cut off: what was received is still committed, so the next session resumes after it
      this.writer.close();
      this.writer = null;
    }
    // Pull from the older of the two cursors: repeated changes are harmless, missed ones are not.
    const startCursor = await store.getMeta("download_cursor", null);
    const cursor = await store.getMeta("cursor", null);
    await store.setMeta("cursor", cursor === null ? (startCursor ?? 0) : Math.min(cursor, startCursor ?? cursor));
    for (const e of Object.values(store.entities)) {
      if (!entities.includes(e.logical_name) && e.logical_name !== "activitypointer") await store.clearEntity(e.logical_name);
    }
    await store.setMeta("downloaded_version", version);
    await store.setMeta("download_cursor", null);
    this.host.set({ download: null, updatesAvailable: false });
  }

  /**
   * One entity's stream, from its checkpoint to its last page: each page committed (by the
   * writer, or here through the store) is acknowledged, which brings the next.
   * @param {string} entity @param {import("./downloadpage.js").Mark} mark @param {string[]} done
   */
  async #entity(entity, mark, done) {
    const { store, send, set } = this.host;
    const writer = /** @type {Writer} */ (this.writer);
    const progress = (/** @type {import("./downloadpage.js").Mark} */ m) =>
      set({ phase: "downloading", download: { entity, received: m.received, total: m.total, done } });
    progress(mark);
    writer.post({ type: "begin", entity, meta: store.entities[entity], mark, cursor: await store.getMeta("download_cursor", null) });
    send({ type: "stream", entity, after: mark.after, limit: STREAM_PAGE, window: STREAM_WINDOW });
    while (!mark.done) {
      const reply = await this.#reply();
      if (reply.type === "failed") throw this.host.failure("download_failed", reply.message);
      if (reply.type === "fallback") {
        // Operations are queued: the store applies the page and rebases them on top.
        await store.applyServer(reply.records.map((/** @type {any} */ record) => ({ entity, record })));
        await store.setMeta("download_cursor", reply.cursor);
        await store.setMeta(`download:${entity}`, reply.mark);
      }
      mark = reply.mark;
      if (!mark.done) send({ type: "stream_ack", entity, n: reply.n });
      progress(mark);
      if (Date.now() - this.lastNotify > NOTIFY_MS) {
        this.lastNotify = Date.now();
        store.notify([entity]); // lists and search see what is written so far
      }
    }
  }
}
