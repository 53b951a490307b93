// @ts-check
/**
 * The sync loop over the WebSocket (PROTOCOL.md §5): hello, first download (paged and
 * resumable), pull, push of the queue in order, live changes, heartbeats, reconnects with
 * exponential back-off and jitter. Exactly one tab runs the loop for a store (Web Locks, or a
 * lease in localStorage where there are none: tabs.js); the others hear about changes through
 * a BroadcastChannel (or localStorage events) and ask the loop to push. Without Background Sync
 * the queue drains when the app starts, when the network returns and when it comes back to the
 * foreground. The queue is pushed pipelined: up to PUSH_WINDOW frames in flight, read from
 * IndexedDB in chunks after the last seq sent, their acks matched to them by seq.
 * Status is an immutable snapshot; listeners hear only real changes.
 */
import { CALL_TIMEOUT_MS, SESSION_TIMEOUT_MS } from "./api.js";
import { Download } from "./download.js";
import { answer } from "./scope.js";
import { Store } from "./store.js";
import { exclusive, tabChannel } from "./tabs.js";

export const APP_VERSION = "1.0.0";
const PUSH_BATCH = 100;
const PUSH_BYTES = 512 * 1024;
/** Push frames in flight at once (docs/protocol.md §5: the server answers them in order). */
const PUSH_WINDOW = 4;
const HEARTBEAT_MS = 25_000;
const SILENCE_MS = 60_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** The socket's opening handshake and the hello's welcome: a network that never answers ends the attempt. */
const CONNECT_TIMEOUT_MS = 10_000;
/** The meta key of each entity's own sync time (see #synced). */
export const ENTITY_SYNC_TIMES = "entity_sync_times";
/** Close codes of a server that is restarting (docs/protocol.md): come back after a random wait. */
const RESTART_CODES = [1001, 1012];
const RESTART_SPREAD_MS = 10_000;
/** How a `rows` frame's text begins (docs/protocol.md §5): handed to the download worker unparsed. */
const ROWS = '{"type":"rows"';

/**
 * @typedef {{
 *   connection: "offline"|"connecting"|"online"|"signed-out"|"locked",
 *   phase: "idle"|"downloading"|"pulling"|"pushing",
 *   pending: number, lastSync: string|null, download: {entity: string, received: number, total: number|null, done: string[]}|null,
 *   error: string|null, updatesAvailable: boolean, serverVersion: string|null, offlineReady: boolean, leader: boolean,
 * }} SyncStatus
 * @typedef {{frames: any[], wake: (() => void)|null, closed: SyncError|null}} Inbox
 */

