// @ts-check
/**
 * The server's record rules, mirrored on the device: what a create, update or delete does to a
 * record as the user sees it before the server has answered: option-set labels, a new record's
 * defaults, and how a Web API change (`x@odata.bind` included) lands in a wire-format record.
 * Derived fields (the attributes' `formula`) and the statecode/statuscode pairing are the
 * metadata's rules, interpreted by ruledata.js (as by the server's webapp/crm/ruledata.py). Pure functions of the metadata: no storage,
 * usable in a page or a worker.
 */

import { derive, formatMoney, pairState, ruleOf, showsAmount, stateMachine } from "./ruledata.js";

export const LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname";
export const FORMATTED = "@OData.Community.Display.V1.FormattedValue";

/**
 * @typedef {{logical_name: string, entity_set: string, primary_id: string, primary_name: string,
 *   ownership: string, attributes: any[], quick_find: string[], offline_commands: string[],
 *   views: any[], form: any, related: any[], is_activity?: boolean, display_name: string,
 *   display_collection_name: string}} EntityMeta
 * @typedef {{entities: Record<string, EntityMeta>, bySet: Record<string, EntityMeta>,
 *   user: {id: string, business_unit_id?: string}, baseCurrencySymbol?: string}} Schema the metadata
 *   the rules read, and who writes (`baseCurrencySymbol`: for amounts of a record with no currency)
 * @typedef {{kind: string, entity: string, id: string, changes: Record<string, any>}} Effect
 */

/** Now, as the wire format writes datetimes. */
export function nowIso() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The entity and id a bind names, or null. @param {Schema} schema @param {string} bind "/accounts(<id>)" */
export function parseBind(schema, bind) {
  const m = /^\/?([A-Za-z_][A-Za-z0-9_]*)\(([0-9a-fA-F-]{36})\)$/.exec(bind);
  if (!m || !schema.bySet[m[1]]) return null;
  return { entity: schema.bySet[m[1]].logical_name, id: m[2].toLowerCase() };
}

/**
 * One effect on a view: create, update or delete, with the same derivations as the server.
 * @param {Schema} schema @param {any} view @param {Effect} effect @param {Record<string, string|null>} labels
 */
export function applyEffect(schema, view, effect, labels) {
  const meta = schema.entities[effect.entity];
  if (effect.kind === "delete") return null;
  let next;
  if (effect.kind === "create") {
    next = newView(schema, meta, effect.id);
  } else {
    if (!view) return null; // an update of a record that is gone: nothing to show
    next = { ...view };
  }
  for (const [key, value] of Object.entries(effect.changes || {})) setWire(schema, meta, next, key, value, labels);
  pairWire(meta, next, effect.changes || {});
  derive(meta, next);
  labelMoney(meta, next, labels[symbolKey(effect.entity, effect.id)] ?? null);
  next.modifiedon = nowIso();
  return next;
}

/** Where `bindLabels` keeps the currency symbol of a record an operation touches. @param {string} entity @param {string} id */
export function symbolKey(entity, id) {
  return `$symbol:${entity}|${id}`;
}

/**
 * Give every money value of a view its formatted value with the currency symbol, as the server
 * does — also the amounts the device computes (an opportunity product's extended amount) and
 * those a change just set. `symbol`: the record's currency symbol when the operation knew it;
 * else the symbol its other amounts already show.
 * @param {EntityMeta} meta @param {Record<string, any>} view @param {string|null} symbol
 */
export function labelMoney(meta, view, symbol) {
  const money = meta.attributes.filter((a) => a.type === "money");
  if (!money.length) return;
  let known = symbol;
  if (known === null) {
    for (const a of money) {
      const shown = view[`${a.logical_name}${FORMATTED}`];
      const m = typeof shown === "string" ? /^-?([^\d\s-]+)/.exec(shown) : null;
      if (m) {
        known = m[1];
        break;
      }
    }
  }
  for (const a of money) {
    const key = `${a.logical_name}${FORMATTED}`;
    const value = view[a.logical_name];
    if (value === null || value === undefined) {
      delete view[key];
      continue;
    }
    const rule = /** @type {any} */ (ruleOf(a, "places"));
    const matches = showsAmount(view[key], value, rule);
    if (known !== null && (symbol !== null || !matches)) view[key] = formatMoney(value, known, rule);
  }
}

/** The starting view of a record created on the device. @param {Schema} schema @param {EntityMeta} meta @param {string} id */
export function newView(schema, meta, id) {
  /** @type {Record<string, any>} */
  const v = { [meta.primary_id]: id, versionnumber: null, createdon: nowIso(), modifiedon: nowIso() };
  for (const a of meta.attributes) {
    if (a.logical_name === meta.primary_id) continue;
    if (a.type === "lookup") v[`_${a.logical_name}_value`] = null;
    else v[a.logical_name] = null;
  }
  if (meta.ownership === "user") {
    v._ownerid_value = schema.user.id;
    v[`_ownerid_value${LOOKUP_NAME}`] = "systemuser";
    v._owningbusinessunit_value = schema.user.business_unit_id ?? null;
    if (v._owningbusinessunit_value) v[`_owningbusinessunit_value${LOOKUP_NAME}`] = "businessunit";
  }
  pairWire(meta, v, {});
  if (meta.is_activity) v.activitytypecode = meta.logical_name;
  return v;
}

