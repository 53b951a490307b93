// @ts-check
/**
 * List: one entity's system views, answered from the device once it is offline-ready (else from
 * the Web API) with the same OData options either way.
 *
 * - A "View" select switches between the entity's system views — every entity's, activities
 *   included (Activities lists every activity type, each row labelled with its type).
 * - Columns come from the view; a linked column "lookup.attr" shows `attr` of the record the
 *   lookup points at (an `$expand`, resolved on the device), a lookup column its name.
 * - The view's `$orderby` sorts until a column header is tapped (ascending, then descending;
 *   `aria-sort` says which).
 * - "Search <entities>": the categorized search over this entity's quick-find columns (the
 *   device's search index when offline-ready, else `contains` filters on the server).
 * - Rows open the record; checkboxes select rows ("Selected: N", kept in `ctx.selection` for
 *   commands that act on a selection); rows with unsynced changes say "Not synced".
 * - On a phone (screens.css, below 720 px) the table is laid out as cards: the primary column,
 *   then the others as labelled secondary lines, never off-screen; the whole card opens the
 *   record (a 44 px+ target), a 44 px checkbox or a long-press selects it, and the column
 *   headers become a row of sort buttons. The table's roles stay, so a screen reader still
 *   reads a table with its headers.
 * - "Refresh" (and pulling the list down from its top, by touch) syncs with the server now and
 *   reads the view again; it is offered while the server can be reached.
 *
 * The screen's state lives in the hash (`#/list/<entity>?view=&sort=&dir=&q=&n=`), updated in
 * place with `history.replaceState`, so a re-render after a data change shows the same thing.
 *
 * Also the helpers the other screens share: formatting values, links and permissions.
 */
import { h } from "../dom.js";
import { formatMoney, ruleOf, showsAmount } from "../ruledata.js";
import { listCommands } from "./commands.js";

export const live = "data";

const PAGE = 50;
const FORMATTED = "@OData.Community.Display.V1.FormattedValue";
const LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname";
/** Entities the Web API does not write (managed by an administrator), for online-only mode. */
const NOT_API_WRITABLE = new Set(["systemuser", "team", "businessunit", "activitypointer"]);
const SYSTEM_LABELS = /** @type {Record<string, string>} */ ({
  createdon: "Created On",
  modifiedon: "Modified On",
  ownerid: "Owner",
  owningbusinessunit: "Business Unit",
  createdby: "Created By",
  modifiedby: "Modified By",
  versionnumber: "Version",
});
const SYSTEM_TYPES = /** @type {Record<string, string>} */ ({
  createdon: "datetime",
  modifiedon: "datetime",
  ownerid: "lookup",
  owningbusinessunit: "lookup",
  createdby: "lookup",
  modifiedby: "lookup",
  versionnumber: "integer",
});

/** The rows selected in each entity's list, kept across re-renders. @type {Map<string, Set<string>>} */
const selections = new Map();
/** A refresh in progress (it outlives the re-renders that the sync's progress causes) and how the last one went. */
const refreshing = { busy: false, note: "" };

/** Forget a list's selection (after a command ran on it). @param {any} ctx @param {string} entity */
export function clearSelection(ctx, entity) {
  selections.get(entity)?.clear();
  if (ctx.selection?.entity === entity) ctx.selection = { entity, ids: [] };
}

// --- helpers shared by the screens ---------------------------------------------------------------

/**
 * An attribute of an entity, including the system columns every record has.
 * @param {any} meta @param {string} name
 * @returns {any|null}
 */
export function attributeOf(meta, name) {
  const attr = meta.attributes.find((/** @type {any} */ a) => a.logical_name === name);
  if (attr) return attr;
  if (SYSTEM_TYPES[name]) return { logical_name: name, type: SYSTEM_TYPES[name], display_name: SYSTEM_LABELS[name], targets: [], read_only: true };
  return null;
}

/** @param {any} attr */
export function labelOf(attr) {
  return attr?.display_name || SYSTEM_LABELS[attr?.logical_name] || attr?.logical_name || "";
}

