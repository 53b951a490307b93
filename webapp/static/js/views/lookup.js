// @ts-check
/**
 * The lookup picker: a type-ahead combobox (WAI-ARIA 1.2 combobox with a listbox popup) over the
 * target entity's records — a prefix search through the device's index when offline-ready, else
 * `contains` on the Web API. A lookup with several targets lets the user pick the entity first.
 *
 * Keys: ArrowDown opens (or moves down), ArrowUp moves up, Enter chooses, Escape closes (or undoes
 * the typing), Tab leaves; emptying the text and leaving clears the lookup. A target entity
 * that is not on the device keeps showing the stored name, and the picker says why it cannot be
 * changed ("<Entity> is not available offline").
 */
import { h } from "../dom.js";
import { isLocal, labelOf, nameOf, onDevice, odataString, optionString } from "./list.js";

const FORMATTED = "@OData.Community.Display.V1.FormattedValue";
const LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname";
const LIMIT = 20;
const DEBOUNCE_MS = 150;

/**
 * @typedef {{entity: string, id: string, name: string}} LookupValue
 * @typedef {{element: HTMLElement, input: HTMLInputElement, name: string, value: () => LookupValue|null,
 *   changed: () => boolean, changes: () => Record<string, string|null>, setError: (message: string) => void,
 *   focus: () => void}} LookupField
 */

/** The lookup value a record holds, or null. @param {any} attr @param {any} record @returns {LookupValue|null} */
export function lookupValue(attr, record) {
  const name = attr.logical_name;
  const id = record?.[`_${name}_value`];
  if (!id) return null;
  return { entity: record[`_${name}_value${LOGICAL}`] || attr.targets[0], id, name: String(record[`_${name}_value${FORMATTED}`] ?? "(no name)") };
}

/**
 * Whether the picker can search a target here, and if not, why.
 * @param {any} ctx @param {string} target @returns {string|null} the reason it cannot, or null
 */
function unavailable(ctx, target) {
  const tmeta = ctx.store.entities[target];
  if (!tmeta) return `${target} is not known on this device`;
  if (isLocal(ctx) && !onDevice(ctx, target)) return `${tmeta.display_name} is not available offline`;
  return null;
}

/**
 * A lookup field: label, (entity choice,) combobox, listbox, hint and error.
 * @param {any} ctx
 * @param {{attr: any, id: string, current: LookupValue|null, preset?: LookupValue|null, editable: boolean, exclude?: {entity: string, id: string}}} spec
 *   `current`: the value saved on the record (changes are measured from it); `preset`: a value to
 *   start with instead (a new record made from a related list)
 * @returns {LookupField}
 */
