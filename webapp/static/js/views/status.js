// @ts-check
/**
 * Offline Status: the app's status ("Available" / "Not Available" with the reason), each
 * entity's mark, status, records and sync time, "Sync time", pending operations, the download
 * progress, "Download Customizations", and the sync errors as cards in words (syncerrors.js):
 * Retry or Discard a refused change; a conflict's three values with Keep mine or Keep the
 * server's.
 */
import { h, toast } from "../dom.js";
import { INSECURE_TEXT, secure } from "../insecure.js";
import { ENTITY_SYNC_TIMES } from "../sync.js";
import { clearBanners, describe, keepMine } from "../syncerrors.js";
import { markBadge, markOf } from "./home.js";

export const live = "sync";

/** A time as people read it on a phone ("3 Dec 2026, 14:05"). @param {string|null} iso */
function when(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "Never";
}

/** @param {any} ctx */
function overall(ctx) {
  const s = ctx.sync?.status;
  if (!s) return { text: "Not Available", reason: "Sign in to use Outpost offline." };
  if (s.download) return { text: "Not Available", reason: "The offline data is downloading." };
  if (!s.offlineReady) return { text: "Not Available", reason: "The offline updates have not been downloaded. Use Download Customizations." };
  if (s.updatesAvailable) return { text: "Not Available", reason: "Offline updates are available. Use Download Customizations." };
  if (s.error && s.connection !== "offline") return { text: "Available", reason: `Working from the device; the last sync attempt failed: ${s.error}` };
  return { text: "Available", reason: s.connection === "online" ? "Offline data is on this device and in sync." : "Working from the device; changes sync when the connection returns." };
}

/** @param {any} ctx */
export async function render(ctx) {
  const store = ctx.store;
  const s = ctx.sync?.status;
  const state = overall(ctx);
  const counts = store && s?.offlineReady ? await store.counts() : {};
  /** @type {Record<string, string>} */
  const times = (store && (await store.getMeta(ENTITY_SYNC_TIMES, null))) || {};
  const errors = store ? await store.errors() : [];
  const progress = s?.download
    ? h(
        "div",
        { class: "progress-field" },
        h("label", { class: "progress-field__label", for: "download-progress" }, `Downloading ${store.entities[s.download.entity]?.display_collection_name || s.download.entity}`),
        s.download.total
          ? h("progress", { id: "download-progress", class: "progress", max: s.download.total, value: s.download.received })
          : h("progress", { id: "download-progress", class: "progress" }),
        h("span", { class: "progress-field__value" }, `${s.download.received}${s.download.total !== null ? ` of ${s.download.total}` : ""} records; ${s.download.done.length} entities done`),
      )
    : null;
  const rows = store
    ? Object.values(store.entities)
        .filter((/** @type {any} */ e) => e.offline_commands.includes("read") && e.logical_name !== "activitypointer")
        .sort((/** @type {any} */ a, /** @type {any} */ b) => a.display_collection_name.localeCompare(b.display_collection_name))
        .map((/** @type {any} */ meta) => {
          const mark = markOf(ctx, meta);
          const lines = [];
          if (mark.mark !== "not-enabled") lines.push(`${counts[meta.logical_name] ?? 0} records`);
          if (mark.mark === "available") lines.push(`Sync time ${when(times[meta.logical_name] ?? null)}`);
          return h(
            "li",
            { class: "list__row status-entity" },
            h(
              "span",
              { class: "list__text" },
              h("span", { class: "list__primary" }, meta.display_collection_name),
              lines.map((line) => h("span", { class: "status-entity__line" }, line)),
            ),
            markBadge(mark),
          );
        })
    : [];
  const errorItems = errors.map((/** @type {any} */ e) => errorCard(ctx, e));
  clearBanners(); // the cards below say what the banners said
  return h(
    "section",
    { class: "stack" },
    h("h1", null, "Offline Status"),
    secure ? null : h("p", { class: "banner banner--warning" }, INSECURE_TEXT),
    h("p", { class: "card" }, h("span", { class: `badge ${state.text === "Available" ? "badge--available" : "badge--error"}` }, state.text), h("span", null, ` ${state.reason}`)),
    h("dl", { class: "card facts" },
      h("dt", null, "Sync time"), h("dd", null, when(s?.lastSync ?? null)),
      h("dt", null, "Connection"), h("dd", null, s?.connection === "online" ? "Online" : s?.connection === "signed-out" ? "Signed out (changes wait on the device)" : "Offline"),
      h("dt", null, "Pending operations"), h("dd", null, String(s?.pending ?? 0)),
    ),
    progress,
    h("button", { type: "button", class: "button button--primary", disabled: Boolean(s?.download), onclick: async () => {
      try {
        await ctx.updateOffline();
      } catch (err) {
        toast(`The customizations could not be downloaded: ${/** @type {any} */ (err).message}`, "error");
      }
    } }, "Download Customizations"),
    h("h2", { class: "section-title" }, "Entities"),
    h("ul", { class: "list", "aria-label": "Entities" }, rows),
    h("h2", { class: "section-title" }, "Sync errors"),
    errorItems.length ? h("ul", { class: "stack sync-errors", "aria-label": "Sync errors" }, errorItems) : h("p", { class: "muted" }, "No sync errors."),
  );
}