/** Whether an entity's records are on this device (offline-enabled and readable offline). @param {any} ctx @param {string} entity */
export function onDevice(ctx, entity) {
  const profile = ctx.store?.customizations?.offline_profile;
  const meta = ctx.store?.entities[entity];
  if (!meta || !profile?.enabled || !meta.offline_commands.includes("read")) return false;
  return Boolean(profile.entities?.[entity]?.enabled);
}

/** Whether reads and writes go to the device (offline-ready) rather than the server. @param {any} ctx */
export function isLocal(ctx) {
  return Boolean(ctx.data?.local);
}

/**
 * Whether the user may run a command on an entity here: offline, as its offline commands say;
 * online-only, where the Web API writes the entity.
 * @param {any} ctx @param {any} meta @param {"create"|"update"|"delete"} command
 */
export function allowed(ctx, meta, command) {
  if (isLocal(ctx)) return meta.offline_commands.includes(command);
  if (meta.api_writable === false || NOT_API_WRITABLE.has(meta.logical_name)) return false;
  return true;
}

/** The entity an activity record really is (activitypointer rows carry it). @param {any} meta @param {any} record */
export function concreteEntity(meta, record) {
  return meta.logical_name === "activitypointer" && record?.activitytypecode ? record.activitytypecode : meta.logical_name;
}

/** Where a record opens. @param {any} meta @param {any} record */
export function recordHref(meta, record) {
  return `#/record/${encodeURIComponent(concreteEntity(meta, record))}/${encodeURIComponent(record[meta.primary_id])}`;
}

/** The record's name, or a stand-in. @param {any} meta @param {any} record */
export function nameOf(meta, record) {
  const name = record?.[meta.primary_name];
  return name === null || name === undefined || name === "" ? "(no name)" : String(name);
}

/** "entity|id" of every record with operations still waiting to sync. @param {any} ctx @returns {Promise<Set<string>>} */
export async function pendingKeys(ctx) {
  if (!isLocal(ctx) || !ctx.store) return new Set();
  const ops = await ctx.store.pending(100_000);
  return new Set(ops.flatMap((/** @type {any} */ op) => op.touches || [`${op.entity}|${op.id}`]));
}

/** A "Not synced" badge (the record has changes waiting on the device). */
export function pendingBadge() {
  return h("span", { class: "badge badge--pending" }, "Not synced");
}

/** @param {number} n */
const pad = (n) => String(n).padStart(2, "0");

/** A UTC datetime as the phone's local "YYYY-MM-DD HH:MM". @param {string} iso */
export function localDateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * A money value with its currency: the formatted value the record carries while it still shows
 * the amount, else formatted here by the attribute's places rule (ruledata.js, as the server does).
 * @param {any} record @param {any} attr @param {string} symbol the base currency's, for a record without one
 */
export function moneyText(record, attr, symbol) {
  const name = attr.logical_name;
  const value = record[name];
  if (value === null || value === undefined) return "";
  const rule = ruleOf(attr, "places");
  const formatted = record[`${name}${FORMATTED}`];
  if (!rule) return typeof formatted === "string" ? formatted : String(value);
  return showsAmount(formatted, value, rule) ? formatted : formatMoney(value, symbol, rule);
}

/**
 * One attribute of a record as text, the way a person reads it.
 * @param {any} ctx @param {any} meta @param {any} record @param {string} name
 */
export function formatValue(ctx, meta, record, name) {
  if (!record) return "";
  const attr = attributeOf(meta, name);
  if (!attr) return "";
  if (attr.type === "lookup") {
    const id = record[`_${name}_value`];
    if (!id) return "";
    return String(record[`_${name}_value${FORMATTED}`] ?? "(no name)");
  }
  const value = record[name];
  if (value === null || value === undefined || value === "") return "";
  if (name === "activitytypecode") return ctx.store?.entities[value]?.display_name || String(value);
  switch (attr.type) {
    case "optionset":
      return String(record[`${name}${FORMATTED}`] ?? attr.options?.find((/** @type {any} */ o) => o.value === value)?.label ?? value);
    case "money":
      return moneyText(record, attr, ctx.store?.baseCurrencySymbol ?? "$");
    case "integer":
    case "decimal":
      return Number(value).toLocaleString();
    case "boolean":
      return value ? "Yes" : "No";
    case "datetime":
      return localDateTime(value);
    default:
      return String(value);
  }
}