export class SyncError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Sync {
  /**
   * @param {Store} store
   * @param {{wsUrl?: string, onWipe?: (reason: string) => void, fetchImpl?: typeof fetch}} [options]
   */
  constructor(store, options = {}) {
    this.store = store;
    this.wsUrl = options.wsUrl || `${location.origin.replace(/^http/, "ws")}/api/sync`;
    this.onWipe = options.onWipe || (() => {});
    this.fetch = options.fetchImpl || fetch.bind(window);
    /** @type {SyncStatus} */
    this.status = Object.freeze({
      connection: "offline",
      phase: "idle",
      pending: 0,
      lastSync: null,
      download: null,
      error: null,
      updatesAvailable: false,
      serverVersion: null,
      offlineReady: false,
      leader: false,
    });
    /** @type {Set<(s: SyncStatus) => void>} */
    this.listeners = new Set();
    /** Who hears of changes the server refused or resolved (their op ids). @type {Set<(opIds: string[]) => void>} */
    this.errorListeners = new Set();
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {{types: string[], resolve: (f: any) => void, reject: (e: any) => void}|null} */
    this.waiter = null;
    /** Acks and errors of the push frames in flight, while the queue is pushed. @type {Inbox|null} */
    this.inbox = null;
    /** The first download in progress: it takes the `rows` frames and failures (download.js). @type {Download|null} */
    this.downloading = null;
    this.applying = Promise.resolve();
    /** Scope checks being answered: check id -> the entities whose answers replace at the same version. @type {Map<string, Set<string>>} */
    this.checks = new Map();
    this.stopped = false;
    this.attempt = 0;
    /** @type {(() => void)|null} */
    this.wakeUp = null;
    /** Sockets whose session has ended (#drop), so that a late close event changes nothing. @type {WeakSet<WebSocket>} */
    this.dropped = new WeakSet();
    /** Fails the socket being opened, when it is given up on before it opens. @type {((e: Error) => void)|null} */
    this.opening = null;
    this.wanted = { push: false, download: false };
    this.lastFrameAt = 0;
    this.closeCode = 0;
    this.channel = tabChannel(`outpost-sync:${store.name}`);
    /** Whether this tab still holds the sync lock (a lease can be lost while the tab sleeps). */
    this.held = () => true;
    if (this.channel) this.channel.onmessage = (e) => this.#onBroadcast(e.data);
    this.relaying = false; // true while re-announcing another tab's change here: never echo it back
    this.backgroundSyncAsked = false; // once per batch of pending work (reset when the queue empties)
    this.unsubscribe = store.subscribe(({ entities }) => {
      if (!this.relaying) this.channel?.postMessage({ type: "changed", entities });
    });
    this.onOnline = () => this.kick();
    // The browser says the network is gone: say Offline now and let go of the socket, rather than
    // wait for a closing handshake that a dead network may hold up for a minute.
    this.onOffline = () => this.ws && this.#drop(this.ws);
    this.onVisible = () => {
      if (document.visibilityState === "visible") this.kick();
      else if (this.status.pending > 0) this.#registerBackgroundSync(); // the tab may be closing
    };
    this.onWorkerMessage = (/** @type {MessageEvent} */ e) => e.data?.type === "outpost-sync" && this.kick();
  }

  // --- status ---------------------------------------------------------------------------

  /** @param {(s: SyncStatus) => void} fn */
  subscribe(fn) {
    this.listeners.add(fn);
    fn(this.status);
    return () => this.listeners.delete(fn);
  }

  /** Hear of every change the server refuses or resolves, as the acks arrive. @param {(opIds: string[]) => void} fn */
  onErrors(fn) {
    this.errorListeners.add(fn);
    return () => this.errorListeners.delete(fn);
  }

