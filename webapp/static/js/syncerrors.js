// @ts-check
/**
 * Sync errors in words a person can act on (docs/offline.md, "Sync errors"): which record, which
 * fields by their labels, what happened to the change — never JSON, never internal names. Used
 * by the banner that appears when the server refuses or resolves a change (`announce`) and by
 * the cards on Offline Status (views/status.js), so both say the same thing.
 *
 * A conflict also carries its three values per field: the value when the change was made (the
 * op's `before`, kept on the device), the user's (the op's change) and the server's (the record
 * in the ack), so the user can keep either.
 */
import { h } from "./dom.js";
import { FORMATTED } from "./rules.js";

/** The commands' names as the screens say them. */
const COMMANDS = {
  qualify_lead: "Qualify",
  disqualify_lead: "Disqualify",
  convert_activity_to_case: "Convert to Case",
  close_opportunity: "Close",
};

/**
 * @typedef {{attr: string, label: string, base: string, mine: string, server: string}} FieldValues
 * @typedef {{title: string, status: string, lines: string[], fields: FieldValues[], href: string|null,
 *   canKeepMine: boolean, canRetry: boolean, kind: "conflict"|"rejected"}} Described
 */

/** The attribute a change key writes (`x@odata.bind` and `x_target@odata.bind` write x). @param {any} meta @param {string} key */
export function attributeOf(meta, key) {
  const find = (/** @type {string} */ name) => meta?.attributes.find((/** @type {any} */ a) => a.logical_name === name) || null;
  if (!key.endsWith("@odata.bind")) return find(key);
  const name = key.slice(0, -"@odata.bind".length);
  return find(name) || (name.includes("_") ? find(name.slice(0, name.lastIndexOf("_"))) : null);
}

/** A field's label; never its internal name. @param {any} meta @param {string} name */
function labelOf(meta, name) {
  const attr = meta?.attributes.find((/** @type {any} */ a) => a.logical_name === name);
  return attr?.display_name || "A field";
}

/** A value as the screens show it. @param {any} attr @param {any} value @param {string|null} [formatted] */
function shown(attr, value, formatted) {
  if (formatted !== null && formatted !== undefined && formatted !== "") return String(formatted);
  if (value === null || value === undefined || value === "") return "(empty)";
  if (attr?.type === "optionset") return attr.options?.find((/** @type {any} */ o) => o.value === value)?.label ?? String(value);
  if (typeof value === "boolean") return value ? "Yes" : "No";
  if (attr?.type === "lookup") return "(a linked record)";
  return String(value);
}

/** A field's value in a record as the server sent it. @param {any} attr @param {any} record */
function serverValue(attr, record) {
  if (!record) return "(not on the server for you)";
  if (attr.type === "lookup") return shown(attr, record[`_${attr.logical_name}_value`], record[`_${attr.logical_name}_value${FORMATTED}`]);
  return shown(attr, record[attr.logical_name], record[`${attr.logical_name}${FORMATTED}`]);
}

/** The user's value of a field, from the op's changes. @param {any} attr @param {any} error */
function mineValue(attr, error) {
  const name = attr.logical_name;
  for (const [key, value] of Object.entries(error.sent.changes || {})) {
    if (key === name) return shown(attr, value);
    if (key === `${name}@odata.bind` || (key.endsWith("@odata.bind") && key.startsWith(`${name}_`))) {
      return value ? shown(attr, value, error.labels?.[value] ?? null) : "(empty)";
    }
  }
  return "(empty)";
}

/** The value a field had when the change was made. @param {any} attr @param {any} error */
function baseValue(attr, error) {
  const before = error.before?.[attr.logical_name];
  if (!before) return "(unknown)";
  return shown(attr, before.value, before.label);
}

/** Codes whose message is written for the user and names the field or entity (docs/protocol.md, "Operations queued under older metadata"). */
const TOLD = new Set(["attribute_removed", "transition_not_allowed", "entity_removed", "not_allowed_offline"]);

/**
 * The fields of a conflict the server refused for a reason of its own (a removed attribute, a
 * status move no longer allowed), each with its messages: not "the server's value was kept", and
 * never offered back by "keep mine". @param {any} reason @returns {Record<string, string[]>}
 */