/** An OData string literal. @param {string} text */
export function odataString(text) {
  return `'${String(text).replace(/'/g, "''")}'`;
}

/**
 * Options as an OData option string, values URL-encoded as the Web API and the device read them
 * (the `$` of the keys stays as it is, the way people write them).
 * @param {Record<string, string|undefined|null>} options
 */
export function optionString(options) {
  return Object.entries(options)
    .filter(([, value]) => value)
    .map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`)
    .join("&");
}

/**
 * Make sure screens.css is on the page (the shell links it; this covers a shell that does not yet).
 */
export function ensureStyles() {
  if (document.querySelector('link[rel="stylesheet"][href*="css/screens.css"]')) return;
  const app = /** @type {HTMLLinkElement|null} */ (document.querySelector('link[rel="stylesheet"][href*="css/app.css"]'));
  const href = app ? app.href.replace(/css\/app\.css(\?.*)?$/, "css/screens.css") : "/static/css/screens.css";
  document.head.appendChild(h("link", { rel: "stylesheet", href }));
}

/** A screen saying why there is nothing to show. @param {string} title @param {string} text */
export function emptyScreen(title, text) {
  return h(
    "section",
    { class: "screen stack" },
    h("h1", null, title),
    h("p", { class: "empty-state__text" }, text),
    h("a", { class: "button button--secondary", href: "#/" }, "Home"),
  );
}

// --- the list ------------------------------------------------------------------------------------

/**
 * The columns of a view, resolved against the metadata.
 * @param {any} ctx @param {any} meta @param {any} view
 * @returns {{key: string, label: string, attr: any, lookup?: any, targets?: {entity: string, nav: string}[], sortable: boolean}[]}
 */
function viewColumns(ctx, meta, view) {
  const out = [];
  for (const key of view.columns) {
    const dot = key.indexOf(".");
    if (dot < 0) {
      const attr = attributeOf(meta, key);
      if (!attr) continue;
      out.push({ key, label: labelOf(attr), attr, sortable: attr.type !== "lookup" });
      continue;
    }
    const lookup = attributeOf(meta, key.slice(0, dot));
    const name = key.slice(dot + 1);
    if (!lookup || lookup.type !== "lookup") continue;
    /** @type {{entity: string, nav: string}[]} */
    const targets = [];
    let attr = null;
    for (const target of lookup.targets) {
      const tmeta = ctx.store.entities[target];
      const tattr = tmeta && attributeOf(tmeta, name);
      if (!tattr) continue;
      attr = attr || tattr;
      targets.push({ entity: target, nav: lookup.targets.length > 1 ? `${lookup.logical_name}_${target}` : lookup.logical_name });
    }
    if (!attr) continue;
    out.push({ key, label: `${labelOf(attr)} (${labelOf(lookup)})`, attr, lookup, targets, sortable: false });
  }
  return out;
}

/**
 * The value of a column in a row (a linked column reads the expanded record).
 * @param {any} ctx @param {any} meta @param {any} record @param {ReturnType<typeof viewColumns>[number]} column
 */
function cellText(ctx, meta, record, column) {
  if (!column.lookup) return formatValue(ctx, meta, record, column.key);
  const lookupName = column.lookup.logical_name;
  const target = record[`_${lookupName}_value${LOGICAL}`] || column.lookup.targets[0];
  const link = column.targets?.find((t) => t.entity === target);
  const linked = link ? record[link.nav] : null;
  if (!linked) return "";
  return formatValue(ctx, ctx.store.entities[target], linked, column.attr.logical_name);
}

/** The first term of an `$orderby`. @param {string} orderby */
function firstOrder(orderby) {
  const [col = "", dir = "asc"] = String(orderby || "").split(",")[0].trim().split(/\s+/);
  return { col, dir: dir.toLowerCase() === "desc" ? "desc" : "asc" };
}

/**
 * @param {any} ctx
 * @param {{parts: string[], query: URLSearchParams}} params
 */
export async function render(ctx, params) {
  ensureStyles();
  const store = ctx.store;
  const entity = params.parts[0] || "";
  if (!store?.customizations) return emptyScreen("Outpost", "Connect once to download your organisation's customizations.");
  const meta = store.entities[entity];
  if (!meta) return emptyScreen("Not found", `There is no entity called '${entity}'.`);
  if (!meta.offline_commands.includes("read") && isLocal(ctx)) {
    return emptyScreen(meta.display_collection_name, `${meta.display_collection_name} are not available offline.`);
  }
  if (isLocal(ctx) && !onDevice(ctx, entity)) {
    return emptyScreen(meta.display_collection_name, `${meta.display_collection_name} are not available offline: your administrator has not enabled them for this device.`);
  }
  if (!meta.views.length) return emptyScreen(meta.display_collection_name, `${meta.display_collection_name} have no views.`);

  const state = {
    view: meta.views.find((/** @type {any} */ v) => v.id === params.query.get("view")) || meta.views[0],
    sort: params.query.get("sort") || "",
    dir: params.query.get("dir") === "desc" ? "desc" : "asc",
    q: params.query.get("q") || "",
    n: Math.max(PAGE, Number(params.query.get("n")) || PAGE),
  };
  const selected = selections.get(entity) || new Set();
  selections.set(entity, selected);
  ctx.selection = { entity, ids: [...selected] };

  const results = h("div", { class: "list-results" });
  const selectionStatus = h("p", { class: "list-toolbar__status muted", role: "status" }, `Selected: ${selected.size}`);
  const clearSelection = h("button", { type: "button", class: "button button--secondary", hidden: selected.size === 0, onclick: () => {
    selected.clear();
    onSelection();
    void refresh();
  } }, "Clear selection");
  const onSelection = () => {
    selectionStatus.textContent = `Selected: ${selected.size}`;
    clearSelection.hidden = selected.size === 0;
    ctx.selection = { entity, ids: [...selected] };
  };

  /** Keep the screen's state in the hash without a navigation. */
  const remember = () => {
    const q = new URLSearchParams();
    q.set("view", state.view.id);
    if (state.sort) {
      q.set("sort", state.sort);
      q.set("dir", state.dir);
    }
    if (state.q) q.set("q", state.q);
    if (state.n > PAGE) q.set("n", String(state.n));
    history.replaceState(history.state, "", `#/list/${encodeURIComponent(entity)}?${q}`);
  };

  let generation = 0;
  const refresh = async () => {
    const mine = ++generation;
    let content;
    try {
      content = await table(ctx, meta, state, selected, {
        onSelection,
        onSort: (/** @type {string} */ col) => {
          const current = state.sort || firstOrder(state.view.orderby).col;
          const currentDir = state.sort ? state.dir : firstOrder(state.view.orderby).dir;
          state.dir = current === col && currentDir === "asc" ? "desc" : "asc";
          state.sort = col;
          remember();
          void refresh().then(() => {
            /** @type {HTMLElement|null} */ (results.querySelector(`button[data-sort="${CSS.escape(col)}"]`))?.focus();
          });
        },
        onMore: () => {
          state.n += PAGE;
          remember();
          void refresh();
        },
      });
    } catch (err) {
      content = h("p", { class: "field__error", role: "alert" }, `This view cannot be shown: ${/** @type {any} */ (err)?.message || err}`);
    }
    if (mine === generation) results.replaceChildren(content);
  };

  const viewSelect = h(
    "select",
    {
      id: "list-view",
      class: "input",
      onchange: (/** @type {Event} */ e) => {
        state.view = meta.views.find((/** @type {any} */ v) => v.id === /** @type {HTMLSelectElement} */ (e.target).value) || meta.views[0];
        state.sort = "";
        state.n = PAGE;
        remember();
        void refresh();
      },
    },
    meta.views.map((/** @type {any} */ v) => h("option", { value: v.id, selected: v.id === state.view.id }, v.name)),
  );

  let typing = 0;
  const searchInput = h("input", {
    id: "list-search",
    class: "search__input",
    type: "search",
    name: "q",
    value: state.q,
    autocomplete: "off",
    placeholder: `Search ${meta.display_collection_name}`,
    oninput: (/** @type {Event} */ e) => {
      clearTimeout(typing);
      const value = /** @type {HTMLInputElement} */ (e.target).value;
      typing = window.setTimeout(() => {
        state.q = value.trim();
        state.n = PAGE;
        remember();
        void refresh();
      }, 200);
    },
  });

  const newButton = allowed(ctx, meta, "create")
    ? h("button", { type: "button", class: "button button--primary", onclick: () => ctx.navigate(`#/new/${encodeURIComponent(entity)}`) }, "New")
    : null;

  const reachable = serverReachable(ctx);
  const refreshStatus = h("p", { class: "list-refresh__status muted", role: "status" }, reachable ? refreshing.note : "Offline: showing what is on this device.");
  const pullHint = h("div", { class: "list-pull", "aria-hidden": "true" }, h("span", { class: "list-pull__text" }, ""));
  /** Say how the refresh went, on this screen or on the one that replaced it meanwhile. @param {string} text */
  const note = (text) => {
    refreshing.note = text;
    const shown = refreshStatus.isConnected ? refreshStatus : document.querySelector(".list-refresh__status");
    if (shown) shown.textContent = text;
  };
  const syncNow = async () => {
    if (refreshing.busy || !serverReachable(ctx)) return;
    refreshing.busy = true;
    refreshButton.disabled = true;
    note("Refreshing…");
    try {
      await pullFromServer(ctx);
      await refresh();
      note(`Refreshed at ${localDateTime(new Date().toISOString()).slice(11)}.`);
    } catch (err) {
      note(`Could not refresh: ${/** @type {any} */ (err)?.message || err}`);
    } finally {
      refreshing.busy = false;
      refreshButton.disabled = !serverReachable(ctx);
    }
  };
  const refreshButton = /** @type {HTMLButtonElement} */ (
    h("button", { type: "button", class: "button button--secondary list-refresh", disabled: !reachable || refreshing.busy, onclick: () => void syncNow() }, "Refresh")
  );

  await refresh();
  const screen = h(
    "section",
    { class: "screen stack list-screen" },
    pullHint,
    h("div", { class: "screen-header" }, h("h1", null, meta.display_collection_name), h("div", { class: "row screen-header__actions" }, refreshButton, newButton)),
    refreshStatus,
    h("div", { class: "field" }, h("label", { class: "field__label", for: "list-view" }, "View"), viewSelect),
    h(
      "form",
      { class: "search", role: "search", "aria-label": `Search ${meta.display_collection_name}`, onsubmit: (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        clearTimeout(typing);
        state.q = /** @type {HTMLInputElement} */ (searchInput).value.trim();
        state.n = PAGE;
        remember();
        void refresh();
      } },
      h("label", { class: "visually-hidden", for: "list-search" }, `Search ${meta.display_collection_name}`),
      searchInput,
    ),
    h(
      "div",
      { class: "list-toolbar row" },
      selectionStatus,
      clearSelection,
      listCommands(ctx, entity, () => (ctx.selection?.entity === entity ? ctx.selection.ids : [])),
    ),
    results,
  );
  pullToRefresh(screen, pullHint, () => serverReachable(ctx) && !refreshing.busy, syncNow);
  return screen;
}

