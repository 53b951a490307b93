// @ts-check
/**
 * Search (`#/search?q=`): ONE box over every entity on the device — beyond the reference's
 * one-entity-at-a-time "categorized" search — with ranked results, each labelled with its
 * entity, and dates searchable too ("2026-11-" finds the records with a date in November 2026).
 * Each result says which value matched. Online-only (the offline data not downloaded yet), it
 * asks the Web API, entity by entity, with `contains` on the quick-find columns.
 */
import { h } from "../dom.js";
import { attributeOf, ensureStyles, formatValue, isLocal, labelOf, nameOf, odataString, optionString, recordHref } from "./list.js";

export const live = "data";

const LIMIT = 50;
const ONLINE_PER_ENTITY = 5;

/** Lower-cased text, as the device's index folds it. @param {any} s */
function fold(s) {
  return String(s ?? "").trim().toLowerCase();
}

/**
 * What matched: the first quick-find value or date of the record that starts with the text (or
 * has a word that does).
 * @param {any} ctx @param {any} meta @param {any} record @param {string} needle
 * @returns {{label: string, text: string}|null}
 */
function matchOf(ctx, meta, record, needle) {
  const starts = (/** @type {string} */ value) => {
    const v = fold(value);
    return v.startsWith(needle) || v.split(/[\s,;:/()\-.@]+/).some((w) => w && w.startsWith(needle));
  };
  for (const col of meta.quick_find || []) {
    if (col === meta.primary_name) continue;
    if (typeof record[col] === "string" && starts(record[col])) return { label: labelOf(attributeOf(meta, col)), text: record[col] };
  }
  for (const attr of meta.attributes) {
    if ((attr.type === "date" || attr.type === "datetime") && typeof record[attr.logical_name] === "string" && record[attr.logical_name].slice(0, 10).startsWith(needle)) {
      return { label: labelOf(attr), text: attr.type === "date" ? record[attr.logical_name] : formatValue(ctx, meta, record, attr.logical_name) };
    }
  }
  return null;
}

/**
 * Ranked hits across entities.
 * @param {any} ctx @param {string} q
 * @returns {Promise<{entity: string, record: any}[]>}
 */
async function find(ctx, q) {
  const store = ctx.store;
  if (isLocal(ctx)) {
    const names = store.offlineEntities().map((/** @type {any} */ e) => e.logical_name);
    return store.search(names, q, LIMIT);
  }
  const entities = Object.values(store.entities).filter((/** @type {any} */ e) => e.offline_commands.includes("read") && e.logical_name !== "activitypointer" && e.quick_find?.length);
  const pages = await Promise.all(
    entities.map(async (/** @type {any} */ meta) => {
      const columns = meta.quick_find.filter((/** @type {string} */ c) => ["string", "memo"].includes(attributeOf(meta, c)?.type));
      if (!columns.length) return [];
      const filter = columns.map((/** @type {string} */ c) => `contains(${c},${odataString(q)})`).join(" or ");
      try {
        const page = await ctx.data.query(meta.logical_name, optionString({ $filter: filter, $orderby: `${meta.primary_name} asc`, $top: String(ONLINE_PER_ENTITY) }), ONLINE_PER_ENTITY);
        return page.entities.map((/** @type {any} */ record) => ({ entity: meta.logical_name, record }));
      } catch {
        return []; // an entity this user may not read
      }
    }),
  );
  return pages.flat();
}

/**
 * @param {any} ctx
 * @param {{query: URLSearchParams}} params
 */
export async function render(ctx, params) {
  ensureStyles();
  const store = ctx.store;
  let q = (params.query.get("q") || "").trim();
  const results = h("div", { class: "search-results stack stack--tight" });
  const status = h("p", { class: "muted", role: "status" });

  let generation = 0;
  const run = async () => {
    const mine = ++generation;
    if (!q) {
      status.textContent = "";
      results.replaceChildren(h("p", { class: "muted" }, isLocal(ctx) ? "Search names, emails, phone numbers and dates (for example 2026-11-) of every record on this device." : "Search names, emails and phone numbers."));
      return;
    }
    let hits;
    try {
      hits = await find(ctx, q);
    } catch (err) {
      if (mine !== generation) return;
      status.textContent = "";
      results.replaceChildren(h("p", { class: "field__error", role: "alert" }, `Search failed: ${/** @type {any} */ (err)?.message || err}`));
      return;
    }
    if (mine !== generation) return;
    const needle = fold(q);
    /** @type {Map<string, number>} */
    const perEntity = new Map();
    for (const hit of hits) perEntity.set(hit.entity, (perEntity.get(hit.entity) || 0) + 1);
    const summary = [...perEntity].map(([e, n]) => `${store.entities[e]?.display_collection_name || e} ${n}`).join(", ");
    status.textContent = hits.length ? `${hits.length}${hits.length >= LIMIT ? "+" : ""} ${hits.length === 1 ? "result" : "results"} for “${q}”${summary ? ` (${summary})` : ""}` : `No results for “${q}”.`;
    results.replaceChildren(
      hits.length
        ? h(
            "ul",
            { class: "list", "aria-label": "Search results" },
            hits.map((hit) => {
              const meta = store.entities[hit.entity];
              const match = matchOf(ctx, meta, hit.record, needle);
              return h(
                "li",
                null,
                h(
                  "a",
                  { class: "list__row", href: recordHref(meta, hit.record) },
                  h(
                    "span",
                    { class: "list__text" },
                    h("span", { class: "list__primary" }, nameOf(meta, hit.record)),
                    match ? h("span", { class: "list__secondary" }, `${match.label}: ${match.text}`) : null,
                  ),
                  h("span", { class: "badge entity-label" }, meta.display_name),
                ),
              );
            }),
          )
        : h("p", { class: "list__empty card" }, isLocal(ctx) ? "Nothing on this device starts with that. Try the start of a name, an email, a phone number or a date (YYYY-MM-DD)." : "Nothing matches."),
    );
  };

  let typing = 0;
  const input = /** @type {HTMLInputElement} */ (
    h("input", {
      id: "global-search",
      class: "search__input",
      type: "search",
      name: "q",
      value: q,
      autocomplete: "off",
      placeholder: "Search all records",
      oninput: () => {
        clearTimeout(typing);
        typing = window.setTimeout(() => {
          q = input.value.trim();
          history.replaceState(history.state, "", `#/search${q ? `?q=${encodeURIComponent(q)}` : ""}`);
          void run();
        }, 200);
      },
    })
  );
  if (!store?.customizations) {
    return h("section", { class: "screen stack" }, h("h1", null, "Search"), h("p", null, "Connect once to download your organisation's customizations."));
  }
  await run();
  // Put the caret in the box when the screen opens with nothing searched yet.
  if (!q) setTimeout(() => input.isConnected && input.focus(), 0);
  return h(
    "section",
    { class: "screen stack search-screen" },
    h("h1", null, "Search"),
    h(
      "form",
      {
        class: "search",
        role: "search",
        "aria-label": "All records",
        onsubmit: (/** @type {SubmitEvent} */ e) => {
          e.preventDefault();
          clearTimeout(typing);
          q = input.value.trim();
          history.replaceState(history.state, "", `#/search${q ? `?q=${encodeURIComponent(q)}` : ""}`);
          void run();
        },
      },
      h("label", { class: "visually-hidden", for: "global-search" }, "Search all records"),
      input,
    ),
    status,
    results,
  );
}
