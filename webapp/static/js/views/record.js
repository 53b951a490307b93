// @ts-check
/**
 * Record form (`#/record/<entity>/<id>`) and new record (`#/new/<entity>`), laid out from the
 * entity's form sections with the right control for each type:
 *
 *   string  <input type=text maxlength>      memo      <textarea maxlength>
 *   integer / decimal / money  <input type=number step> (money also shows the amount with its currency)
 *   boolean <input type=checkbox>            option set <select>
 *   date    <input type=date>                datetime   <input type=datetime-local> (shown in local
 *                                                       time, saved as UTC "…Z")
 *   lookup  the type-ahead picker (views/lookup.js)
 *
 * Strings take the keyboard of their metadata `format` (email, tel, url); numbers and dates their
 * own inputs. Read-only attributes (fullname, ticketnumber, extendedamount, activitytypecode,
 * Status …) are shown but not editable; Status Reason offers only the reasons of the record's
 * state, and a field a sales process steps through (Pipeline Phase) offers only its stages.
 * Save creates, or updates only the fields that changed; Delete asks first. Both only where the
 * entity's offline commands (online-only: the Web API) allow them, the server said the user may
 * (`@Outpost.Access`: w write, d delete) and the record is open: a closed record (a lead
 * Qualified or Disqualified, an opportunity Won or Lost, an activity Completed or Canceled, a
 * case Resolved or Cancelled …: any state but the first) is read-only, says so with its state in
 * words, and offers "Reopen" where a plain update may move it back (PROTOCOL.md §1). The
 * device validates like the server; a message shows next to its field (`aria-invalid`,
 * `aria-describedby`). Related records (an account's contacts, opportunities, cases and
 * activities) are listed at the bottom, from the device.
 *
 * A new record can start with a lookup filled in: `#/new/contact?parentcustomerid=account:<id>`.
 *
 * The administrator's client scripts (formscripts.js) run when the form shows (on load) and
 * before a save (on save); their notifications and failures show above the form.
 */
import { ask, h, toast } from "../dom.js";
import {
  allowed,
  attributeOf,
  emptyScreen,
  ensureStyles,
  formatValue,
  isLocal,
  labelOf,
  localDateTime,
  moneyText,
  nameOf,
  onDevice,
  optionString,
  pendingBadge,
  pendingKeys,
  recordHref,
} from "./list.js";
import { recordCommands, stageBar } from "./commands.js";
import { lookupField, lookupValue } from "./lookup.js";
import { runFormScript } from "../formscripts.js";
import { ruleOf } from "../ruledata.js";

export const live = "data";

const RELATED_LIMIT = 50;

/**
 * @typedef {{name: string, element: HTMLElement, changed: () => boolean, changes: () => Record<string, any>,
 *   problem: () => string, setError: (message: string) => void, focus: () => void}} Control
 */

/** @param {number} n */
const pad = (n) => String(n).padStart(2, "0");

/** A string attribute's `format` → the input type that brings the phone's keyboard for it. */
const INPUT_TYPES = /** @type {Record<string, string>} */ ({ email: "email", phone: "tel", url: "url" });
const INPUT_AUTOCOMPLETE = /** @type {Record<string, string>} */ ({ email: "email", phone: "tel", url: "url" });
/** What the server says the user may do with a record (PROTOCOL.md §1). */
const ACCESS = "@Outpost.Access";
/** Attributes the server sets (their changes go through commands, Reopen or the state's reason). */
const SYSTEM_READ_ONLY = new Set(["statecode"]);

/**
 * The stages of a process that steps through this attribute ("Pipeline Phase"), or null.
 * @param {any} ctx @param {any} meta @param {string} name @returns {string[]|null}
 */
function stagesOf(ctx, meta, name) {
  const process = (ctx.store?.customizations?.processes || []).find((/** @type {any} */ p) => p.entity === meta.logical_name && p.attribute === name);
  return process ? /** @type {string[]} */ (process.stages) : null;
}

/** "2-Develop" → "Develop". @param {string} stage */
const stageLabel = (stage) => stage.replace(/^\d+-/, "");

/**
 * Whether the user may do `what` (w write, d delete, a assign, s share) with a record, as the
 * server said; a record the device made and the server has not answered yet is the user's own.
 * @param {any} record @param {string} what
 */