/** Whether "Refresh" can reach the server: the sync socket is up (offline-ready), or the browser is online (online-only). @param {any} ctx */
function serverReachable(ctx) {
  if (isLocal(ctx)) return ctx.sync?.status?.connection === "online";
  return navigator.onLine !== false;
}

/**
 * Offline-ready: run a sync round now (pull the server's changes, push the queue) and wait for it
 * to finish (at most 20 s). Online-only, the view reads the Web API anyway.
 * @param {any} ctx
 */
async function pullFromServer(ctx) {
  const sync = ctx.sync;
  if (!isLocal(ctx) || !sync) return;
  const before = sync.status.lastSync;
  await new Promise((resolve, reject) => {
    /** @type {() => void} */
    let stop = () => {};
    const timer = setTimeout(() => {
      stop();
      reject(new Error("the server did not answer in time."));
    }, 20_000);
    stop = sync.subscribe((/** @type {any} */ s) => {
      const done = s.lastSync !== before && s.phase === "idle";
      const failed = s.connection !== "online";
      if (!done && !failed) return;
      clearTimeout(timer);
      queueMicrotask(() => stop());
      if (done) resolve(undefined);
      else reject(new Error("the server cannot be reached."));
    });
    sync.kick();
  });
}

const PULL_DISTANCE = 64; // px the list must be pulled (after damping) to refresh