export function lookupField(ctx, spec) {
  const { attr, id } = spec;
  const name = attr.logical_name;
  const label = labelOf(attr);
  const targets = /** @type {string[]} */ (attr.targets || []);
  const polymorphic = targets.length > 1;
  /** @type {LookupValue|null} */
  let value = spec.preset !== undefined && spec.preset !== null ? spec.preset : spec.current;
  const listId = `${id}-list`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const statusId = `${id}-status`;
  const reasons = new Map(targets.map((t) => [t, unavailable(ctx, t)]));
  const usable = targets.filter((t) => !reasons.get(t));
  const valueReason = value ? reasons.get(value.entity) : null;
  const editable = spec.editable && usable.length > 0 && !valueReason;

  const hint = h("p", { class: "field__hint", id: hintId });
  const error = h("p", { class: "field__error", id: errorId });
  if (spec.editable && !editable) {
    const reason = valueReason || reasons.get(targets[0]) || "";
    hint.textContent = `${reason.charAt(0).toUpperCase()}${reason.slice(1)}, so ${label} cannot be changed here.`;
  } else if (spec.editable && polymorphic && usable.length < targets.length) {
    hint.textContent = targets.filter((t) => reasons.get(t)).map((t) => `${reasons.get(t)}.`).join(" ");
  }

  const input = /** @type {HTMLInputElement} */ (
    h("input", {
      id,
      class: "input lookup__input",
      type: "text",
      value: value ? value.name : "",
      autocomplete: "off",
      readOnly: !editable,
      "aria-describedby": `${hintId} ${errorId}`,
      "aria-required": attr.required ? "true" : null,
      placeholder: editable ? `Search ${polymorphic ? "" : ctx.store.entities[targets[0]]?.display_collection_name || ""}`.trim() : null,
    })
  );
  const labelEl = h("label", { class: "field__label", for: id }, label, attr.required ? h("span", { class: "field__required", "aria-hidden": "true" }, " *") : null);
  const openLink = () => {
    if (!value || reasons.get(value.entity)) return null;
    return h("a", { class: "button button--secondary lookup__open", href: `#/record/${encodeURIComponent(value.entity)}/${encodeURIComponent(value.id)}`, "aria-label": `Open ${value.name}` }, "Open");
  };

  if (!editable) {
    const link = openLink();
    const element = h("div", { class: "field lookup", "data-field": name }, labelEl, h("div", { class: "lookup__box" }, input, link), hint, error);
    return field(element);
  }

  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", listId);

  let target = value && usable.includes(value.entity) ? value.entity : usable[0];
  const typeSelect = polymorphic
    ? /** @type {HTMLSelectElement} */ (
        h(
          "select",
          {
            id: `${id}-type`,
            class: "input lookup__type",
            onchange: () => {
              target = typeSelect?.value || target;
              if (open) void search(typed());
            },
          },
          targets.map((t) =>
            h("option", { value: t, selected: t === target, disabled: Boolean(reasons.get(t)) }, `${ctx.store.entities[t]?.display_collection_name || t}${reasons.get(t) ? " (not available offline)" : ""}`),
          ),
        )
      )
    : null;
  const listbox = h("ul", { id: listId, role: "listbox", class: "lookup__list", "aria-label": `${label} results`, hidden: true });
  const status = h("p", { id: statusId, class: "visually-hidden", role: "status" });
  const clear = h("button", {
    type: "button",
    class: "button button--secondary lookup__clear",
    "aria-label": `Clear ${label}`,
    hidden: !value,
    onclick: () => {
      choose(null);
      input.focus();
    },
  }, "×");

  /** @type {{entity: string, id: string, name: string, el: HTMLElement}[]} */
  let options = [];
  let active = -1;
  let open = false;
  let typing = 0;
  let generation = 0;

  const setActive = (/** @type {number} */ i) => {
    active = i;
    options.forEach((o, j) => o.el.setAttribute("aria-selected", String(j === i)));
    if (i >= 0 && options[i]) {
      input.setAttribute("aria-activedescendant", options[i].el.id);
      options[i].el.scrollIntoView({ block: "nearest" });
    } else input.removeAttribute("aria-activedescendant");
  };
  const close = () => {
    open = false;
    generation += 1;
    listbox.hidden = true;
    input.setAttribute("aria-expanded", "false");
    setActive(-1);
  };
  const choose = (/** @type {LookupValue|null} */ next) => {
    value = next;
    input.value = next ? next.name : "";
    clear.hidden = !next;
    close();
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };

  /** @type {Promise<void>|null} the search whose options are on their way */
  let inflight = null;
  /** @param {string} text */
  const search = (text) => {
    inflight = runSearch(text);
    return inflight;
  };
  /** @param {string} text */
  const runSearch = async (text) => {
    const mine = ++generation;
    open = true;
    input.setAttribute("aria-expanded", "true");
    listbox.hidden = false;
    let found = [];
    let failure = "";
    try {
      found = await find(ctx, target, text.trim());
    } catch (err) {
      failure = `${ctx.store.entities[target]?.display_collection_name || target} cannot be searched now: ${/** @type {any} */ (err)?.message || err}`;
    }
    if (mine !== generation) return;
    const tmeta = ctx.store.entities[target];
    found = found.filter((r) => !(target === spec.exclude?.entity && r[tmeta.primary_id] === spec.exclude?.id)); // not itself
    options = found.map((r, i) => {
      const secondary = secondaryText(tmeta, r);
      const optionName = nameOf(tmeta, r);
      const el = h(
        "li",
        {
          id: `${id}-opt-${i}`,
          role: "option",
          class: "lookup__option",
          "aria-selected": "false",
          onpointerdown: (/** @type {Event} */ e) => e.preventDefault(), // keep focus in the input
          onclick: () => choose({ entity: target, id: r[tmeta.primary_id], name: optionName }),
        },
        h("span", { class: "lookup__name" }, optionName),
        secondary ? h("span", { class: "lookup__secondary" }, secondary) : null,
      );
      return { entity: target, id: r[tmeta.primary_id], name: optionName, el };
    });
    const empty = failure || (text ? `No ${tmeta.display_collection_name.toLowerCase()} start with “${text}”.` : `No ${tmeta.display_collection_name.toLowerCase()} on this device.`);
    listbox.replaceChildren(...(options.length ? options.map((o) => o.el) : [h("li", { class: "lookup__empty", role: "presentation" }, empty)]));
    status.textContent = options.length ? `${options.length} ${options.length === 1 ? "result" : "results"}` : empty;
    setActive(-1);
  };

  /** The text a search should use: none while the box still shows the chosen name. */
  const typed = () => (input.value === (value?.name ?? "") ? "" : input.value);
  /** Run a search the user is still typing for now (keys must act on fresh options). */
  const settle = async () => {
    if (typing) {
      clearTimeout(typing);
      typing = 0;
      await search(input.value);
    } else if (inflight) {
      await inflight;
    }
  };

  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = window.setTimeout(() => {
      typing = 0;
      void search(input.value);
    }, DEBOUNCE_MS);
  });
  // Tapping into the box selects its text, so typing replaces the name rather than editing it.
  let justFocused = false;
  input.addEventListener("focus", () => {
    justFocused = true;
    input.select();
  });
  input.addEventListener("click", () => {
    if (justFocused) input.select();
    justFocused = false;
    if (!open) void search(typed());
  });
  /**
   * One key, after the keys before it: a key may wait for options still on their way, and the
   * next key must act on the result (ArrowDown then Enter chooses what ArrowDown showed).
   * @param {string} key @param {boolean} altKey
   */
  const handleKey = async (key, altKey) => {
    switch (key) {
      case "ArrowDown": {
        const fresh = Boolean(typing || !open);
        if (!open && !typing) await search(typed());
        else await settle();
        if (!fresh && options.length) setActive(Math.min(options.length - 1, active + 1));
        else if (active < 0 && options.length && !altKey) setActive(0);
        break;
      }
      case "ArrowUp":
        await settle();
        if (open && options.length) setActive(Math.max(0, active - 1));
        break;
      case "Home":
      case "End":
        await settle();
        if (open && options.length) setActive(key === "Home" ? 0 : options.length - 1);
        break;
      case "Enter":
        if (typing) {
          await settle();
          return; // fresh options: the user sees them before choosing
        }
        await settle();
        if (open && active >= 0 && options[active]) {
          const o = options[active];
          choose({ entity: o.entity, id: o.id, name: o.name });
        }
        break;
      default:
    }
  };
  let keys = Promise.resolve();
  input.addEventListener("keydown", (e) => {
    justFocused = false;
    switch (e.key) {
      case "ArrowDown":
      case "ArrowUp":
        e.preventDefault();
        break;
      case "Home":
      case "End":
      case "Enter":
        if (!open && !typing) return; // Home/End move the caret; Enter submits the form
        e.preventDefault(); // never submit the form from an open picker
        break;
      case "Escape":
        if (open || typing) {
          e.preventDefault();
          e.stopPropagation();
          clearTimeout(typing);
          typing = 0;
          close();
        } else if (input.value !== (value?.name ?? "")) {
          e.preventDefault();
          input.value = value?.name ?? "";
        }
        return;
      case "Tab":
        close();
        return;
      default:
        return;
    }
    const { key, altKey } = e;
    keys = keys.then(() => handleKey(key, altKey)).catch((err) => console.error("lookup picker", err));
  });
  input.addEventListener("blur", () => {
    clearTimeout(typing);
    typing = 0;
    close();
    if (input.value.trim() === "" && value) choose(null);
    else input.value = value?.name ?? "";
  });

  const element = h(
    "div",
    { class: "field lookup", "data-field": name },
    labelEl,
    typeSelect ? h("label", { class: "visually-hidden", for: `${id}-type` }, `${label}: look for`) : null,
    h("div", { class: "lookup__box" }, typeSelect, h("div", { class: "lookup__combo" }, input, listbox), clear),
    status,
    hint,
    error,
  );
  return field(element);

  /** @param {HTMLElement} el @returns {LookupField} */
  function field(el) {
    const baseline = spec.current;
    return {
      element: el,
      input,
      name,
      value: () => value,
      changed: () => (value?.entity ?? null) !== (baseline?.entity ?? null) || (value?.id ?? null) !== (baseline?.id ?? null),
      changes: () => {
        if (!value) return { [`${name}@odata.bind`]: null };
        const set = ctx.store.entities[value.entity]?.entity_set;
        return { [`${name}${polymorphic ? `_${value.entity}` : ""}@odata.bind`]: `/${set}(${value.id})` };
      },
      setError: (message) => {
        error.textContent = message;
        el.classList.toggle("field--invalid", Boolean(message));
        if (message) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      },
      focus: () => input.focus(),
    };
  }
}