  /** @param {Partial<SyncStatus>} patch */
  #set(patch) {
    const next = { ...this.status, ...patch };
    if (Object.keys(next).every((k) => /** @type {any} */ (next)[k] === /** @type {any} */ (this.status)[k])) return;
    this.status = Object.freeze(next);
    for (const fn of this.listeners) {
      try {
        fn(this.status);
      } catch (err) {
        console.error("sync status listener failed", err);
      }
    }
  }

  async refreshCounts() {
    const [pending, downloaded, lastSync] = await Promise.all([
      this.store.pendingCount(),
      this.store.getMeta("downloaded_version", null),
      this.store.getMeta("last_sync", null),
    ]);
    this.#set({ pending, offlineReady: Boolean(downloaded), lastSync });
  }

  // --- life cycle -----------------------------------------------------------------------

  /** Start syncing: this tab runs the loop if it gets the lock, else it listens. */
  async start() {
    addEventListener("online", this.onOnline);
    addEventListener("offline", this.onOffline);
    document.addEventListener("visibilitychange", this.onVisible);
    navigator.serviceWorker?.addEventListener("message", this.onWorkerMessage);
    await this.refreshCounts();
    const run = async (/** @type {() => boolean} */ held) => {
      this.held = held;
      this.#set({ leader: true });
      try {
        await this.#loop();
      } finally {
        this.#set({ leader: false });
      }
    };
    exclusive(`outpost-sync:${this.store.name}`, run, () => this.stopped).catch((err) => console.error("sync lock", err));
  }

  /** Stop the loop and close the socket. */
  stop() {
    this.stopped = true;
    removeEventListener("online", this.onOnline);
    removeEventListener("offline", this.onOffline);
    document.removeEventListener("visibilitychange", this.onVisible);
    navigator.serviceWorker?.removeEventListener("message", this.onWorkerMessage);
    this.unsubscribe();
    this.channel?.close();
    this.ws?.close();
    this.#wake();
  }

  /** Something to do (operations queued, back online, foreground): run a sync soon. */
  kick() {
    this.wanted.push = true;
    if (!this.status.leader) this.channel?.postMessage({ type: "kick" });
    this.#wake();
    this.refreshCounts()
      .then(() => {
        if (this.status.pending === 0) this.backgroundSyncAsked = false;
        else if (!this.backgroundSyncAsked) {
          // Once per batch: the worker's nudge comes back here as a kick, which must not re-ask.
          this.backgroundSyncAsked = true;
          this.#registerBackgroundSync();
        }
      })
      .catch(() => {});
  }

  /** Where the browser has Background Sync, the queue also reaches the server after the tab is closed. */
  #registerBackgroundSync() {
    navigator.serviceWorker?.ready
      .then((r) => /** @type {any} */ (r).sync?.register("outpost-queue"))
      .catch(() => {}); // no Background Sync here: the queue drains at the next start instead
  }

  /** Download the offline data again (after "Update" or "Download Customizations"). */
  requestDownload() {
    this.wanted.download = true;
    if (!this.status.leader) this.channel?.postMessage({ type: "download" });
    this.#wake();
  }

  #wake() {
    const fn = this.wakeUp;
    this.wakeUp = null;
    fn?.();
  }

  /** @param {any} msg */
  #onBroadcast(msg) {
    if (msg?.type === "kick" && this.status.leader) this.kick();
    else if (msg?.type === "download" && this.status.leader) this.requestDownload();
    else if (msg?.type === "changed") {
      this.relaying = true;
      try {
        this.store.notify(msg.entities || []);
      } finally {
        this.relaying = false;
      }
      this.refreshCounts().catch(() => {});
    }
  }

  /** @param {number} ms */
  #pause(ms) {
    return new Promise((resolve) => {
      if (this.stopped) return resolve(undefined); // stopped while a request was out: nothing will wake it
      const timer = setTimeout(() => {
        this.wakeUp = null;
        resolve(undefined);
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve(undefined);
      };
    });
  }

  async #loop() {
    while (!this.stopped && this.held()) {
      try {
        await this.#session();
        this.attempt = 0;
      } catch (err) {
        const e = /** @type {any} */ (err);
        if (e?.code === "signed_out") {
          this.#set({ connection: "signed-out", phase: "idle", error: "Sign in again to sync." });
          await this.#pause(BACKOFF_MAX_MS);
          continue;
        }
        if (e?.code === "wiped") return;
        this.#set({ connection: navigator.onLine ? "connecting" : "offline", phase: "idle", error: e?.message ?? String(err) });
      } finally {
        this.ws?.close();
        this.ws = null;
      }
      if (this.stopped || !this.held()) return;
      if (RESTART_CODES.includes(this.closeCode)) {
        // The server is restarting: every device comes back, so spread them over the window.
        this.closeCode = 0;
        await this.#pause(BACKOFF_MIN_MS / 2 + Math.random() * RESTART_SPREAD_MS);
        continue;
      }
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
      this.attempt += 1;
      await this.#pause(base / 2 + Math.random() * base); // exponential back-off with jitter
    }
  }

  // --- one connected session -------------------------------------------------------------

  async #session() {
    this.#set({ connection: "connecting" });
    // Under a time limit: a network that accepts and never answers is offline, not a wedged loop.
    const signal = AbortSignal.timeout(SESSION_TIMEOUT_MS);
    const me = await this.fetch("/api/auth/me", { credentials: "same-origin", signal }).catch(() => null);
    if (me && me.status === 401) throw new SyncError("signed_out", "The session has ended.");
    if (!me || !me.ok) throw new SyncError("offline", "The server cannot be reached.");
    this.closeCode = 0;
    await this.#connect();
    const deviceId = await this.deviceId();
    const welcome = await this.#request(
      {
        type: "hello",
        device_id: deviceId,
        org: this.store.org,
        app_version: APP_VERSION,
        cursor: await this.store.getMeta("cursor", null),
        metadata_version: this.store.customizations?.version ?? null,
        pending_ops: await this.store.pendingCount(),
      },
      ["welcome"],
      CONNECT_TIMEOUT_MS,
    );
    // Updates are available while the offline data on the device is not of the server's version.
    const downloaded = await this.store.getMeta("downloaded_version", null);
    this.attempt = 0; // connected: the next drop waits the shortest back-off again
    this.#set({
      connection: "online",
      // An offline-ready device pulls (and pushes) at once: say so in the same breath, so the
      // top bar goes from Offline straight to Syncing, never "Online · 3 pending" in between.
      phase: downloaded ? "pulling" : this.status.phase,
      error: null,
      serverVersion: welcome.metadata_version,
      updatesAvailable: welcome.metadata_version !== downloaded,
    });
    const heartbeat = setInterval(() => this.#heartbeat(), HEARTBEAT_MS / 5);
    try {
      while (!this.stopped && this.ws && this.ws.readyState === WebSocket.OPEN) {
        if (this.wanted.download) {
          this.wanted.download = false;
          try {
            await this.#downloadAll();
          } catch (err) {
            this.wanted.download = true; // cut off: the next session resumes it from its checkpoints
            throw err;
          }
        }
        if (await this.store.getMeta("downloaded_version", null)) {
          await this.#pullAll();
          await this.#pushAll();
          await this.store.setMeta("last_sync", new Date().toISOString());
          await this.#checkVersion();
        }
        await this.refreshCounts();
        this.#set({ phase: "idle" });
        if (this.wanted.push || this.wanted.download) continue;
        // Closed while no request was waiting (between two, or in #checkVersion): nobody would wake the pause.
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) break;
        const interval = (this.store.customizations?.sync_interval_minutes ?? 15) * 60_000;
        await this.#pause(interval); // woken early by kick(), a download request or a closed socket
      }
    } finally {
      clearInterval(heartbeat);
    }
    throw new SyncError("offline", "The connection closed.");
  }

  /**
   * At each sync of a connected device: did the administrator publish new customizations since
   * the hello? (A 304 when not.) If so, updates are available, as after a new hello.
   */
  async #checkVersion() {
    const known = this.status.serverVersion;
    const resp = await this.fetch("/api/metadata", {
      credentials: "same-origin",
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      headers: known ? { "If-None-Match": `"${known}"` } : {},
    }).catch(() => null);
    if (!resp || resp.status !== 200) return;
    const doc = await resp.json().catch(() => null); // the body is under the same time limit
    if (!doc?.version || doc.version === known) return;
    const downloaded = await this.store.getMeta("downloaded_version", null);
    this.#set({ serverVersion: doc.version, updatesAvailable: doc.version !== downloaded });
  }

  /** This store's device id, minted on first use (a new store gets a new id). */
  async deviceId() {
    let id = await this.store.getMeta("device_id", null);
    if (!id) {
      id = crypto.randomUUID();
      await this.store.setMeta("device_id", id);
    }
    return id;
  }

  #connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.wsUrl);
      this.ws = ws;
      this.opening = reject;
      // No answer to the opening handshake in time: give up on it (the browser's own limit is minutes).
      const timer = setTimeout(() => this.#drop(ws), CONNECT_TIMEOUT_MS);
      ws.onopen = () => {
        clearTimeout(timer);
        this.opening = null;
        this.lastFrameAt = Date.now();
        resolve(undefined);
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new SyncError("offline", "The sync channel could not be opened."));
      };
      ws.onclose = (event) => {
        if (this.ws === ws) this.closeCode = event.code;
        this.#drop(ws);
      };
      ws.onmessage = (event) => this.#onFrame(event.data);
    });
  }

  /**
   * This socket's session is over (closed, or given up on): fail what waits on it, say so, and wake
   * the loop. Once per socket; a socket given up on is closed too, and its late close event finds
   * nothing left to do.
   * @param {WebSocket} ws
   */
  #drop(ws) {
    if (this.dropped.has(ws)) return;
    this.dropped.add(ws);
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
    if (this.ws !== ws) return;
    this.ws = null;
    this.opening?.(new SyncError("offline", "The sync channel could not be opened."));
    this.opening = null;
    this.waiter?.reject(new SyncError("offline", "The connection closed."));
    this.waiter = null;
    this.#closeInbox(new SyncError("offline", "The connection closed."));
    this.downloading?.fail(new SyncError("offline", "The connection closed."));
    this.#set({ connection: navigator.onLine ? "connecting" : "offline" });
    this.#wake();
  }

  #heartbeat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (!this.held()) {
      this.#drop(this.ws); // another tab took the sync over: end this session
      return;
    }
    if (Date.now() - this.lastFrameAt > SILENCE_MS) {
      this.#drop(this.ws); // the other side went quiet: reconnect
      return;
    }
    if (Date.now() - this.lastFrameAt > HEARTBEAT_MS) this.ws.send(JSON.stringify({ type: "ping" }));
  }

  /** @param {string} text */
  #onFrame(text) {
    this.lastFrameAt = Date.now();
    if (this.downloading && text.startsWith(ROWS)) {
      this.downloading.rows(text); // parsed by the download worker, never here
      return;
    }
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "ping") {
      this.ws?.send(JSON.stringify({ type: "pong" }));
      return;
    }
    if (frame.type === "pong") return;
    if (frame.type === "wipe") {
      this.#wipe(frame.reason || "This device was revoked.");
      return;
    }
    if (frame.type === "changes" && (frame.check || !(this.waiter && this.waiter.types.includes("changes")))) {
      this.#then(() => this.#applyChanges(frame)); // live, or the answer to a scope check (tagged `check`)
      return;
    }
    if (frame.type === "scope") {
      const ws = this.ws;
      this.#then(() => this.#answerScope(frame, ws));
      return;
    }
    if (frame.type === "reconciled") {
      this.#then(async () => {
        this.checks.delete(frame.check);
        await this.refreshCounts();
      });
      return;
    }
    if (frame.type === "error" && frame.check) {
      // A scope check the server no longer awaits (answered too late, or replaced): forget it.
      this.#then(async () => void this.checks.delete(frame.check));
      return;
    }
    if (this.inbox && (frame.type === "ack" || frame.type === "error")) {
      // While the queue is pushed, only push frames await an answer: the pipeline matches them.
      this.inbox.frames.push(frame);
      const wake = this.inbox.wake;
      this.inbox.wake = null;
      wake?.();
      return;
    }
    if (frame.type === "error" && this.downloading && !this.waiter) {
      this.downloading.fail(new SyncError(frame.code === "unauthenticated" ? "signed_out" : frame.code, frame.message));
      return;
    }
    if (frame.type === "error" && frame.code === "unauthenticated") {
      this.waiter?.reject(new SyncError("signed_out", frame.message));
      this.waiter = null;
      return;
    }
    const waiter = this.waiter;
    if (waiter && (waiter.types.includes(frame.type) || frame.type === "error")) {
      this.waiter = null;
      if (frame.type === "error") waiter.reject(new SyncError(frame.code, frame.message));
      else waiter.resolve(frame);
    }
  }

  /** @param {string} reason */
  async #wipe(reason) {
    this.stopped = true;
    this.waiter?.reject(new SyncError("wiped", reason));
    this.#closeInbox(new SyncError("wiped", reason));
    this.ws?.close();
    await this.store.destroy().catch(() => {});
    this.onWipe(reason);
  }

  /**
   * Send a frame and wait for the answer of one of `types` (or an error frame); with `timeoutMs`,
   * no answer in time drops the socket (the session ends as for any drop).
   * @param {any} msg @param {string[]} types @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  #request(msg, types, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new SyncError("offline", "Not connected."));
        return;
      }
      const ws = this.ws;
      const done = (/** @type {(v: any) => void} */ fn) => (/** @type {any} */ v) => {
        clearTimeout(timer);
        fn(v);
      };
      const waiter = { types, resolve: done(resolve), reject: done(reject) };
      // Given up on at once: the close event can come late on a silent network (the closing handshake).
      const timer = timeoutMs ? setTimeout(() => this.#drop(ws), timeoutMs) : 0;
      this.waiter = waiter;
      ws.send(JSON.stringify(msg));
    });
  }

  /** Run `fn` after every frame received before it has been applied, in order. @param {() => Promise<void>} fn */
  #then(fn) {
    this.applying = this.applying.then(fn).catch((err) => console.error("applying changes", err));
  }

  /** @param {any} frame a `changes` frame */
  async #applyChanges(frame) {
    // The answer to a scope check with `refresh`: its records replace those held, even at the same version.
    await this.store.applyServer(frame.upserts || [], frame.check ? this.checks.get(frame.check) : undefined);
    await this.store.applyRemoves(frame.removes || []);
    if (!frame.check) await this.store.setMeta("cursor", frame.cursor); // a check's answer leaves the cursor as it was
    await this.#synced([...(frame.upserts || []), ...(frame.removes || [])].map((/** @type {any} */ item) => item.entity));
  }

  /**
   * A scope check (docs/protocol.md, "Scope checks"): drop at once what the device holds in
   * buckets the server says are empty, and send the ids of every other bucket that differs in
   * `reconcile` frames. The server answers with `changes` (tagged `check`), then `reconciled`.
   * Pending local changes stay queued: a record that left keeps its operation, which is sent
   * and refused by the server with an error naming the record (records.js keeps its name).
   * @param {import("./scope.js").ScopeFrame} frame @param {WebSocket|null} ws the socket it came on
   */
  async #answerScope(frame, ws) {
    this.checks.set(frame.check, new Set(Object.entries(frame.entities).filter(([, c]) => c.refresh).map(([e]) => e)));
    await answer(frame, (entity) => this.store.held(entity), {
      drop: async (items) => {
        await this.store.applyRemoves(items);
        await this.#synced([...new Set(items.map((i) => i.entity))]);
      },
      send: (msg) => {
        if (!ws || ws !== this.ws || ws.readyState !== WebSocket.OPEN) throw new SyncError("offline", "The connection closed during a scope check.");
        ws.send(JSON.stringify(msg));
      },
    });
  }

  /**
   * Each entity's own sync time (Offline Status): when the device last took that entity's data
   * from the server — its download, a change to one of its records, or the answer to a change.
   * @param {string[]} entities
   */
  async #synced(entities) {
    if (!entities.length) return;
    const times = { ...(await this.store.getMeta(ENTITY_SYNC_TIMES, null)) };
    const now = new Date().toISOString();
    for (const entity of entities) times[entity] = now;
    await this.store.setMeta(ENTITY_SYNC_TIMES, times);
  }

  async #pullAll() {
    this.#set({ phase: "pulling" });
    let cursor = await this.store.getMeta("cursor", 0);
    for (;;) {
      await this.applying;
      // scope: 1 — this device answers scope checks, so what it holds follows every security change.
      const frame = await this.#request({ type: "pull", cursor, scope: 1 }, ["changes"]);
      this.#then(() => this.#applyChanges(frame)); // in order with the frames that follow it
      await this.applying;
      cursor = frame.cursor;
      if (!frame.more) return;
    }
  }

  /**
   * Push the queue pipelined: up to PUSH_WINDOW frames of up to PUSH_BATCH ops in flight, each
   * chunk read from IndexedDB after the last seq sent (never the whole queue), every ack's
   * results matched by seq to the frame that carried them and stored as they come (op_id checked
   * by the queue). The server applies frames in the order sent and re-answers a re-sent seq with
   * its first result, so a dropped connection, a restart or an error frame just ends the session:
   * the next one re-sends from the queue's head, and nothing is applied twice or out of order. A
   * refused op is an ack like any other and never holds the rest back.
   */
  async #pushAll() {
    this.wanted.push = false;
    /** @type {Set<number>[]} the seqs each frame in flight still awaits, oldest first */
    const inFlight = [];
    let lastSent = 0;
    /** @type {Inbox} */
    const inbox = { frames: [], wake: null, closed: null };
    this.inbox = inbox;
    try {
      for (;;) {
        while (inFlight.length < PUSH_WINDOW) {
          const ops = await this.store.pending(PUSH_BATCH, lastSent);
          if (!ops.length) break;
          const batch = wireBatch(ops);
          if (inbox.closed) throw inbox.closed;
          if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new SyncError("offline", "Not connected.");
          this.#set({ phase: "pushing" });
          this.ws.send(JSON.stringify({ type: "push", ops: batch }));
          inFlight.push(new Set(batch.map((op) => op.seq)));
          lastSent = batch[batch.length - 1].seq;
        }
        if (!inFlight.length) return;
        const frame = await this.#pushAnswer(inbox);
        if (frame.type === "error") {
          // seq_gap, seq_reused, rate_limited, bad_message: nothing from there on was applied.
          // The session ends; the next re-sends the queue from its head after the back-off.
          throw new SyncError(frame.code === "unauthenticated" ? "signed_out" : frame.code, frame.message);
        }
        const results = frame.results || [];
        for (const result of results) {
          const awaiting = inFlight.find((seqs) => seqs.has(result.seq));
          if (!awaiting) throw new SyncError("bad_ack", `An ack for seq ${result.seq}, which is not in flight.`);
          awaiting.delete(result.seq);
        }
        await this.#storeAck(results);
        while (inFlight.length && inFlight[0].size === 0) inFlight.shift();
      }
    } finally {
      if (this.inbox === inbox) this.inbox = null;
    }
  }

  /** The next ack or error of a push frame in flight. @param {Inbox} inbox @returns {Promise<any>} */
  async #pushAnswer(inbox) {
    for (;;) {
      const frame = inbox.frames.shift();
      if (frame) return frame;
      if (inbox.closed) throw inbox.closed;
      await new Promise((resolve) => {
        inbox.wake = () => resolve(undefined);
      });
    }
  }

  /** @param {SyncError} err */
  #closeInbox(err) {
    const inbox = this.inbox;
    if (!inbox) return;
    inbox.closed = err;
    const wake = inbox.wake;
    inbox.wake = null;
    wake?.();
  }

  /** Store an ack's results: the ops leave the queue, refused ones become sync errors. @param {any[]} results */
  async #storeAck(results) {
    await this.store.applyAck(results);
    const refused = results.filter((r) => r.status !== "applied").map((r) => r.op_id);
    if (refused.length) {
      for (const fn of this.errorListeners) {
        try {
          fn(refused);
        } catch (err) {
          console.error("sync error listener failed", err);
        }
      }
    }
    await this.#synced(results.flatMap((r) => [...(r.records || []), ...(r.removed || [])].map((/** @type {any} */ item) => item.entity)));
    await this.refreshCounts();
  }

  /** The first download of every offline entity, streamed and resumable (download.js). */
  async #downloadAll() {
    const download = new Download({
      store: this.store,
      send: (msg) => {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new SyncError("offline", "Not connected.");
        this.ws.send(JSON.stringify(msg));
      },
      set: (patch) => this.#set(patch),
      synced: (entities) => this.#synced(entities),
      failure: (code, message) => new SyncError(code, message),
    });
    this.downloading = download;
    try {
      await download.all();
    } finally {
      if (this.downloading === download) this.downloading = null;
    }
    await this.refreshCounts();
  }
}

/**
 * The wire form of queued ops, as many as fit in one push frame (PUSH_BYTES; at least one).
 * @param {import("./queue.js").Op[]} ops
 */
function wireBatch(ops) {
  /** @type {any[]} */
  const batch = [];
  let bytes = 0;
  for (const op of ops) {
    const wire = { op_id: op.op_id, seq: op.seq, kind: op.kind, entity: op.entity, id: op.id, base_version: op.base_version, changes: op.changes };
    if (op.command) Object.assign(wire, { command: op.command, args: op.args });
    const size = JSON.stringify(wire).length;
    if (batch.length && bytes + size > PUSH_BYTES) break;
    batch.push(wire);
    bytes += size;
  }
  return batch;
}