/**
 * Pull-to-refresh: a touch that starts with the page scrolled to its top and moves down shows
 * "Pull to refresh", then "Release to refresh"; released past the mark, it refreshes. Passive
 * listeners: scrolling is never held up. (The browser's own pull-to-refresh, which would
 * reload the whole app, is turned off on this screen in screens.css.)
 * @param {HTMLElement} screen @param {HTMLElement} hint @param {() => boolean} enabled @param {() => Promise<void>} run
 */
function pullToRefresh(screen, hint, enabled, run) {
  let startY = -1;
  let pulled = 0;
  const text = /** @type {HTMLElement} */ (hint.firstChild);
  const show = (/** @type {number} */ px) => {
    hint.style.height = `${px}px`;
    hint.classList.toggle("list-pull--armed", px >= PULL_DISTANCE);
    text.textContent = px >= PULL_DISTANCE ? "Release to refresh" : px > 8 ? "Pull to refresh" : "";
  };
  screen.addEventListener("touchstart", (e) => {
    startY = e.touches.length === 1 && window.scrollY <= 0 && enabled() ? e.touches[0].clientY : -1;
    pulled = 0;
  }, { passive: true });
  screen.addEventListener("touchmove", (e) => {
    if (startY < 0) return;
    const dy = e.touches[0].clientY - startY;
    if (dy <= 0 || window.scrollY > 0) {
      startY = -1;
      show(0);
      return;
    }
    pulled = Math.min(PULL_DISTANCE * 1.5, dy / 2);
    show(pulled);
  }, { passive: true });
  const end = () => {
    const armed = startY >= 0 && pulled >= PULL_DISTANCE;
    startY = -1;
    show(0);
    if (armed) void run();
  };
  screen.addEventListener("touchend", end, { passive: true });
  screen.addEventListener("touchcancel", () => {
    startY = -1;
    show(0);
  }, { passive: true });
}