/**
 * One sync error as a card, in the banner's words: the record, what happened to each field by
 * its label, a conflict's three values, and what the user can do (docs/offline.md).
 * @param {any} ctx @param {any} e
 */
function errorCard(ctx, e) {
  const d = describe(ctx, e);
  const titleId = `sync-error-${e.op_id}`;
  const act = (/** @type {string} */ label, /** @type {() => Promise<void>} */ fn, /** @type {string} */ kind = "secondary") =>
    h("button", { type: "button", class: `button button--${kind}`, onclick: () => run(ctx, fn) }, label);
  const discard = async () => {
    await ctx.store.discardError(e.op_id);
  };
  const keep = async () => {
    await keepMine(ctx, e);
    toast(e.sent.kind === "delete" ? "The record will be deleted at the next sync." : "Your values will be saved at the next sync.");
  };
  return h(
    "li",
    { class: "card sync-error stack stack--tight", "aria-labelledby": titleId },
    h("h3", { id: titleId, class: "sync-error__title" }, h("span", { class: `badge ${d.kind === "conflict" ? "badge--warning" : "badge--error"}` }, d.status), " ", d.title),
    h("p", { class: "muted sync-error__when" }, when(e.at)),
    d.lines.map((line) => h("p", { class: "sync-error__line" }, line)),
    d.fields.map((f) =>
      h(
        "div",
        { class: "three-way", role: "group", "aria-label": `${f.label}: the three values` },
        h("h4", { class: "three-way__field" }, f.label),
        h(
          "dl",
          { class: "three-way__values" },
          h("dt", null, "When you changed it"), h("dd", null, f.base),
          h("dt", null, "Yours"), h("dd", null, f.mine),
          h("dt", null, "On the server (kept)"), h("dd", null, f.server),
        ),
      ),
    ),
    h(
      "div",
      { class: "row sync-error__actions" },
      d.href ? h("a", { class: "button button--secondary", href: d.href }, "Open record") : null,
      d.kind === "conflict" && d.canKeepMine ? act(e.sent.kind === "delete" ? "Delete anyway" : "Keep mine", keep, "primary") : null,
      d.kind === "conflict" ? act("Keep the server's", discard) : null,
      d.kind === "rejected" && d.canRetry ? act("Retry", () => retry(ctx, e), "primary") : null,
      d.kind === "rejected" ? act("Discard", discard) : null,
    ),
  );
}

/** Run a card's action, then show the screen again. @param {any} ctx @param {() => Promise<void>} fn */
async function run(ctx, fn) {
  try {
    await fn();
  } catch (err) {
    toast(`That did not work: ${/** @type {any} */ (err).message}`, "error");
  }
  ctx.render();
}

/** Queue the rejected change again, as a new operation. @param {any} ctx @param {any} e */
async function retry(ctx, e) {
  if (e.sent.kind === "create") await ctx.data.create(e.sent.entity, { ...e.sent.changes, [ctx.store.entity(e.sent.entity).primary_id]: e.sent.id });
  else if (e.sent.kind === "update") await ctx.data.update(e.sent.entity, e.sent.id, e.sent.changes);
  else if (e.sent.kind === "delete") await ctx.data.remove(e.sent.entity, e.sent.id);
  await ctx.store.discardError(e.op_id);
  toast("The change was queued again.");
}
