// @ts-check
/**
 * The app: who is signed in, the device store and sync loop for that (organisation, user),
 * the "Offline Updates Available" flow, the "More" menu and hash routing to the screens in
 * views/ (each exports `render(ctx, params)` and returns an element, and may export `live`:
 * "data" to be drawn again when the device's data or the connection changes, "sync" also at
 * every step of the sync).
 *
 * Start-up works with no network: the last identity is remembered, and its store opens from
 * IndexedDB without waiting for the network; the session is checked when the server answers.
 *
 * With the app PIN (DESIGN.md §6) the store opens locked: the PIN screen comes before any
 * other, and the sync loop starts only once the store is unlocked (or its PIN is first set).
 */
import "./insecure.js"; // first: an id source on plain-HTTP pages, before anything mints one
import { ApiError, SESSION_TIMEOUT_MS, call, setCsrf } from "./api.js";
import { initConnection, showConnection } from "./connection.js";
import { announce, clearBanners } from "./syncerrors.js";
import { Data } from "./data.js";
import { NEW_SCREEN, ask, h, replace, toast } from "./dom.js";
import { forget as forgetScripts, prefetch as prefetchScripts } from "./formscripts.js";
import { dbName, listStores } from "./idb.js";
import * as storage from "./storage.js";
import { Store, destroyStore } from "./store.js";
import { Sync } from "./sync.js";
import { fromBase64, newDataKey, toBase64 } from "./vault.js";

const LAST_IDENTITY = "outpost:identity";
const SKIPPED = "outpost:skipped-version"; // the server version whose updates the user skipped
const ROUTES = {
  "": "home",
  list: "list",
  record: "record",
  new: "record",
  search: "search",
  status: "status",
  user: "userinfo",
  signin: "signin",
  pin: "pin",
};

/**
 * @typedef {{org: {id: string, name: string, friendly_name?: string, pin_required?: boolean}, user: {id: string, username: string, fullname?: string, business_unit_id?: string}}} Identity
 * @typedef {{identity: Identity|null, store: Store|null, sync: Sync|null, data: Data|null, online: boolean,
 *   navigate: (hash: string) => void, render: () => Promise<void>, drawn: () => Promise<void>, signIn: (org: string, username: string, password: string) => Promise<void>,
 *   signOut: (clear: boolean) => Promise<void>, reconfigure: () => Promise<void>, clearDevice: () => Promise<void>,
 *   updateOffline: () => Promise<void>, needsPin: () => boolean, unlock: (pin: string) => Promise<void>,
 *   setPin: (pin: string) => Promise<void>, resetPin: (password: string, pin: string) => Promise<void>}} Ctx
 */

/** @type {Ctx} */
const ctx = {
  identity: null,
  store: null,
  sync: null,
  data: null,
  online: navigator.onLine,
  navigate: (hash) => {
    if (location.hash === hash) ctx.render();
    else location.hash = hash;
  },
  render: () => render(),
  /** Settles when no screen is being drawn (what tests and benchmarks wait on, never a sleep). */
  drawn: async () => {
    while (drawing.size) await Promise.allSettled([...drawing]);
  },
  signIn,
  signOut,
  reconfigure,
  clearDevice,
  updateOffline,
  needsPin,
  unlock,
  setPin,
  resetPin,
};
Object.defineProperty(window, "Outpost", { value: { ctx }, configurable: true });

function viewRoot() {
  return document.getElementById("view") || document.body.appendChild(h("main", { id: "view" }));
}

function moreButton() {
  return [...document.querySelectorAll("button")].find((b) => (b.getAttribute("aria-label") || b.textContent || "").trim() === "More");
}

/** Remember who signed in last, so the app can open offline. @param {Identity|null} identity */
function remember(identity) {
  if (identity) localStorage.setItem(LAST_IDENTITY, JSON.stringify(identity));
  else localStorage.removeItem(LAST_IDENTITY);
}

/** @returns {Identity|null} */
function remembered() {
  try {
    return JSON.parse(localStorage.getItem(LAST_IDENTITY) || "null");
  } catch {
    return null;
  }
}

/** Work that needs a readable store, waiting for the PIN. @type {(() => Promise<void>)[]} */
let whenOpen = [];

