// @ts-check
/**
 * The business commands on the device — the same meaning as `webapp/crm/commands.py`, with the
 * same names, arguments (PROTOCOL.md §4) and effects, because both run the one declaration the
 * metadata document carries (`commands`) through the same interpreter (commandrules.js here).
 * This module only reads the records the interpreter asks for and queues what it plans: a
 * command runs at once against the device store, minting the ids of the records it creates and
 * passing them as `new_ids`, and is queued as ONE `command` operation; the server runs it
 * again, authoritatively, in one transaction. If the server refuses, the ack drops the
 * operation, which puts the device back to the server's state (the minted records disappear).
 */
import { call } from "./api.js";
import { CommandRefused, checkArgs, command, fill, nextLoad, plan as planEffects } from "./commandrules.js";
import { DataError } from "./data.js";
import { uuid } from "./store.js";

/** @typedef {import("./commandrules.js").Effect} Effect */

/** The interpreter's refusal as the app's errors are. @param {any} err */
function asDataError(err) {
  return err instanceof CommandRefused ? new DataError(err.code, err.message, err.field, err.details) : err;
}

/**
 * A stored record as the interpreter reads records: a lookup as `{entity, id}` (its type from
 * the lookup's annotation when it may point at several entities), other values as stored.
 * @param {any} meta @param {Record<string, any>} record
 */
function neutral(meta, record) {
  /** @type {Record<string, any>} */
  const out = {};
  for (const attr of meta.attributes) {
    const name = attr.logical_name;
    if (attr.type !== "lookup") {
      out[name] = record[name] ?? null;
      continue;
    }
    const id = record[`_${name}_value`];
    const target = attr.targets.length > 1 ? record[`_${name}_value@Microsoft.Dynamics.CRM.lookuplogicalname`] : attr.targets[0];
    out[name] = id && target ? { entity: target, id } : null;
  }
  return out;
}

/**
 * The effects of a command on the device (what the server will do), with minted ids.
 * @param {any} store the device store (or anything with `customizations`, `entity` and `get`)
 * @param {string} name
 * @param {Record<string, any>} args
 * @param {string} [today] ISO date, UTC as the server's
 * @returns {Promise<{effects: Effect[], args: Record<string, any>}>}
 */
export async function plan(store, name, args, today = new Date().toISOString().slice(0, 10)) {
  const doc = store.customizations.commands;
  const meta = (/** @type {string} */ entity) => store.entity(entity);
  try {
    const decl = command(doc, name);
    const values = checkArgs(doc, decl, args, meta(decl.entity));
    /** @type {Record<string, any>} */
    const loaded = {};
    for (let need = nextLoad(decl, values, loaded); need; need = nextLoad(decl, values, loaded)) {
      const [key, entity, id] = need;
      const record = await store.get(entity, id);
      if (!record) throw new DataError("not_found", `There is no ${entity} with id ${id} on this device.`);
      loaded[key] = neutral(meta(entity), record);
    }
    const [effects, sent] = planEffects(decl, values, loaded, meta, uuid, today, args);
    return { effects, args: sent };
  } catch (err) {
    throw asDataError(err);
  }
}

/**
 * Run a command: on the device (queued as one operation) when offline-ready, else on the server.
 * @param {any} ctx the app context
 * @param {string} name
 * @param {Record<string, any>} args
 * @returns {Promise<{created: {entity: string, id: string}[], updated: {entity: string, id: string}[]}>}
 */
export async function runCommand(ctx, name, args) {
  const doc = ctx.store.customizations?.commands;
  if (!ctx.data.local || !doc) {
    // Online-only, or a document from before commands were declared: the server runs it.
    const result = await call("POST", `/api/commands/${name}`, args);
    const ids = (/** @type {any[]} */ items) =>
      items.map((i) => ({ entity: i.entity, id: i.record[ctx.store.entity(i.entity).primary_id] }));
    return { created: ids(result.created), updated: ids(result.updated) };
  }
  let decl;
  try {
    decl = command(doc, name);
  } catch (err) {
    throw asDataError(err);
  }
  const entity = decl.entity;
  if (!ctx.store.entity(entity).offline_commands.includes(name)) {
    throw new DataError("not_allowed_offline", fill(doc.messages.not_available.message, { name, entity }));
  }
  const { effects, args: sent } = await plan(ctx.store, name, args);
  await ctx.store.write("command", entity, sent[decl.subject], {}, { command: name, args: sent, effects });
  ctx.sync.kick();
  return {
    created: effects.filter((e) => e.kind === "create").map((e) => ({ entity: e.entity, id: e.id })),
    updated: effects.filter((e) => e.kind === "update").map((e) => ({ entity: e.entity, id: e.id })),
  };
}