export function may(record, what) {
  const rights = record?.[ACCESS];
  return typeof rights !== "string" || rights.includes(what);
}

/**
 * The record's state when it is closed (any state but the first: Disqualified, Won, Completed,
 * Resolved …), as {label, reason, reopen}; null for an open record or an entity without state.
 * `reopen`: a plain update may move it back to the first state.
 * @param {any} meta @param {any} record
 */
export function closedState(meta, record) {
  const stateAttr = attributeOf(meta, "statecode");
  if (!stateAttr || !record || record.statecode === null || record.statecode === undefined) return null;
  const first = stateAttr.options?.[0]?.value ?? 0;
  if (record.statecode === first) return null;
  const option = stateAttr.options.find((/** @type {any} */ o) => o.value === record.statecode);
  const statusAttr = attributeOf(meta, "statuscode");
  const reason = statusAttr?.options?.find((/** @type {any} */ o) => o.value === record.statuscode)?.label ?? null;
  return { label: String(option?.label ?? record.statecode), reason: reason && reason !== option?.label ? reason : null, reopen: (option?.next || []).includes(first), first };
}

/**
 * A record's name as a person reads it; a record with no name of its own (an opportunity
 * product picked from the catalogue) goes by its first view column's lookup (the product).
 * @param {any} meta @param {any} record
 */
export function titleOf(meta, record) {
  const own = record?.[meta.primary_name];
  if (own !== null && own !== undefined && own !== "") return String(own);
  const first = meta.views?.[0]?.columns?.[0];
  const attr = first ? attributeOf(meta, first) : null;
  const named = attr?.type === "lookup" ? record?.[`_${first}_value${FORMATTED_VALUE}`] : null;
  return named ? String(named) : nameOf(meta, record);
}
const FORMATTED_VALUE = "@OData.Community.Display.V1.FormattedValue";