/** Open the store for an identity; start the sync loop once the store is readable. @param {Identity} identity */
async function openDevice(identity) {
  if (ctx.store && ctx.identity?.user.id === identity.user.id && ctx.identity?.org.name === identity.org.name) {
    ctx.identity = identity; // the organisation's PIN setting may have changed
    return;
  }
  ctx.sync?.stop();
  ctx.store?.close();
  whenOpen = [];
  ctx.identity = identity;
  const lost = await storage.evicted(dbName(identity.org.name, identity.user.id)); // before opening creates it anew
  ctx.store = await Store.open(identity.org.name, identity.user);
  if (lost) void storage.tellEvicted(lost);
  Object.assign(ctx, { sync: null, data: null });
  if (!needsPin()) await startDevice();
}

/** Whether the PIN screen comes first: the store is locked, or the organisation requires a PIN it has not got yet. */
function needsPin() {
  return Boolean(ctx.store && (ctx.store.locked || (ctx.identity?.org.pin_required && !ctx.store.encrypted)));
}

/** Run `fn` once the store is readable: now, or after the PIN. @param {() => Promise<void>} fn */
async function whenReadable(fn) {
  if (ctx.sync) await fn();
  else whenOpen.push(fn);
}

/** The store is readable: start the sync loop and the offline client APIs, then what waited. */
async function startDevice() {
  if (!ctx.store) return;
  // A loop started before the server said a PIN is required (a remembered identity) stops here,
  // so the new one can take the sync lock.
  ctx.sync?.stop();
  ctx.sync = new Sync(ctx.store, { onWipe: onWiped });
  ctx.data = new Data(ctx.store, ctx.sync);
  ctx.store.subscribe(() => scheduleRefresh());
  let prompting = false;
  const sync = ctx.sync;
  let lastConnection = "";
  ctx.sync.subscribe((status) => {
    document.documentElement.dataset.connection = status.connection;
    if (ctx.sync === sync) showConnection(status); // the top bar's indicator follows at once
    // Offline Status and home's marks follow every step of the sync; lists, forms and search
    // follow the data (the store's own events) and the connection only, so a list being scrolled
    // or tapped is not rebuilt under the finger at each progress tick.
    const connectionChanged = status.connection !== lastConnection;
    lastConnection = status.connection;
    if (connectionChanged || viewRoot().dataset.live === "sync") scheduleRefresh();
    const skipped = sessionStorage.getItem(SKIPPED) === status.serverVersion;
    if (status.updatesAvailable && status.serverVersion && !skipped && !prompting && !status.download) {
      prompting = true;
      offerUpdates(status.serverVersion).finally(() => {
        prompting = false;
      });
    }
  });
  ctx.sync.onErrors((opIds) => void announce(ctx, opIds).catch((err) => console.error("sync error banner", err)));
  await ctx.sync.start();
  storage.watch(ctx.store.name, ctx.sync); // the eviction ledger, the quota, persistence after the first download
  try {
    const xrm = await import("./xrm.js");
    xrm.install(ctx);
  } catch (err) {
    console.warn("offline client APIs unavailable", err);
  }
  for (const fn of whenOpen.splice(0)) await fn();
}

/** After the first screen shows: open every record of an encrypted store in the background. */
function warmSoon() {
  const store = ctx.store;
  if (store?.encrypted) setTimeout(() => store.warm().catch((err) => console.warn("warming the store", err)), 0);
}

/** Unlock the store with the PIN, then start. @param {string} pin */
async function unlock(pin) {
  if (!ctx.store) return;
  await ctx.store.unlock(pin);
  await startDevice();
  await ctx.render();
  warmSoon();
}

/**
 * Set the first PIN: a new data key, whose copy the server keeps first (without it a forgotten
 * PIN could never be reset), then the store is sealed under it.
 * @param {string} pin
 */
async function setPin(pin) {
  if (!ctx.store) return;
  const raw = newDataKey();
  try {
    const deviceId = await ctx.store.deviceId();
    await call("PUT", `/api/device-keys/${deviceId}`, { key: toBase64(raw) });
    await ctx.store.setPin(raw, pin);
  } finally {
    raw.fill(0);
  }
  await startDevice();
  await ctx.render();
  warmSoon();
}