function refusedFields(reason) {
  const details = reason?.details;
  return details && typeof details === "object" ? details : {};
}

/** The attributes an op changed, by logical name. @param {any} meta @param {any} error */
function changedAttributes(meta, error) {
  return Object.keys(error.sent.changes || {})
    .map((key) => attributeOf(meta, key)?.logical_name)
    .filter((name) => typeof name === "string");
}

/**
 * What to say about one sync error.
 * @param {any} ctx the app (store, for the metadata) @param {any} error a stored sync error (queue.js)
 * @returns {Described}
 */
export function describe(ctx, error) {
  const store = ctx.store;
  const sent = error.sent;
  const meta = store?.entities?.[sent.entity];
  const reason = error.reason || {};
  const what = meta?.display_name || "Record";
  const name = error.name || (error.kept && meta ? error.kept[meta.primary_name] : null);
  const title = name ? `${what} “${name}”` : `${sent.kind === "create" ? "New " + what.toLowerCase() : what}`;
  /** @type {string[]} */
  const lines = [];
  /** @type {FieldValues[]} */
  const fields = [];
  const kind = error.status === "conflict" ? "conflict" : "rejected";
  const onDevice = Boolean(error.kept);
  const commandName = sent.command ? /** @type {Record<string, string>} */ (COMMANDS)[sent.command] || "The action" : null;
  if (kind === "conflict") {
    if (sent.kind === "delete") {
      lines.push("It changed on the server meanwhile, so it was not deleted: the server's version was kept.");
    } else {
      const lost = Array.isArray(reason.fields) ? reason.fields : [];
      const refused = refusedFields(reason);
      for (const message of new Set(Object.values(refused).flat())) lines.push(String(message));
      for (const attrName of lost) {
        if (attrName in refused) continue;
        const label = labelOf(meta, attrName);
        lines.push(`${label}: the server's value was kept.`);
        const attr = meta?.attributes.find((/** @type {any} */ a) => a.logical_name === attrName);
        if (attr) fields.push({ attr: attrName, label, base: baseValue(attr, error), mine: mineValue(attr, error), server: serverValue(attr, error.kept) });
      }
      const others = changedAttributes(meta, error).filter((n) => !lost.includes(n));
      if (others.length) lines.push(`Your other changes were saved: ${[...new Set(others)].map((n) => labelOf(meta, n)).join(", ")}.`);
    }
  } else {
    // The title says "Not saved" / "Not done"; the lines say why, and a command's name first.
    const say = (/** @type {string} */ text) => lines.push(commandName ? `${commandName}: ${text[0].toLowerCase()}${text.slice(1)}` : text);
    const code = reason.code;
    if (code === "forbidden") say("You do not have permission to change this record.");
    else if (code === "not_found") say("The record no longer exists on the server, or you may no longer see it.");
    else if (code === "duplicate_id") say("A record with the same id already exists.");
    else if (code === "depends_on_rejected") say("It depends on another change that was refused.");
    else if (TOLD.has(code) && typeof reason.message === "string" && reason.message) say(reason.message);
    else if (code === "not_allowed_offline") say(`This is not available offline for ${meta?.display_collection_name || "these records"}.`);
    else if (code === "validation_failed" || code === "bad_request") {
      const details = reason.details && typeof reason.details === "object" ? Object.entries(reason.details) : [];
      if (details.length) {
        say("The server refused the values.");
        for (const [attrName, messages] of details) lines.push(`${labelOf(meta, attrName)}: ${[].concat(messages).join(" ")}`);
      } else if (reason.field) {
        say(`The server refused the value of ${labelOf(meta, reason.field)}.`);
      } else {
        say("The server refused the values.");
      }
    } else {
      say("The server refused it.");
    }
    if (sent.kind === "create") lines.push("It was removed from this device.");
    else if (sent.kind === "delete") {
      if (onDevice) lines.push("It was restored on this device.");
    }
    else lines.push(onDevice ? "The server's values were restored on this device." : "It was removed from this device.");
  }
  const writable = Boolean(meta?.offline_commands?.includes("update"));
  return {
    title,
    status: kind === "conflict" ? "Automatically resolved" : commandName ? "Not done" : "Not saved",
    lines,
    fields,
    href: onDevice && meta ? `#/record/${encodeURIComponent(sent.entity)}/${encodeURIComponent(sent.id)}` : null,
    canKeepMine: kind === "conflict" && onDevice && (sent.kind === "delete" ? Boolean(meta?.offline_commands?.includes("delete")) : writable && fields.length > 0),
    // The same change again would be refused again where the metadata no longer allows it.
    canRetry: kind === "rejected" && !TOLD.has(reason.code) && sent.kind !== "command" && (sent.kind === "create" || onDevice),
    kind,
  };
}