/** "…Z" → the value of a datetime-local input, in the phone's time zone. @param {string|null} iso */
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value (local time) → UTC "…Z". @param {string} local */
function fromLocalInput(local) {
  return new Date(local).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A message without the "field: " prefix the API puts in front. @param {string} message @param {any} attr */
function fieldMessage(message, attr) {
  for (const prefix of [attr?.logical_name, attr?.display_name]) {
    if (prefix && message.startsWith(`${prefix}: `)) return message.slice(prefix.length + 2);
  }
  return message;
}

/**
 * One form control for a scalar attribute.
 * @param {any} ctx @param {any} meta @param {any} attr @param {any} record @param {boolean} editable
 * @returns {Control}
 */
function scalarControl(ctx, meta, attr, record, editable) {
  const name = attr.logical_name;
  const id = `f-${name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const value = record ? record[name] : null;
  const required = Boolean(attr.required) && editable;
  const label = h("label", { class: "field__label", for: id }, labelOf(attr), required ? h("span", { class: "field__required", "aria-hidden": "true" }, " *") : null);
  const hint = h("p", { class: "field__hint", id: hintId });
  const error = h("p", { class: "field__error", id: errorId });
  const common = { id, name, "aria-describedby": `${hintId} ${errorId}`, required };
  /** @type {HTMLInputElement|HTMLSelectElement|HTMLTextAreaElement} */
  let control;
  /** @type {() => string} */
  let raw;
  /** @type {(r: string) => any} */
  let typed = (r) => (r === "" ? null : r);
  let wrapper = null;

  if (!editable) {
    // Shown, not editable: the value as a person reads it.
    const text = formatValue(ctx, meta, record, name);
    control =
      attr.type === "memo"
        ? /** @type {HTMLTextAreaElement} */ (h("textarea", { ...common, class: "input", readOnly: true, rows: 3 }, text))
        : /** @type {HTMLInputElement} */ (h("input", { ...common, class: "input", type: "text", readOnly: true, value: text }));
    raw = () => "";
  } else {
    switch (attr.type) {
      case "memo":
        control = /** @type {HTMLTextAreaElement} */ (h("textarea", { ...common, class: "input", rows: 4, maxLength: attr.max_length || null }, value ?? ""));
        raw = () => control.value;
        break;
      case "integer":
      case "decimal":
      case "money": {
        const step = attr.type === "integer" ? "1" : attr.type === "money" ? "0.01" : "any";
        control = /** @type {HTMLInputElement} */ (
          h("input", {
            ...common,
            class: "input",
            type: "number",
            step,
            inputMode: attr.type === "integer" ? "numeric" : "decimal",
            min: ruleOf(attr, "range")?.min ?? null, // the bounds the save is held to (ruledata.js)
            max: ruleOf(attr, "range")?.max ?? null,
            value: value ?? "",
          })
        );
        raw = () => control.value;
        typed = (r) => (r === "" ? null : Number(r));
        if (attr.type === "money" && record && value !== null && value !== undefined) hint.textContent = moneyText(record, attr, ctx.store?.baseCurrencySymbol ?? "$");
        break;
      }
      case "boolean":
        control = /** @type {HTMLInputElement} */ (h("input", { ...common, type: "checkbox", checked: Boolean(value) }));
        raw = () => String(/** @type {HTMLInputElement} */ (control).checked);
        typed = (r) => r === "true";
        wrapper = h("label", { class: "checkbox", for: id }, control, labelOf(attr));
        break;
      case "date":
        control = /** @type {HTMLInputElement} */ (h("input", { ...common, class: "input", type: "date", value: value ?? "" }));
        raw = () => control.value;
        break;
      case "datetime":
        control = /** @type {HTMLInputElement} */ (h("input", { ...common, class: "input", type: "datetime-local", value: toLocalInput(value) }));
        raw = () => control.value;
        typed = (r) => (r === "" ? null : fromLocalInput(r));
        break;
      case "optionset": {
        // Status Reason: only the reasons of the record's state (a new record starts in the first).
        const state = name === "statuscode" ? (record?.statecode ?? 0) : null;
        const options = (attr.options || []).filter((/** @type {any} */ o) => state === null || o.state === undefined || o.state === state);
        const blank = name !== "statuscode" && !(required && value !== null);
        control = /** @type {HTMLSelectElement} */ (
          h(
            "select",
            { ...common, class: "input" },
            blank ? h("option", { value: "", selected: value === null || value === undefined }, "(none)") : null,
            options.map((/** @type {any} */ o) => h("option", { value: String(o.value), selected: o.value === value }, o.label)),
          )
        );
        raw = () => control.value;
        typed = (r) => (r === "" ? null : Number(r));
        break;
      }
      default: {
        const choices = stagesOf(ctx, meta, name);
        if (choices) {
          // A field a process steps through: its stages, never free text.
          const current = value ?? "";
          control = /** @type {HTMLSelectElement} */ (
            h(
              "select",
              { ...common, class: "input" },
              h("option", { value: "", selected: current === "" }, "(none)"),
              [...choices, ...(current && !choices.includes(current) ? [current] : [])].map((c) => h("option", { value: c, selected: c === current }, stageLabel(c))),
            )
          );
          raw = () => control.value;
          break;
        }
        const type = INPUT_TYPES[attr.format] || "text";
        control = /** @type {HTMLInputElement} */ (
          h("input", { ...common, class: "input", type, maxLength: attr.max_length || null, autocomplete: INPUT_AUTOCOMPLETE[attr.format] || "off", value: value ?? "" })
        );
        raw = () => control.value;
      }
    }
  }
  const initial = raw();
  const element = wrapper
    ? h("div", { class: "field", "data-field": name }, wrapper, hint, error)
    : h("div", { class: "field", "data-field": name }, label, control, hint, error);
  return {
    name,
    element,
    changed: () => editable && raw() !== initial,
    changes: () => ({ [name]: typed(raw()) }),
    problem: () => (control instanceof HTMLInputElement && control.validity.badInput ? "Enter a valid value." : ""),
    setError: (message) => {
      error.textContent = message;
      element.classList.toggle("field--invalid", Boolean(message));
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
    focus: () => control.focus(),
  };
}

/**
 * The record for a route: activities opened through activitypointer resolve to their own type.
 * @param {any} ctx @param {string} entity @param {string} id
 * @returns {Promise<{entity: string, record: any}|null>}
 */
async function load(ctx, entity, id) {
  if (entity === "activitypointer") {
    if (isLocal(ctx)) {
      for (const type of ctx.store.activityTypes()) {
        const found = await ctx.store.get(type, id);
        if (found) return { entity: type, record: found };
      }
      return null;
    }
    const pointer = await ctx.data.retrieve("activitypointer", id);
    entity = pointer.activitytypecode;
  }
  try {
    return { entity, record: await ctx.data.retrieve(entity, id) };
  } catch (err) {
    const e = /** @type {any} */ (err);
    if (e?.errorCode === "not_found" || e?.status === 404) return null;
    throw err;
  }
}

/**
 * A lookup value to start a new record with, from the hash (`?attr=entity:id`).
 * @param {any} ctx @param {any} attr @param {URLSearchParams} query
 */
async function presetValue(ctx, attr, query) {
  const raw = query.get(attr.logical_name);
  if (!raw) return null;
  const [entity, id] = raw.includes(":") ? raw.split(":") : [attr.targets[0], raw];
  if (!attr.targets.includes(entity)) return null;
  const tmeta = ctx.store.entities[entity];
  try {
    const record = await ctx.data.retrieve(entity, id);
    return { entity, id, name: nameOf(tmeta, record) };
  } catch {
    return null;
  }
}

/**
 * @param {any} ctx
 * @param {{parts: string[], query: URLSearchParams, isNew: boolean}} params
 */
export async function render(ctx, params) {
  ensureStyles();
  const store = ctx.store;
  if (!store?.customizations) return emptyScreen("Outpost", "Connect once to download your organisation's customizations.");
  let entity = params.parts[0] || "";
  const routeMeta = store.entities[entity];
  if (!routeMeta) return emptyScreen("Not found", `There is no entity called '${entity}'.`);
  if (isLocal(ctx) && !onDevice(ctx, entity)) {
    return emptyScreen(routeMeta.display_collection_name, `${routeMeta.display_collection_name} are not available offline.`);
  }
  const isNew = Boolean(params.isNew);
  let record = null;
  let id = params.parts[1] || "";
  if (!isNew) {
    const found = await load(ctx, entity, id);
    if (!found) {
      return emptyScreen(
        `${routeMeta.display_name} not found`,
        `This ${routeMeta.display_name.toLowerCase()} is not on this device: it was deleted, or it is no longer shared with you.`,
      );
    }
    entity = found.entity;
    record = found.record;
  }
  const meta = store.entities[entity];
  if (isNew && !allowed(ctx, meta, "create")) {
    return emptyScreen(`New ${meta.display_name}`, `${meta.display_collection_name} cannot be created ${isLocal(ctx) ? "offline" : "here"}.`);
  }
  if (!isNew) id = record[meta.primary_id];
  const closed = isNew ? null : closedState(meta, record);
  const offlineEditable = allowed(ctx, meta, "update");
  const editable = isNew || (offlineEditable && may(record, "w") && !closed);
  const deletable = !isNew && allowed(ctx, meta, "delete") && may(record, "d") && !closed;
  const pending = isNew ? new Set() : await pendingKeys(ctx);

  /** @type {Control[]} */
  const controls = [];
  const fieldNames = new Set();
  const sections = [];
  const sectionList = meta.form?.sections?.length ? meta.form.sections : [{ name: meta.display_name, fields: meta.attributes.filter((/** @type {any} */ a) => a.type !== "uniqueidentifier").map((/** @type {any} */ a) => a.logical_name) }];
  for (const [i, section] of sectionList.entries()) {
    const fields = [];
    for (const fieldName of section.fields) {
      const attr = attributeOf(meta, fieldName);
      if (!attr || attr.type === "uniqueidentifier" || fieldNames.has(fieldName)) continue;
      fieldNames.add(fieldName);
      const canEdit = editable && !attr.read_only && !SYSTEM_READ_ONLY.has(fieldName);
      if (attr.type === "lookup") {
        const picker = lookupField(ctx, {
          attr,
          id: `f-${fieldName}`,
          current: isNew ? null : lookupValue(attr, record),
          preset: isNew ? await presetValue(ctx, attr, params.query) : null,
          editable: canEdit,
          exclude: isNew ? undefined : { entity, id },
        });
        controls.push({ ...picker, problem: () => "" });
        fields.push(picker.element);
      } else {
        if (isNew && attr.read_only) continue; // computed by the server: nothing to show yet
        const control = scalarControl(ctx, meta, attr, record, canEdit);
        controls.push(control);
        fields.push(control.element);
      }
    }
    if (!fields.length) continue;
    const headingId = `section-${i}`;
    sections.push(h("section", { class: "card stack form-section", "aria-labelledby": headingId }, h("h2", { class: "section-title", id: headingId }, section.name), fields));
  }

  const formError = h("p", { class: "form-error", role: "alert" });
  const notifications = h("div", { class: "form-notifications stack stack--tight", "aria-live": "polite" });
  /** @type {import("../formscripts.js").FormHost} */
  const host = {
    entity,
    id: () => (isNew ? "" : id),
    getValue: (name) => {
      const control = controls.find((c) => c.name === name);
      if (control && control.changed()) return control.changes()[name];
      return record ? (record[name] ?? null) : null;
    },
    setValue: (name, value) => {
      const input = form.querySelector(`#f-${CSS.escape(name)}`);
      if (!(input instanceof HTMLInputElement || input instanceof HTMLSelectElement || input instanceof HTMLTextAreaElement) || ("readOnly" in input && input.readOnly)) return;
      if (input instanceof HTMLInputElement && input.type === "checkbox") input.checked = Boolean(value);
      else input.value = value === null || value === undefined ? "" : String(value);
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
    },
    notify: (message, level, noticeId) => {
      const key = noticeId || message;
      notifications.querySelector(`[data-notice="${CSS.escape(key)}"]`)?.remove();
      const error = level.toUpperCase() === "ERROR";
      const kind = error ? "error" : level.toUpperCase() === "WARNING" ? "warning" : "info";
      notifications.appendChild(h("p", { class: `banner banner--${kind} form-notification`, role: error ? "alert" : "status", "data-notice": key }, message));
    },
    clear: (noticeId) => notifications.querySelector(`[data-notice="${CSS.escape(noticeId)}"]`)?.remove(),
  };
  const saveButton = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", class: "button button--primary" }, "Save"));
  const deleteButton = deletable
    ? /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: "button button--danger", onclick: () => void remove() }, "Delete"))
    : null;
  const title = isNew ? `New ${meta.display_name}` : titleOf(meta, record);

  const clearErrors = () => {
    formError.textContent = "";
    for (const c of controls) c.setError("");
  };

  /** Show a rejected save: next to the field when the error names one. @param {any} err */
  const showError = (err) => {
    const details = err?.details && typeof err.details === "object" ? err.details : null;
    /** @type {[string, string][]} */
    const problems = details
      ? Object.entries(details).map(([k, v]) => [k, Array.isArray(v) ? String(v[0]) : String(v)])
      : err?.field
        ? [[String(err.field), String(err.message)]]
        : [];
    let first = null;
    for (const [fieldName, message] of problems) {
      const control = controls.find((c) => c.name === fieldName);
      if (!control) continue;
      control.setError(fieldMessage(message, attributeOf(meta, fieldName)));
      first = first || control;
    }
    if (first) {
      formError.textContent = `${meta.display_name} was not saved: check the highlighted field${problems.length > 1 ? "s" : ""}.`;
      first.focus();
    } else {
      formError.textContent = `${meta.display_name} was not saved: ${err?.message || err}`;
    }
  };

  const save = async () => {
    clearErrors();
    const script = await runFormScript(store.customizations, "onsave", host);
    if (script.prevented) {
      formError.textContent = `${meta.display_name} was not saved: the form's script stopped the save.`;
      return;
    }
    /** @type {Record<string, any>} */
    const changes = {};
    for (const c of controls) {
      const problem = c.problem();
      if (problem) {
        showError({ field: c.name, message: problem });
        return;
      }
      if (c.changed()) Object.assign(changes, c.changes());
    }
    if (!isNew && !Object.keys(changes).length) {
      toast("There are no changes to save.");
      return;
    }
    saveButton.disabled = true;
    try {
      if (isNew) {
        const newId = await ctx.data.create(entity, changes);
        toast(`${meta.display_name} created.`);
        ctx.navigate(`#/record/${encodeURIComponent(entity)}/${encodeURIComponent(newId)}`);
      } else {
        await ctx.data.update(entity, id, changes);
        toast(`${meta.display_name} saved.`);
        ctx.navigate(`#/record/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`);
      }
    } catch (err) {
      showError(err);
    } finally {
      saveButton.disabled = false;
    }
  };

  const remove = async () => {
    const choice = await ask({
      title: `Delete ${title}?`,
      body: [`This ${meta.display_name.toLowerCase()} will be deleted${isLocal(ctx) ? " on this device now and on the server at the next sync" : ""}.`],
      buttons: [
        { label: "Cancel", value: "cancel" },
        { label: "Delete", value: "delete", kind: "danger" },
      ],
    });
    if (choice !== "delete") return;
    try {
      await ctx.data.remove(entity, id);
      toast(`${meta.display_name} deleted.`);
      ctx.navigate(`#/list/${encodeURIComponent(entity)}`);
    } catch (err) {
      formError.textContent = `${meta.display_name} was not deleted: ${/** @type {any} */ (err)?.message || err}`;
    }
  };

  const form = h(
    "form",
    {
      class: "form record-form",
      novalidate: true,
      "aria-label": title,
      onsubmit: (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        void save();
      },
    },
    sections,
    formError,
    editable || deletable ? h("div", { class: "form__actions" }, editable ? saveButton : null, deleteButton) : null,
  );
  // While the user edits, a sync must not re-render the form under them.
  const hold = () => {
    const root = form.closest("#view");
    if (root instanceof HTMLElement) root.dataset.live = "false";
  };
  form.addEventListener("input", hold);
  form.addEventListener("change", hold);

  // On load: once the screen is in the page (render returns it first); never blocks the form.
  setTimeout(() => void runFormScript(store.customizations, "onload", host), 0);

  const listMeta = routeMeta.logical_name === "activitypointer" ? routeMeta : meta;
  return h(
    "section",
    { class: "screen stack record-screen" },
    h(
      "a",
      { class: "back-link", href: `#/list/${encodeURIComponent(listMeta.logical_name)}` },
      h("span", { "aria-hidden": "true" }, "‹\u00a0"),
      h("span", { class: "visually-hidden" }, "Back to "),
      listMeta.display_collection_name,
    ),
    h(
      "div",
      { class: "screen-header" },
      h(
        "div",
        { class: "stack stack--tight" },
        h("h1", null, title),
        h(
          "p",
          { class: "muted record-type" },
          meta.display_name,
          closed ? [" ", h("span", { class: "badge badge--closed record-state" }, closed.label)] : null,
          !isNew && pending.has(`${entity}|${id}`) ? [" ", pendingBadge()] : null,
        ),
      ),
    ),
    isNew ? null : recordCommands(ctx, meta, record),
    isNew ? null : stageBar(ctx, meta, record),
    notifications,
    isNew ? null : readOnlyNote(ctx, meta, record, closed, offlineEditable),
    form,
    isNew ? null : await related(ctx, meta, record),
    !isNew && record.modifiedon ? h("p", { class: "muted record-meta" }, `Modified ${localDateTime(record.modifiedon)}`) : null,
  );
}