/** Forgot PIN: the server's copy of the key, for the password, opens the store under a new PIN. @param {string} password @param {string} pin */
async function resetPin(password, pin) {
  if (!ctx.store) return;
  const deviceId = await ctx.store.deviceId();
  const { key } = await call("POST", `/api/device-keys/${deviceId}/recover`, { password });
  const raw = fromBase64(key);
  try {
    await ctx.store.setPin(raw, pin);
  } finally {
    raw.fill(0);
  }
  await startDevice();
  await ctx.render();
  warmSoon();
}

/** Before a store is deleted: forget the server's copy of its key (best effort; needs the session). */
async function forgetKey() {
  if (!ctx.store?.encrypted) return;
  const deviceId = await ctx.store.deviceId();
  await call("DELETE", `/api/device-keys/${deviceId}`).catch(() => {});
}

let refreshTimer = 0;
/** Re-render the current screen soon after data or sync status changed: at most every 150 ms. */
function scheduleRefresh() {
  if (refreshTimer) return; // one render is already due; it will see the latest state
  refreshTimer = window.setTimeout(() => {
    refreshTimer = 0;
    const active = document.activeElement;
    // Do not pull a form out from under someone typing in it.
    if (active && viewRoot().contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName)) return;
    const live = viewRoot().dataset.live;
    if (live === "sync" || live === "data") render({ refresh: true });
  }, 150);
}

/** "Offline Updates Available": Update, or Skip for now (not asked again for this version). @param {string} version */
async function offerUpdates(version) {
  if (document.querySelector("dialog[open]")) return;
  const choice = await ask({
    title: "Offline Updates Available",
    body: ["Your administrator has changed what is available offline. Download the updates now to keep working without a connection."],
    buttons: [
      { label: "Skip for now", value: "skip" },
      { label: "Update", value: "update", kind: "primary" },
    ],
  });
  if (choice === "update") await updateOffline();
  else sessionStorage.setItem(SKIPPED, version);
}

/** Download the customizations (metadata, views, forms, profile), then the offline data. */
async function updateOffline() {
  if (!ctx.store || !ctx.sync) return;
  const doc = await call("GET", "/api/metadata");
  await ctx.store.setMeta("customizations", doc);
  ctx.store.useCustomizations(doc);
  await prefetchScripts(doc); // the forms' client scripts, kept for offline use
  ctx.sync.requestDownload();
  ctx.navigate("#/status");
}

/** @param {string} org @param {string} username @param {string} password */
async function signIn(org, username, password) {
  const me = await call("POST", "/api/auth/login", { org, username, password });
  setCsrf(me.csrf_token);
  /** @type {Identity} */
  const identity = { org: me.org, user: me.user };
  remember(identity);
  await openDevice(identity);
  await whenReadable(async () => {
    await ctx.store?.setMeta("csrf", me.csrf_token); // for the service worker's Background Sync
    if (!ctx.store?.customizations) {
      // First sign-in on this device: the screens need the customizations even online-only.
      // Taking the offline data is the user's choice, offered when the sync channel says hello.
      const doc = await call("GET", "/api/metadata");
      await ctx.store?.setMeta("customizations", doc);
      ctx.store?.useCustomizations(doc);
    }
  });
  ctx.navigate("#/");
}

/** Ask before anything unsynced would be lost; true when the user agrees to go on. @param {string} what */
async function confirmLoss(what) {
  const pending = ctx.store ? await ctx.store.pendingCount() : 0;
  const body =
    pending > 0
      ? [`${pending} change${pending === 1 ? " has" : "s have"} not been synced yet and will be lost.`, `${what}?`]
      : [`${what}? Every record and setting of this organisation on this device will be deleted.`];
  const choice = await ask({
    title: what,
    body,
    buttons: [
      { label: "Cancel", value: "cancel" },
      { label: what, value: "go", kind: "danger" },
    ],
  });
  return choice === "go";
}

/** Sign out; with `clear`, also delete this organisation's store from the device. @param {boolean} clear */
async function signOut(clear) {
  if (clear && !(await confirmLoss("Sign out and clear this device"))) return;
  if (clear) await forgetKey();
  await call("POST", "/api/auth/logout").catch(() => {});
  ctx.sync?.stop();
  if (clear && ctx.store) storage.forget(ctx.store.name);
  if (clear) await ctx.store?.destroy();
  else ctx.store?.close();
  Object.assign(ctx, { store: null, sync: null, data: null, identity: null });
  remember(null);
  setCsrf("");
  ctx.navigate("#/signin");
}