/**
 * Records of `target` whose name (or quick-find value, or a word of one) starts with `text`;
 * with no text, the first ones by name.
 * @param {any} ctx @param {string} target @param {string} text
 * @returns {Promise<any[]>}
 */
async function find(ctx, target, text) {
  const tmeta = ctx.store.entities[target];
  if (isLocal(ctx) && text) {
    const hits = await ctx.store.search([target], text, LIMIT);
    return hits.map((/** @type {any} */ hit) => hit.record);
  }
  let filter = "";
  if (text) {
    const columns = (tmeta.quick_find?.length ? tmeta.quick_find : [tmeta.primary_name]).filter((/** @type {string} */ c) =>
      ["string", "memo"].includes(tmeta.attributes.find((/** @type {any} */ a) => a.logical_name === c)?.type),
    );
    filter = columns.map((/** @type {string} */ c) => `contains(${c},${odataString(text)})`).join(" or ");
  }
  const page = await ctx.data.query(target, optionString({ $filter: filter, $orderby: `${tmeta.primary_name} asc`, $top: String(LIMIT) }), LIMIT);
  return page.entities;
}

/** A second line that tells records with the same name apart (an email, a number). @param {any} tmeta @param {any} record */
function secondaryText(tmeta, record) {
  const name = String(record[tmeta.primary_name] ?? "").toLowerCase();
  for (const col of tmeta.quick_find || []) {
    const v = record[col];
    if (col === tmeta.primary_name || typeof v !== "string" || !v) continue;
    if (name.includes(v.toLowerCase())) continue; // a part of the name says nothing new
    return v;
  }
  return "";
}
