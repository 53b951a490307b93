// @ts-check
/**
 * Tabs of one origin working together where a browser lacks Web Locks or BroadcastChannel
 * (older Safari and Firefox, some embedded and private contexts).
 *
 *   tabChannel(name)         BroadcastChannel; else messages through localStorage `storage`
 *                            events (every other tab of the origin hears them); else null.
 *   exclusive(name, fn, ...) navigator.locks.request(name, fn); else a lease in localStorage:
 *                            one tab holds it and renews it, the others wait and take over
 *                            when it is released (the tab closed) or expires (the tab died).
 *
 * The lease is written, then read back after SETTLE_MS: of two tabs that saw no holder at the
 * same moment, the later write wins and the earlier tab backs off. A holder whose lease was
 * taken meanwhile (its timers were throttled in the background past the TTL) learns it at its
 * next renewal: `held()` turns false and it must stop what it was doing; `exclusive` then waits
 * for the lease again. With no localStorage either, `fn` simply runs (every tab syncs; the
 * server's ledger makes a re-sent operation harmless).
 */

const LEASE_TTL_MS = 10_000;
const RENEW_MS = 3_000;
const RETRY_MS = 2_000;
const SETTLE_MS = 100;

/**
 * @typedef {{postMessage: (data: any) => void, close: () => void, onmessage: ((e: any) => void)|null}} TabChannel (`e.data` is the message)
 */

/** @returns {Storage|null} localStorage, when this context may use it */
function storage() {
  try {
    const s = window.localStorage;
    const probe = "outpost:probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    return null;
  }
}

/**
 * A message channel to this origin's other tabs.
 * @param {string} name
 * @returns {TabChannel|null}
 */
export function tabChannel(name) {
  if (typeof BroadcastChannel === "function") {
    try {
      return new BroadcastChannel(name);
    } catch {
      // refused in this context: fall through
    }
  }
  const s = storage();
  return s ? new StorageChannel(s, name) : null;
}

/** BroadcastChannel's shape over localStorage: a write is a `storage` event in every other tab. */
class StorageChannel {
  /** @param {Storage} store @param {string} name */
  constructor(store, name) {
    this.store = store;
    this.key = `outpost:channel:${name}`;
    /** @type {((e: {data: any}) => void)|null} */
    this.onmessage = null;
    this.listener = (/** @type {StorageEvent} */ e) => {
      if (e.key !== this.key || !e.newValue) return;
      try {
        this.onmessage?.({ data: JSON.parse(e.newValue).data });
      } catch {
        // not ours, or malformed: ignore
      }
    };
    addEventListener("storage", this.listener);
  }

  /** @param {any} data */
  postMessage(data) {
    try {
      // A fresh nonce: writing the same value twice would fire no event.
      this.store.setItem(this.key, JSON.stringify({ data, nonce: `${Date.now()}:${Math.random()}` }));
    } catch {
      // storage full or refused: the other tabs catch up at their next sync
    }
  }

  close() {
    removeEventListener("storage", this.listener);
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn` while this tab alone holds `name` among the origin's tabs.
 *
 * With Web Locks, `fn` runs once, under the lock, until it returns. With the lease fallback,
 * `fn(held)` must return soon after `held()` turns false; it is then run again once this tab
 * holds the lease again, until `done()` says to stop.
 * @param {string} name
 * @param {(held: () => boolean) => Promise<void>} fn
 * @param {() => boolean} done
 * @returns {Promise<void>}
 */
export async function exclusive(name, fn, done) {
  if (navigator.locks?.request) {
    await navigator.locks.request(name, () => fn(() => true));
    return;
  }
  const s = storage();
  if (!s) {
    await fn(() => true);
    return;
  }
  const lease = new Lease(s, name);
  while (!done()) {
    if (!(await lease.acquire(done))) return;
    try {
      await fn(() => lease.held);
    } finally {
      lease.release();
    }
  }
}

/** A lease in localStorage: `{owner, until}`, renewed by its holder. */
class Lease {
  /** @param {Storage} store @param {string} name */
  constructor(store, name) {
    this.store = store;
    this.key = `outpost:lease:${name}`;
    this.owner = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    this.held = false;
    this.timer = 0;
    /** @type {(() => void)|null} */
    this.nudge = null;
    // A released lease is a `storage` event in the waiting tabs: try at once, not at the next retry.
    addEventListener("storage", (e) => {
      if (e.key === this.key && !e.newValue) this.nudge?.();
    });
    addEventListener("pagehide", () => this.release());
  }

  /** @returns {{owner: string, until: number}|null} */
  read() {
    try {
      const value = JSON.parse(this.store.getItem(this.key) || "null");
      return value && typeof value.owner === "string" && typeof value.until === "number" ? value : null;
    } catch {
      return null;
    }
  }

  write() {
    this.store.setItem(this.key, JSON.stringify({ owner: this.owner, until: Date.now() + LEASE_TTL_MS }));
  }

  /**
   * Wait until this tab holds the lease (true), or `done()` (false).
   * @param {() => boolean} done
   */
  async acquire(done) {
    while (!done()) {
      const current = this.read();
      if (!current || current.until < Date.now() || current.owner === this.owner) {
        try {
          this.write();
        } catch {
          return true; // cannot write: behave as if alone
        }
        await sleep(SETTLE_MS);
        if (this.read()?.owner === this.owner) {
          this.held = true;
          this.timer = window.setInterval(() => this.renew(), RENEW_MS);
          return true;
        }
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, RETRY_MS);
        this.nudge = () => {
          clearTimeout(timer);
          resolve(undefined);
        };
      });
      this.nudge = null;
    }
    return false;
  }

  renew() {
    if (!this.held) return;
    if (this.read()?.owner !== this.owner) {
      this.held = false; // another tab took it over while this one was asleep: stop
      clearInterval(this.timer);
      return;
    }
    try {
      this.write();
    } catch {
      // storage refused: the lease lapses and another tab may take over
    }
  }

  release() {
    clearInterval(this.timer);
    if (!this.held) return;
    this.held = false;
    try {
      if (this.read()?.owner === this.owner) this.store.removeItem(this.key);
    } catch {
      // nothing to release
    }
  }
}