/** Reconfigure: delete this organisation's data, metadata and queue, then start afresh. */
async function reconfigure() {
  if (!ctx.store || !ctx.identity) return;
  if (!(await confirmLoss("Reconfigure"))) return;
  const identity = ctx.identity;
  ctx.sync?.stop();
  await forgetKey();
  storage.forget(ctx.store.name);
  await ctx.store.destroy();
  Object.assign(ctx, { store: null, sync: null, data: null });
  await openDevice(identity); // with the PIN on, the new store asks for a new PIN
  await whenReadable(async () => {
    const doc = await call("GET", "/api/metadata").catch(() => null);
    if (doc) {
      await ctx.store?.setMeta("customizations", doc);
      ctx.store?.useCustomizations(doc);
    }
  });
  sessionStorage.removeItem(SKIPPED);
  toast("This organisation's data was removed from the device.");
  ctx.navigate("#/");
}

/** Remove every organisation's data from this device. */
async function clearDevice() {
  if (!(await confirmLoss("Clear this device"))) return;
  await forgetKey();
  await call("POST", "/api/auth/logout").catch(() => {});
  ctx.sync?.stop();
  ctx.store?.close();
  storage.forget();
  for (const name of await listStores()) await destroyStore(name).catch((err) => console.error("clearing", name, err));
  Object.assign(ctx, { store: null, sync: null, data: null, identity: null });
  remember(null);
  ctx.navigate("#/signin");
}

/** @param {string} reason */
function onWiped(reason) {
  // Sign out on the server too: the call takes the CSRF token now, before it is forgotten.
  call("POST", "/api/auth/logout").catch(() => {});
  if (ctx.identity) void forgetScripts(ctx.identity.org.name);
  if (ctx.store) storage.forget(ctx.store.name);
  Object.assign(ctx, { store: null, sync: null, data: null, identity: null });
  remember(null);
  setCsrf("");
  toast(reason, "error");
  ctx.navigate("#/signin");
}

/** The "…" menu: Offline Status and User Information (and the way home). */
function openMenu() {
  const existing = document.getElementById("more-menu");
  if (existing) {
    existing.remove();
    return;
  }
  const button = moreButton();
  const close = () => {
    menu.remove();
    button?.setAttribute("aria-expanded", "false");
    button?.focus();
  };
  const item = (/** @type {string} */ label, /** @type {string} */ hash) =>
    h("button", { type: "button", role: "menuitem", class: "menu__item", onclick: () => { close(); ctx.navigate(hash); } }, label);
  const menu = h(
    "div",
    { id: "more-menu", class: "menu", role: "menu", "aria-label": "More", onkeydown: (/** @type {KeyboardEvent} */ e) => e.key === "Escape" && close() },
    item("Home", "#/"),
    item("Search", "#/search"),
    item("Offline Status", "#/status"),
    item("User Information", "#/user"),
  );
  // In the top bar (the banner landmark), so a screen reader finds it among the landmarks; fixed on screen.
  (document.querySelector("header.topbar") || document.getElementById("dialogs") || document.body).appendChild(menu);
  button?.setAttribute("aria-expanded", "true");
  /** @type {HTMLElement|null} */ (menu.querySelector("button"))?.focus();
}

let renderSeq = 0;
/**
 * Render the screen the hash names. Renders overlap (a slow list, then a quick hash change): only
 * the newest may show. A refresh (the same screen, after data changed) is dropped if the user began
 * editing the screen while it was being drawn: typed input is never replaced by a redraw.
 * @param {{refresh?: boolean}} [how]
 */
function render({ refresh = false } = {}) {
  const done = draw(refresh);
  drawing.add(done);
  return done.finally(() => drawing.delete(done));
}

/** Renders in flight. @type {Set<Promise<void>>} */
const drawing = new Set();

