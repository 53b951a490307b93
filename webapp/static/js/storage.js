// @ts-check
/**
 * Storage you can trust: a browser may delete the device store — under storage pressure, after
 * weeks without a visit (Safari), or when the user clears the site's data — unless the site's
 * storage is persistent. Then the records come back with the next download, but changes that had
 * not synced are gone. This module makes sure the user is told, and asks for persistent storage
 * when the reason is plain.
 *
 * - A ledger outside IndexedDB remembers, per store database, that it held downloaded data and
 *   how many changes were waiting (and since when). It is kept twice, in localStorage and in a
 *   cookie, because an eviction may take one and not the other.
 * - At start, a store the ledger knows but IndexedDB no longer lists was evicted: a notice says
 *   so, and what unsynced work was lost.
 * - Storage that is not persistent and nearly full (navigator.storage.estimate) gets a notice
 *   too, with what would be lost.
 * - Right after the first download, while the user can see why, a notice asks for persistent
 *   storage (navigator.storage.persist): once per store; User Information offers it too.
 *
 * Deleting a store on purpose (Reconfigure, sign out and clear, Clear this device, a remote
 * wipe) forgets its ledger entry first, so that is never taken for an eviction.
 * Notices live in a labelled region above the screen ("Storage"), outside the screens' re-renders.
 */
import { NEW_SCREEN, h } from "./dom.js";
import { listStores } from "./idb.js";

const LEDGER = "outpost:held";
const COOKIE = "outpost_held";
const ASKED = "outpost:persist-asked:";
/** Usage over this share of the quota, with storage that is not persistent, is "nearly full". */
export const NEAR_QUOTA = 0.8;

/** @typedef {{downloaded: boolean, pending: number, since: string|null}} Held */

