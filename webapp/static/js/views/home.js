// @ts-check
/** Home: the entities, each with its offline mark (available, error, not enabled) in words. */
import { h } from "../dom.js";

export const live = "sync";
/**
 * The stylesheet's badge for each mark. The marks say whether an entity's records are on the
 * device — never whether the phone is online (the top bar's indicator says that): "Available
 * offline" with a download glyph, "Not available offline" with "!", "Online only" dashed.
 */
export const BADGE = { available: "badge--downloaded", error: "badge--error", "not-enabled": "badge--disabled" };
/** The words of each mark. */
export const MARK_TEXT = { available: "Available offline", error: "Not available offline", "not-enabled": "Online only" };

/**
 * The mark of an entity on this device, and the longer explanation (its title).
 * @param {any} ctx @param {any} meta
 * @returns {{mark: "available"|"error"|"not-enabled", label: string, text: string}}
 */
export function markOf(ctx, meta) {
  const profile = ctx.store?.customizations?.offline_profile;
  const enabled = Boolean(profile?.enabled && profile.entities?.[meta.logical_name]?.enabled);
  if (!enabled) return { mark: "not-enabled", label: "Not enabled for offline by the administrator: needs a connection", text: MARK_TEXT["not-enabled"] };
  if (ctx.sync?.status.offlineReady && !ctx.sync.status.updatesAvailable) return { mark: "available", label: "Available offline: the records are on this device", text: MARK_TEXT.available };
  return { mark: "error", label: "Enabled for offline, not available (download the updates)", text: MARK_TEXT.error };
}

/** The mark as a badge: its words, its glyph, and the explanation as a title. @param {{mark: "available"|"error"|"not-enabled", label: string, text: string}} m */
export function markBadge(m) {
  return h("span", { class: `list__meta badge ${BADGE[m.mark]}`, title: m.label }, m.text);
}

/** @param {any} ctx */
export async function render(ctx) {
  const store = ctx.store;
  if (!store?.customizations) {
    return h("section", { class: "empty-state" }, h("h1", { class: "empty-state__title" }, "Outpost"), h("p", { class: "empty-state__text" }, "Connect once to download your organisation's customizations."));
  }
  const counts = ctx.sync?.status.offlineReady ? await store.counts() : {};
  const entities = Object.values(store.entities)
    .filter((/** @type {any} */ e) => e.offline_commands.includes("read") && e.views.length)
    .sort((/** @type {any} */ a, /** @type {any} */ b) => a.display_collection_name.localeCompare(b.display_collection_name));
  const rows = entities.map((/** @type {any} */ meta) => {
    const mark = markOf(ctx, meta);
    const count = meta.logical_name === "activitypointer" ? null : counts[meta.logical_name];
    return h(
      "li",
      null,
      h(
        "a",
        { class: "list__row", href: `#/list/${meta.logical_name}` },
        h(
          "span",
          { class: "list__text" },
          h("span", { class: "list__primary" }, meta.display_collection_name),
          h("span", { class: "list__secondary" }, count !== undefined && count !== null ? `${count} on this device` : ""),
        ),
        markBadge(mark),
      ),
    );
  });
  return h(
    "section",
    { class: "stack" },
    h("h1", null, ctx.identity?.org.friendly_name || ctx.identity?.org.name || "Outpost"),
    h("form", { class: "search", role: "search", onsubmit: (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const q = String(new FormData(/** @type {HTMLFormElement} */ (e.target)).get("q") || "");
      ctx.navigate(`#/search?q=${encodeURIComponent(q)}`);
    } }, h("label", { for: "home-search", class: "visually-hidden" }, "Search all records"), h("input", { id: "home-search", name: "q", type: "search", class: "search__input", placeholder: "Search all records" })),
    h("ul", { class: "list entity-marks", "aria-label": "Entities" }, rows),
  );
}