/**
 * Why the form cannot be changed, in words: the record's state, the user's rights, or the
 * entity's offline commands; with "Reopen" where a closed record may be reopened.
 * @param {any} ctx @param {any} meta @param {any} record
 * @param {{label: string, reason: string|null, reopen: boolean, first: number}|null} closed @param {boolean} offlineEditable
 */
function readOnlyNote(ctx, meta, record, closed, offlineEditable) {
  const what = String(meta.display_name).toLowerCase();
  if (closed) {
    const reopen =
      closed.reopen && offlineEditable && may(record, "w")
        ? h(
            "button",
            {
              type: "button",
              class: "button button--secondary",
              onclick: async () => {
                try {
                  await ctx.data.update(meta.logical_name, record[meta.primary_id], { statecode: closed.first });
                  toast(`${meta.display_name} reopened.`);
                  ctx.render();
                } catch (err) {
                  toast(`${/** @type {any} */ (err)?.message || err}`, "error");
                }
              },
            },
            "Reopen",
          )
        : null;
    return h(
      "div",
      { class: "card stack stack--tight read-only-note", role: "note", "aria-label": "Read-only" },
      h("p", null, h("strong", null, closed.label), closed.reason ? ` (${closed.reason})` : "", `: this ${what} is closed, so it is read-only.`),
      reopen,
    );
  }
  if (!offlineEditable) {
    return h("p", { class: "muted", role: "note" }, isLocal(ctx) ? `${meta.display_collection_name} are read-only offline.` : `${meta.display_collection_name} are read-only here.`);
  }
  if (!may(record, "w")) {
    const owner = record[`_ownerid_value${FORMATTED_VALUE}`];
    return h(
      "p",
      { class: "card read-only-note", role: "note", "aria-label": "Read-only" },
      `You can read this ${what} but not change it${owner ? `: it belongs to ${owner}` : ""}.`,
    );
  }
  return null;
}