/** @returns {Record<string, Held>} */
function parse(/** @type {string|null|undefined} */ text) {
  try {
    const value = JSON.parse(text || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

function fromCookie() {
  const pair = document.cookie.split("; ").find((c) => c.startsWith(`${COOKIE}=`));
  return parse(pair ? decodeURIComponent(pair.slice(COOKIE.length + 1)) : null);
}

/** What the ledger says, from localStorage and the cookie together (either may be gone). @returns {Record<string, Held>} */
export function ledger() {
  let stored = {};
  try {
    stored = parse(localStorage.getItem(LEDGER));
  } catch {
    // no localStorage here: the cookie alone
  }
  const merged = { ...fromCookie(), ...stored };
  return merged;
}

/** @param {Record<string, Held>} all */
function write(all) {
  const text = JSON.stringify(all);
  try {
    localStorage.setItem(LEDGER, text);
  } catch {
    // full or unavailable: the cookie still holds it
  }
  const secure = location.protocol === "https:" ? "; Secure" : "";
  const life = Object.keys(all).length ? 400 * 24 * 3600 : 0;
  document.cookie = `${COOKIE}=${encodeURIComponent(text)}; Max-Age=${life}; Path=/; SameSite=Strict${secure}`;
}

/**
 * Note what a store holds now (called as the sync's status changes); writes only on a change.
 * @param {string} name @param {{downloaded: boolean, pending: number}} now
 */
export function note(name, now) {
  const all = ledger();
  const was = all[name];
  const since = now.pending > 0 ? (was?.pending ? was.since : new Date().toISOString()) : null;
  /** @type {Held} */
  const next = { downloaded: Boolean(now.downloaded || was?.downloaded), pending: now.pending, since };
  if (was && was.downloaded === next.downloaded && was.pending === next.pending && was.since === next.since) return;
  all[name] = next;
  write(all);
}

/** A store is deleted on purpose: no eviction to report later. @param {string|null} [name] (none: every store) */
export function forget(name = null) {
  const all = ledger();
  if (name === null) {
    write({});
    return;
  }
  delete all[name];
  write(all);
  try {
    localStorage.removeItem(ASKED + name);
  } catch {
    // nothing to forget
  }
}

/**
 * Before opening a store: whether the browser deleted it. The ledger says it held data, or changes
 * waiting, and IndexedDB no longer has it. (Needs indexedDB.databases(); without it, nothing is said.)
 * @param {string} name
 * @returns {Promise<Held|null>}
 */
export async function evicted(name) {
  const held = ledger()[name];
  if (!held || (!held.downloaded && !held.pending)) return null;
  if (!indexedDB.databases) return null;
  const present = await listStores().catch(() => null);
  if (!present || present.includes(name)) return null;
  forget(name); // said once; the new store starts its own entry
  return held;
}

/**
 * How full the storage is, and whether it is persistent.
 * @returns {Promise<{usage: number, quota: number, ratio: number, persisted: boolean}|null>}
 */
export async function pressure() {
  if (!navigator.storage?.estimate) return null;
  try {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : false;
    return { usage, quota, ratio: quota ? usage / quota : 0, persisted };
  } catch {
    return null;
  }
}

/** @param {number} bytes */
export function size(bytes) {
  if (!bytes) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  return `${(bytes / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** @param {number} n */
const changes = (n) => `${n} change${n === 1 ? "" : "s"}`;

/** @param {string|null} iso */
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : ` since ${d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })}`;
}

// --- notices -----------------------------------------------------------------------------------

function region() {
  let el = document.getElementById("storage-notices");
  if (!el) {
    el = h("section", { id: "storage-notices", class: "storage-notices", "aria-label": "Storage" });
    const view = document.getElementById("view");
    if (view) view.before(el);
    else document.body.prepend(el);
  }
  return el;
}

/**
 * Show a notice (replacing one of the same kind).
 * @param {string} kind @param {{title: string, text: string[], tone: "danger"|"warning"|"info", role?: string, persist?: boolean, dismiss?: string, onDismiss?: () => void}} spec
 */
function show(kind, spec) {
  document.getElementById(`storage-${kind}`)?.remove();
  waiting.delete(`storage-${kind}`);
  const titleId = `storage-${kind}-title`;
  const outcome = h("p", { class: "storage-notice__outcome", role: "status" });
  const close = () => {
    notice.remove();
    spec.onDismiss?.();
  };
  const keep = spec.persist && navigator.storage?.persist
    ? h("button", { type: "button", class: "button button--primary", onclick: async (/** @type {Event} */ e) => {
        const button = /** @type {HTMLButtonElement} */ (e.currentTarget);
        button.disabled = true;
        spec.onDismiss?.();
        outcome.textContent = "Waiting for the browser's answer…";
        let granted = false;
        try {
          granted = await navigator.storage.persist();
        } catch {
          granted = false;
        }
        outcome.textContent = granted
          ? "The browser will keep Outpost's data on this device."
          : "The browser declined: it may still delete Outpost's data when space runs low. Sync often; Outpost will say so if it happens.";
        button.hidden = true;
      } }, "Keep data on this device")
    : null;
  const notice = h(
    "div",
    { id: `storage-${kind}`, class: `storage-notice storage-notice--${spec.tone}`, role: spec.role || null, "aria-labelledby": titleId },
    h("h2", { id: titleId, class: "storage-notice__title" }, spec.title),
    spec.text.map((t) => h("p", null, t)),
    outcome,
    h("div", { class: "storage-notice__actions" }, keep, h("button", { type: "button", class: "button button--secondary", onclick: close }, spec.dismiss || "Dismiss")),
  );
  place(notice, spec.tone === "danger");
  return notice;
}

/**
 * A notice never moves what is under the user's finger. On the screens about the device (home,
 * Offline Status, User Information) it shows at once; one that is not urgent, arriving while a
 * working screen is showing (the first download ends while a list is being read), waits for the
 * next screen and is drawn with it (app.js fires NEW_SCREEN once a new screen is in place). Data
 * already lost (danger) is said at once anywhere.
 * @param {HTMLElement} notice @param {boolean} urgent
 */
function place(notice, urgent) {
  const view = document.getElementById("view");
  const screen = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0];
  if (urgent || !view || !view.hasChildNodes() || QUIET_SCREENS.includes(screen)) {
    region().appendChild(notice);
    return;
  }
  if (waiting.size === 0) {
    addEventListener(
      NEW_SCREEN,
      () => {
        for (const el of waiting.values()) region().appendChild(el);
        waiting.clear();
      },
      { once: true },
    );
  }
  waiting.set(notice.id, notice);
}

/** Routes of the screens about the device itself, where a notice moves no work. */
const QUIET_SCREENS = ["", "status", "user", "signin"];

/** Notices waiting for the next screen, by id. @type {Map<string, HTMLElement>} */
const waiting = new Map();

/** The browser deleted the store: say what was lost. @param {Held} held */
export async function tellEvicted(held) {
  const state = await pressure();
  const text = ["The browser deleted Outpost's data from this device, most likely to free space: browsers may do that to a site whose storage is not persistent."];
  if (held.pending > 0) {
    const were = held.pending === 1 ? "it is" : "they are";
    text.push(`${changes(held.pending)} made on this device${when(held.since)} had not been synced: ${were} lost. Check the records you changed and make those changes again.`);
  } else {
    text.push("No unsynced change was lost: everything had reached the server.");
  }
  if (held.downloaded) text.push("Download the offline data again (Offline Status → Download Customizations) to work without a connection.");
  show("evicted", { title: "Data on this device was deleted", text, tone: "danger", role: "alert", persist: !state?.persisted });
}

/**
 * Nearly full, and not persistent: warn, with the changes that would be lost.
 * @param {number} pending
 */
export async function checkPressure(pending) {
  const state = await pressure();
  if (!state || state.persisted || state.ratio < NEAR_QUOTA) {
    document.getElementById("storage-full")?.remove();
    waiting.delete("storage-full");
    return;
  }
  const text = [
    `Outpost's site uses ${size(state.usage)} of the ${size(state.quota)} this browser allows it (${Math.round(state.ratio * 100)}%), and its storage is not persistent: the browser may delete Outpost's data to make room.`,
    pending > 0
      ? `${changes(pending)} made on this device ${pending === 1 ? "has" : "have"} not been synced yet and would be lost. Connect to sync them.`
      : "Every change has reached the server; the records would download again.",
  ];
  show("full", { title: "Storage is nearly full", text, tone: "warning", role: "status", persist: true });
}

/**
 * Right after the first download: ask for persistent storage, saying why (once per store).
 * @param {string} name
 */
export async function offerPersistence(name) {
  if (!navigator.storage?.persist) return;
  try {
    if (localStorage.getItem(ASKED + name)) return;
  } catch {
    return;
  }
  const state = await pressure();
  if (state?.persisted) return;
  const asked = () => {
    try {
      localStorage.setItem(ASKED + name, new Date().toISOString());
    } catch {
      // asked again next time
    }
  };
  show("persist", {
    title: "Keep your offline data on this device?",
    text: [
      "Outpost now holds your records here for working without a connection, and changes you make offline wait here until they sync. Unless you allow it, the browser may delete this data when space runs low.",
    ],
    tone: "info",
    persist: true,
    dismiss: "Not now",
    onDismiss: asked,
  });
}

/**
 * Follow a store's sync status (call after the sync has read its counts): keep the ledger, check
 * the quota now and after each download, and ask for persistence after the store's first download.
 * @param {string} name @param {{subscribe: (fn: (s: any) => void) => () => void}} sync
 * @returns {() => void} stop following
 */
export function watch(name, sync) {
  const hadData = Boolean(ledger()[name]?.downloaded);
  let downloading = false;
  let checked = false;
  return sync.subscribe((s) => {
    note(name, { downloaded: Boolean(s.offlineReady), pending: s.pending || 0 });
    if (s.download) downloading = true;
    const finished = downloading && !s.download && s.offlineReady;
    if (finished) {
      downloading = false;
      if (!hadData) void offerPersistence(name);
    }
    if (finished || !checked) {
      checked = true;
      void checkPressure(s.pending || 0);
    }
  });
}