const LONG_PRESS_MS = 500;

/**
 * Long-press on a row selects it (toggles its checkbox), and the click that ends the press does
 * not open the record. One set of listeners for the whole table.
 * @param {HTMLElement} tbody
 */
function longPressSelects(tbody) {
  let timer = 0;
  let start = { x: 0, y: 0 };
  let fired = false;
  const cancel = () => {
    clearTimeout(timer);
    timer = 0;
  };
  tbody.addEventListener("pointerdown", (e) => {
    fired = false;
    const target = /** @type {Element} */ (e.target);
    if (e.button !== 0 || target.closest(".grid__check")) return;
    const row = target.closest("tr");
    const box = /** @type {HTMLInputElement|null} */ (row?.querySelector(".grid__check input"));
    if (!box) return;
    start = { x: e.clientX, y: e.clientY };
    cancel();
    const id = row?.dataset.id || "";
    timer = window.setTimeout(() => {
      timer = 0;
      // The list may have been drawn again meanwhile (the sync's progress): the row as shown now.
      const shown = box.isConnected ? box : document.querySelector(`.grid tbody tr[data-id="${CSS.escape(id)}"] .grid__check input`);
      if (!(shown instanceof HTMLInputElement)) return;
      shown.click(); // toggles and fires "change", as a tap on the checkbox would
      fired = true; // after: the click above must not be swallowed, the one the finger's lift makes must
      navigator.vibrate?.(10);
    }, LONG_PRESS_MS);
  });
  tbody.addEventListener("pointermove", (e) => {
    if (timer && Math.hypot(e.clientX - start.x, e.clientY - start.y) > 10) cancel();
  });
  for (const type of ["pointerup", "pointercancel", "pointerleave"]) tbody.addEventListener(type, cancel);
  tbody.addEventListener("contextmenu", (e) => {
    if (fired || timer) e.preventDefault(); // the long-press menu of a link would cover the selection
  });
  tbody.addEventListener("click", (e) => {
    if (!fired) return;
    fired = false;
    e.preventDefault();
    e.stopPropagation();
  }, true);
}

/**
 * A 44 px checkbox: the real input covers the whole target (invisible), a drawn box shows its state.
 * @param {Record<string, any>} attrs
 */