/**
 * The groups of records that point at a record: the entity's own list (meta.related), then every
 * custom entity with a lookup to it (a Site Visit's account).
 * @param {any} ctx @param {any} meta @returns {{entity: string, attribute: string}[]}
 */
function relatedGroups(ctx, meta) {
  const groups = [...(meta.related || [])];
  for (const other of Object.values(ctx.store.entities || {})) {
    const o = /** @type {any} */ (other);
    if (!o.is_custom) continue;
    for (const a of o.attributes) {
      if (a.type === "lookup" && a.targets.includes(meta.logical_name) && !groups.some((g) => g.entity === o.logical_name && g.attribute === a.logical_name)) {
        groups.push({ entity: o.logical_name, attribute: a.logical_name });
      }
    }
  }
  return groups;
}

/**
 * The records that point at this one (meta.related), each group a list of links, from the device.
 * @param {any} ctx @param {any} meta @param {any} record
 */
async function related(ctx, meta, record) {
  const id = record[meta.primary_id];
  const groups = [];
  for (const [i, rel] of relatedGroups(ctx, meta).entries()) {
    const rmeta = ctx.store.entities[rel.entity];
    if (!rmeta) continue;
    const headingId = `related-${i}`;
    const heading = (/** @type {string} */ text) => h("h3", { class: "related__title", id: headingId }, text);
    if (isLocal(ctx) && !onDevice(ctx, rel.entity)) {
      groups.push(h("section", { class: "related__group", "aria-labelledby": headingId }, heading(rmeta.display_collection_name), h("p", { class: "muted" }, `${rmeta.display_collection_name} are not available offline.`)));
      continue;
    }
    const select = [rmeta.primary_id, rmeta.primary_name];
    if (rel.entity === "activitypointer") select.push("activitytypecode");
    /** @type {any[]} */
    let rows = [];
    const firstColumn = rmeta.views?.[0]?.columns?.[0];
    if (firstColumn && attributeOf(rmeta, firstColumn)?.type === "lookup") select.push(firstColumn); // titleOf's fallback
    try {
      const page = await ctx.data.query(
        rel.entity,
        optionString({ $select: select.join(","), $filter: `_${rel.attribute}_value eq ${id}`, $orderby: `${rmeta.primary_name} asc`, $top: String(RELATED_LIMIT + 1) }),
        RELATED_LIMIT + 1,
      );
      rows = page.entities;
    } catch (err) {
      groups.push(h("section", { class: "related__group", "aria-labelledby": headingId }, heading(rmeta.display_collection_name), h("p", { class: "field__error" }, String(/** @type {any} */ (err)?.message || err))));
      continue;
    }
    const more = rows.length > RELATED_LIMIT;
    rows = rows.slice(0, RELATED_LIMIT);
    const attr = attributeOf(rmeta, rel.attribute);
    const newLink =
      rel.entity !== "activitypointer" && allowed(ctx, rmeta, "create") && attr?.targets?.includes(meta.logical_name)
        ? h("a", { class: "button button--secondary related__new", href: `#/new/${encodeURIComponent(rel.entity)}?${rel.attribute}=${meta.logical_name}:${id}` }, `New ${rmeta.display_name}`)
        : null;
    groups.push(
      h(
        "section",
        { class: "related__group stack stack--tight", "aria-labelledby": headingId },
        h("div", { class: "related__header" }, heading(`${rmeta.display_collection_name} (${rows.length}${more ? "+" : ""})`), newLink),
        rows.length
          ? h(
              "ul",
              { class: "list", "aria-labelledby": headingId },
              rows.map((r) =>
                h(
                  "li",
                  null,
                  h(
                    "a",
                    { class: "list__row", href: recordHref(rmeta, r) },
                    h("span", { class: "list__text" }, h("span", { class: "list__primary" }, titleOf(rmeta, r))),
                    rel.entity === "activitypointer" ? h("span", { class: "list__meta" }, formatValue(ctx, rmeta, r, "activitytypecode")) : null,
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, `No ${rmeta.display_collection_name.toLowerCase()}.`),
      ),
    );
  }
  if (!groups.length) return null;
  return h("section", { class: "related stack", "aria-labelledby": "related-title" }, h("h2", { id: "related-title" }, "Related"), groups);
}