/**
 * Write one Web API change into a wire-format view.
 * @param {Schema} schema @param {EntityMeta} meta @param {Record<string, any>} view @param {string} key @param {any} value
 * @param {Record<string, string|null>} labels
 */
export function setWire(schema, meta, view, key, value, labels) {
  if (key.endsWith("@odata.bind")) {
    let name = key.slice(0, -"@odata.bind".length);
    let attr = meta.attributes.find((a) => a.logical_name === name);
    if (!attr && name.includes("_")) {
      name = name.slice(0, name.lastIndexOf("_"));
      attr = meta.attributes.find((a) => a.logical_name === name);
    }
    if (!attr) return;
    const target = value ? parseBind(schema, value) : null;
    view[`_${attr.logical_name}_value`] = target ? target.id : null;
    view[`_${attr.logical_name}_value${LOOKUP_NAME}`] = target ? target.entity : null;
    if (target) view[`_${attr.logical_name}_value${FORMATTED}`] = labels[value] ?? null;
    else delete view[`_${attr.logical_name}_value${FORMATTED}`];
    return;
  }
  if (key === meta.primary_id) return;
  view[key] = value;
  delete view[`${key}${FORMATTED}`]; // the server's label (money, yes/no) no longer matches
  labelOption(meta, view, key);
}

/**
 * Make a view's statecode and statuscode agree after `changes` were written into it, as the
 * server does (ruledata.js `pairState`: the metadata's state rules); labels follow.
 * @param {EntityMeta} meta @param {Record<string, any>} view @param {Record<string, any>} changes
 */
export function pairWire(meta, view, changes) {
  const machine = stateMachine(meta);
  if (!machine) return;
  const paired = pairState(...machine, view, changes);
  if (!paired.changes) return; // refused: the device's validation stopped such a write before it was queued
  Object.assign(view, paired.changes);
  labelOption(meta, view, "statecode");
  labelOption(meta, view, "statuscode");
}

/** An option set's label beside its value. @param {EntityMeta} meta @param {Record<string, any>} view @param {string} key */
export function labelOption(meta, view, key) {
  const attr = meta.attributes.find((a) => a.logical_name === key);
  if (!attr || attr.type !== "optionset") return;
  const opt = attr.options.find((/** @type {any} */ o) => o.value === view[key]);
  if (opt) view[`${key}${FORMATTED}`] = opt.label;
  else delete view[`${key}${FORMATTED}`];
}

/**
 * The names of the records an operation's effects bind, so the view can show them before the
 * server answers: records the same operation creates (a command's new account) by their drafted
 * name, others through `lookup(entity, id)` → the stored view's (or server's) name.
 * @param {Schema} schema @param {Effect[]} effects
 * @param {(entity: string, id: string) => Promise<any>} lookup the stored records row, or null
 */
export async function bindLabels(schema, effects, lookup) {
  /** @type {Record<string, string|null>} */
  const labels = {};
  for (const effect of effects) {
    const meta = schema.entities[effect.entity];
    if (effect.kind !== "create" || !meta) continue;
    const draft = { ...(effect.changes || {}) };
    derive(meta, draft);
    labels[`/${meta.entity_set}(${effect.id})`] = draft[meta.primary_name] ?? null;
  }
  // The currency symbol of each record with money, so amounts show it before the server answers.
  for (const effect of effects) {
    const meta = schema.entities[effect.entity];
    if (effect.kind === "delete" || !meta || !meta.attributes.some((a) => a.type === "money")) continue;
    const bind = effect.changes?.["transactioncurrencyid@odata.bind"];
    let currency = typeof bind === "string" ? parseBind(schema, bind)?.id ?? null : null;
    if (!currency && effect.kind !== "create") {
      const row = await lookup(effect.entity, effect.id);
      currency = (row?.view ?? row?.server)?._transactioncurrencyid_value ?? null;
    }
    let symbol = null;
    if (currency) {
      const row = await lookup("transactioncurrency", currency);
      symbol = (row?.view ?? row?.server)?.currencysymbol ?? null;
    } else if (bind === undefined) {
      symbol = schema.baseCurrencySymbol ?? null;
    }
    if (symbol) labels[symbolKey(effect.entity, effect.id)] = symbol;
  }
  for (const effect of effects) {
    for (const [key, value] of Object.entries(effect.changes || {})) {
      if (!key.endsWith("@odata.bind") || typeof value !== "string") continue;
      const target = parseBind(schema, value);
      if (!target || value in labels) continue;
      const row = await lookup(target.entity, target.id);
      const meta = schema.entities[target.entity];
      labels[value] = row?.view && meta ? row.view[meta.primary_name] ?? null : row?.server?.[meta?.primary_name ?? ""] ?? null;
    }
  }
  return labels;
}