/** @param {boolean} refresh */
async function draw(refresh) {
  const seq = ++renderSeq;
  const root = viewRoot();
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const route = parts[0] || "";
  let name = /** @type {Record<string, string>} */ (ROUTES)[route] || "home";
  if (!ctx.identity && name !== "signin") name = "signin";
  else if (ctx.identity && needsPin()) name = "pin"; // nothing else is read before the PIN
  else if (name === "pin") name = "home";
  const params = { parts: parts.slice(1), query: new URLSearchParams(query), isNew: route === "new" };
  showConnection(ctx.identity && ctx.sync ? ctx.sync.status : null);
  if (!ctx.identity || !ctx.store) clearBanners();
  try {
    const view = await import(`./views/${name}.js`);
    const el = await view.render(ctx, params);
    if (seq !== renderSeq) return; // a newer render has started; its screen wins
    if (refresh && root.dataset.live === "false") return; // held by an edit made meanwhile
    root.dataset.live = view.live || "false";
    replace(root, el);
    if (!refresh) dispatchEvent(new Event(NEW_SCREEN)); // what waited for the next screen shows with it
    const heading = root.querySelector("h1, h2");
    if (heading && document.activeElement === document.body) /** @type {HTMLElement} */ (heading).setAttribute("tabindex", "-1");
  } catch (err) {
    console.error(err);
    if (seq !== renderSeq) return;
    replace(root, h("section", { class: "empty-state" }, h("h1", { class: "empty-state__title" }, "Something went wrong"), h("p", { role: "alert", class: "empty-state__text" }, String(/** @type {any} */ (err)?.message || err))));
  }
}

/**
 * The session check at start-up, under its time limit: the identity and CSRF token, "signed-out"
 * (the server said 401), or "offline" (no answer, no answer in time, or a server error).
 * @returns {Promise<{me: any}|"signed-out"|"offline">}
 */
async function checkSession() {
  try {
    return { me: await call("GET", "/api/auth/me", undefined, { timeoutMs: SESSION_TIMEOUT_MS }) };
  } catch (err) {
    return /** @type {ApiError} */ (err).status === 401 ? "signed-out" : "offline";
  }
}

/** Apply the session check's answer. @param {{me: any}|"signed-out"|"offline"} session @param {Identity|null} last */
async function useSession(session, last) {
  if (session === "offline") {
    if (last) await openDevice(last); // offline start: everything comes from the device
    return;
  }
  if (session === "signed-out") {
    // The session ended; the queue waits on the device until the same user signs in again.
    ctx.sync?.stop();
    ctx.store?.close();
    Object.assign(ctx, { store: null, sync: null, data: null, identity: null });
    return;
  }
  const { me } = session;
  setCsrf(me.csrf_token);
  /** @type {Identity} */
  const identity = { org: me.org, user: me.user };
  remember(identity);
  await openDevice(identity);
  await whenReadable(async () => {
    await ctx.store?.setMeta("csrf", me.csrf_token); // for the service worker's Background Sync
  });
}

/**
 * Start: with a remembered identity the device opens from IndexedDB at once, whatever the
 * network does (a network that never answers must not hold the first screen: issue 14); the
 * session check runs meanwhile and, when it answers, settles who is signed in. It usually
 * answers before the store is open, and then the first screen already follows it.
 */
async function boot() {
  moreButton()?.addEventListener("click", openMenu);
  initConnection((hash) => ctx.navigate(hash), () => ctx.sync?.kick());
  addEventListener("hashchange", () => render());
  addEventListener("online", () => (ctx.online = true));
  addEventListener("offline", () => (ctx.online = false));
  const last = remembered();
  /** @type {{me: any}|"signed-out"|"offline"|null} */
  let answered = null;
  const session = checkSession().then((s) => (answered = s));
  if (!last) {
    await useSession(await session, null);
    await render();
    return;
  }
  await openDevice(last);
  if (answered === null) {
    await render(); // from the device; the answer follows when it comes
    const late = await session;
    const shown = () => `${ctx.identity?.org.name}/${ctx.identity?.user.id}/${Boolean(ctx.store)}/${needsPin()}`;
    const before = shown();
    await useSession(late, last);
    if (shown() !== before) await render(); // someone else, signed out, or a PIN now required
    return;
  }
  await useSession(answered, last);
  await render();
}

boot().catch((err) => console.error("boot failed", err));