/**
 * The user keeps their own values of a conflict: a new operation with them, made now (so its
 * base is the server's version the device holds), then the error is settled.
 * @param {any} ctx @param {any} error
 */
export async function keepMine(ctx, error) {
  const sent = error.sent;
  if (sent.kind === "delete") {
    await ctx.data.remove(sent.entity, sent.id);
  } else {
    const meta = ctx.store.entity(sent.entity);
    const refused = refusedFields(error.reason);
    const lost = new Set((Array.isArray(error.reason?.fields) ? error.reason.fields : []).filter((/** @type {string} */ f) => !(f in refused)));
    /** @type {Record<string, any>} */
    const changes = {};
    for (const [key, value] of Object.entries(sent.changes || {})) {
      const attr = attributeOf(meta, key);
      if (attr && lost.has(attr.logical_name)) changes[key] = value;
    }
    await ctx.data.update(sent.entity, sent.id, changes);
  }
  await ctx.store.discardError(error.op_id);
}

// --- the banner -------------------------------------------------------------------------------

const MAX_BANNERS = 3;

function region() {
  return document.getElementById("sync-banners");
}

/** Remove one banner (the user dismissed it, or opened what it names). @param {Element} el */
function dismiss(el) {
  el.remove();
  const more = region()?.querySelector(".sync-banner--more");
  if (more && region()?.querySelectorAll(".sync-banner:not(.sync-banner--more)").length === 0) more.remove();
}

/**
 * Banners for sync errors that just arrived: each names the record and what happened to the
 * change, and links to the record. They stay until dismissed or followed (a person may be
 * looking away), and sit under the top bar, in the flow: they never cover a screen's actions.
 * @param {any} ctx @param {string[]} opIds the ops the server just refused or resolved
 */
export async function announce(ctx, opIds) {
  const root = region();
  if (!root || !ctx.store || !opIds.length) return;
  const wanted = new Set(opIds);
  const errors = (await ctx.store.errors()).filter((/** @type {any} */ e) => wanted.has(e.op_id));
  for (const error of errors) {
    if (root.querySelector(`[data-op="${CSS.escape(error.op_id)}"]`)) continue;
    const d = describe(ctx, error);
    const banner = h(
      "div",
      { class: `banner sync-banner banner--${d.kind === "conflict" ? "warning" : "error"}`, role: "alert", "data-op": error.op_id },
      h("p", { class: "banner__text" }, h("strong", null, `${d.status}: ${d.title}`), ...d.lines.map((line) => h("span", { class: "sync-banner__line" }, line))),
      h(
        "div",
        { class: "banner__actions" },
        d.href ? h("a", { class: "button button--secondary", href: d.href, onclick: () => dismiss(banner) }, `Open ${d.title}`) : null,
        h("a", { class: "button button--secondary", href: "#/status", onclick: () => dismiss(banner) }, "Sync errors"),
        h("button", { type: "button", class: "button button--secondary", "aria-label": `Dismiss: ${d.title}`, onclick: () => dismiss(banner) }, "Dismiss"),
      ),
    );
    root.prepend(banner);
  }
  const banners = [...root.querySelectorAll(".sync-banner:not(.sync-banner--more)")];
  for (const extra of banners.slice(MAX_BANNERS)) extra.remove();
  root.querySelector(".sync-banner--more")?.remove();
  const total = (await ctx.store.errors()).length;
  if (total > Math.min(banners.length, MAX_BANNERS)) {
    root.append(h("p", { class: "sync-banner sync-banner--more" }, h("a", { href: "#/status" }, `All ${total} sync errors on Offline Status`)));
  }
}

/** Forget every banner (sign-out, another store). */
export function clearBanners() {
  region()?.replaceChildren();
}