function checkbox(attrs) {
  return h("span", { class: "check" }, h("input", { type: "checkbox", class: "check__input", ...attrs }), h("span", { class: "check__box", "aria-hidden": "true" }));
}

/**
 * The rows of the view (or of the search) as a table.
 * @param {any} ctx @param {any} meta
 * @param {{view: any, sort: string, dir: string, q: string, n: number}} state
 * @param {Set<string>} selected
 * @param {{onSelection: () => void, onSort: (col: string) => void, onMore: () => void}} on
 */
async function table(ctx, meta, state, selected, on) {
  const columns = viewColumns(ctx, meta, state.view);
  const select = new Set([meta.primary_id, meta.primary_name]);
  /** @type {Map<string, Set<string>>} */
  const expands = new Map();
  for (const c of columns) {
    if (!c.lookup) {
      if (!SYSTEM_TYPES[c.key] || c.attr.type !== "lookup") select.add(c.key);
      continue;
    }
    select.add(c.lookup.logical_name);
    for (const t of c.targets || []) {
      const tmeta = ctx.store.entities[t.entity];
      if (!expands.has(t.nav)) expands.set(t.nav, new Set([tmeta.primary_id]));
      expands.get(t.nav)?.add(c.attr.logical_name);
    }
  }
  if (meta.logical_name === "activitypointer") select.add("activitytypecode");
  const expand = [...expands].map(([nav, cols]) => `${nav}($select=${[...cols].join(",")})`).join(",");
  const order = state.sort ? { col: state.sort, dir: state.dir } : firstOrder(state.view.orderby);
  const orderby = state.sort ? `${state.sort} ${state.dir}` : state.view.orderby;

  /** @type {any[]} */
  let rows;
  let more = false;
  let searched = false;
  if (state.q) {
    searched = true;
    ({ rows, more } = await search(ctx, meta, state, { select: [...select].join(","), expand, orderby }));
  } else {
    const options = optionString({ $select: [...select].join(","), $filter: state.view.filter, $orderby: orderby, $expand: expand, $top: String(state.n + 1) });
    const page = await ctx.data.query(meta.logical_name, options, state.n + 1);
    rows = page.entities;
    more = rows.length > state.n;
    rows = rows.slice(0, state.n);
  }
  const pending = await pendingKeys(ctx);

  const headers = columns.map((c, i) => {
    const sorted = c.sortable && order.col === c.key;
    const ariaSort = sorted ? (order.dir === "desc" ? "descending" : "ascending") : null;
    const content = c.sortable
      ? h("button", { type: "button", class: "grid__sort", "data-sort": c.key, onclick: () => on.onSort(c.key) }, c.label, h("span", { class: "grid__arrow", "aria-hidden": "true" }, sorted ? (order.dir === "desc" ? "▼" : "▲") : ""))
      : c.label;
    const classes = [i === 0 ? "grid__first" : "", c.sortable ? "" : "grid__head--fixed"].filter(Boolean).join(" ");
    return h("th", { scope: "col", "aria-sort": ariaSort, class: classes || null }, content);
  });
  const allIds = rows.map((r) => r[meta.primary_id]);
  const allSelected = allIds.length > 0 && allIds.every((id) => selected.has(id));
  const selectAll = checkbox({
    id: "list-select-all",
    checked: allSelected,
    "aria-label": "Select all",
    onchange: (/** @type {Event} */ e) => {
      const on2 = /** @type {HTMLInputElement} */ (e.target).checked;
      for (const id of allIds) on2 ? selected.add(id) : selected.delete(id);
      for (const box of /** @type {NodeListOf<HTMLInputElement>} */ (tableEl.querySelectorAll("tbody input[type=checkbox]"))) {
        box.checked = on2;
        box.closest("tr")?.classList.toggle("grid__row--selected", on2);
      }
      on.onSelection();
    },
  });
  const selectAllBox = /** @type {HTMLInputElement} */ (selectAll.querySelector("input"));
  const body = rows.map((record) => {
    const id = record[meta.primary_id];
    const name = nameOf(meta, record);
    const key = `${concreteEntity(meta, record)}|${id}`;
    const cells = columns.map((c, i) => {
      const text = cellText(ctx, meta, record, c);
      if (i > 0) return h("td", { "data-label": c.label }, text);
      return h(
        "th",
        { scope: "row", class: "grid__first" },
        h("a", { href: recordHref(meta, record) }, text || name),
        pending.has(key) ? [" ", pendingBadge()] : null,
      );
    });
    return h(
      "tr",
      { "data-id": id, class: selected.has(id) ? "grid__row--selected" : null },
      h("td", { class: "grid__check" }, checkbox({
        checked: selected.has(id),
        "aria-label": `Select ${name}`,
        onchange: (/** @type {Event} */ e) => {
          const box = /** @type {HTMLInputElement} */ (e.target);
          if (box.checked) selected.add(id);
          else selected.delete(id);
          box.closest("tr")?.classList.toggle("grid__row--selected", box.checked);
          selectAllBox.checked = allIds.every((x) => selected.has(x));
          on.onSelection();
        },
      })),
      cells,
    );
  });
  const tbody = h("tbody", null, body);
  longPressSelects(tbody);
  const caption = searched
    ? `Search results for “${state.q}” in ${meta.display_collection_name}: ${rows.length}${more ? "+" : ""}`
    : `${state.view.name}: ${rows.length}${more ? "+" : ""} ${rows.length === 1 ? "record" : "records"}`;
  const tableEl = h(
    "table",
    { class: "grid" },
    h("caption", { class: "grid__caption" }, caption),
    h("thead", null, h("tr", null, h("td", { class: "grid__check" }, selectAll), headers)),
    tbody,
  );
  return h(
    "div",
    { class: "stack stack--tight" },
    rows.length
      ? h("div", { class: "grid-scroll", role: "region", "aria-label": caption, tabindex: "0" }, tableEl)
      : h("p", { class: "list__empty card" }, searched ? `No ${meta.display_collection_name.toLowerCase()} match “${state.q}”.` : "No records in this view."),
    more ? h("button", { type: "button", class: "button button--secondary button--block", onclick: on.onMore }, "Show more") : null,
  );
}

/**
 * The categorized search: this entity's records whose quick-find values (or words in them, or
 * dates) start with the text — from the device's index, ranked; online-only, `contains` filters.
 * @param {any} ctx @param {any} meta @param {{view: any, sort: string, q: string, n: number}} state
 * @param {{select: string, expand: string, orderby: string}} query
 * @returns {Promise<{rows: any[], more: boolean}>}
 */
async function search(ctx, meta, state, query) {
  if (isLocal(ctx)) {
    const names = meta.logical_name === "activitypointer" ? ctx.store.activityTypes() : [meta.logical_name];
    const hits = await ctx.store.search(names, state.q, state.n + 1);
    const more = hits.length > state.n;
    /** @type {string[]} */
    const ids = hits.slice(0, state.n).map((/** @type {any} */ hit) => hit.record[meta.primary_id]);
    if (!ids.length) return { rows: [], more: false };
    const filter = ids.map((id) => `${meta.primary_id} eq ${id}`).join(" or ");
    const options = optionString({ $select: query.select, $filter: filter, $orderby: state.sort ? query.orderby : "", $expand: query.expand });
    const page = await ctx.data.query(meta.logical_name, options, ids.length);
    /** @type {any[]} */
    let rows = page.entities;
    if (!state.sort) {
      const rank = new Map(ids.map((id, i) => [id, i]));
      rows = rows.slice().sort((a, b) => (rank.get(a[meta.primary_id]) ?? 0) - (rank.get(b[meta.primary_id]) ?? 0));
    }
    return { rows, more };
  }
  const text = odataString(state.q);
  const columns = (meta.quick_find || []).filter((/** @type {string} */ c) => ["string", "memo"].includes(attributeOf(meta, c)?.type));
  const filter = columns.map((/** @type {string} */ c) => `contains(${c},${text})`).join(" or ");
  if (!filter) return { rows: [], more: false };
  const options = optionString({ $select: query.select, $filter: filter, $orderby: query.orderby, $expand: query.expand, $top: String(state.n + 1) });
  const page = await ctx.data.query(meta.logical_name, options, state.n + 1);
  return { rows: page.entities.slice(0, state.n), more: page.entities.length > state.n };
}
