// @ts-check
/**
 * The business commands on the device — the same meaning as `webapp/crm/commands.py`, with the
 * same names, arguments (PROTOCOL.md §4) and effects. A command runs at once against the device
 * store, minting the ids of the records it creates and passing them as `new_ids`, and is queued
 * as ONE `command` operation; the server runs it again, authoritatively, in one transaction. If
 * the server refuses, the ack drops the operation, which puts the device back to the server's
 * state (the minted records disappear).
 */
import { call } from "./api.js";
import { DataError } from "./data.js";
import { uuid } from "./store.js";

export const COMMAND_ENTITY = {
  qualify_lead: "lead",
  disqualify_lead: "lead",
  convert_activity_to_case: "appointment",
  close_opportunity: "opportunity",
};
const SUBJECT_KEY = { lead: "leadid", appointment: "activityid", opportunity: "opportunityid" };
export const DISQUALIFY_REASONS = { 4: "Lost", 5: "Cannot Contact", 6: "No Longer Interested", 7: "Canceled" };
export const AFTER_QUALIFY = "2-Develop";

/**
 * @typedef {{kind: string, entity: string, id: string, changes: Record<string, any>}} Effect
 */

/** @param {string} message @param {string} [field] */
function refuse(message, field) {
  throw new DataError("validation_failed", message, field);
}

/** @param {any} args @param {string} key */
function flag(args, key) {
  const value = args[key] ?? false;
  if (typeof value !== "boolean") refuse(`${key} must be true or false.`, key);
  return value;
}

/** @param {any} store @param {string} entity @param {string} id */
function bind(store, entity, id) {
  return `/${store.entity(entity).entity_set}(${id})`;
}

/** @param {any} record @param {string} what */
function requireOpen(record, what) {
  if (record.statecode !== 0) refuse(`The ${what} is not open.`, "statecode");
}

/**
 * The effects of a command on the device (what the server will do), with minted ids.
 * @param {any} store the device store
 * @param {string} name
 * @param {Record<string, any>} args
 * @returns {Promise<{effects: Effect[], args: Record<string, any>}>}
 */
export async function plan(store, name, args) {
  const get = async (/** @type {string} */ entity, /** @type {string} */ id) => {
    const record = await store.get(entity, id);
    if (!record) throw new DataError("not_found", `There is no ${entity} with id ${id} on this device.`);
    return record;
  };
  /** @type {Effect[]} */
  const effects = [];
  const newIds = { ...(args.new_ids || {}) };
  if (name === "qualify_lead") {
    const lead = await get("lead", args.leadid);
    requireOpen(lead, "lead");
    let accountId = args.existing_account_id || null;
    let contactId = args.existing_contact_id || null;
    const currency = lead._transactioncurrencyid_value;
    if (accountId) await get("account", accountId);
    else if (flag(args, "create_account")) {
      accountId = newIds.account = newIds.account || uuid();
      /** @type {Record<string, any>} */
      const changes = { name: lead.companyname || lead.fullname || lead.subject, telephone1: lead.telephone1 ?? null, emailaddress1: lead.emailaddress1 ?? null };
      if (currency) changes["transactioncurrencyid@odata.bind"] = bind(store, "transactioncurrency", currency);
      effects.push({ kind: "create", entity: "account", id: accountId, changes });
    }
    if (contactId) await get("contact", contactId);
    else if (flag(args, "create_contact")) {
      contactId = newIds.contact = newIds.contact || uuid();
      /** @type {Record<string, any>} */
      const changes = {
        firstname: lead.firstname ?? null,
        lastname: lead.lastname || lead.subject,
        jobtitle: lead.jobtitle ?? null,
        emailaddress1: lead.emailaddress1 ?? null,
        telephone1: lead.telephone1 ?? null,
      };
      if (accountId) changes["parentcustomerid_account@odata.bind"] = bind(store, "account", accountId);
      effects.push({ kind: "create", entity: "contact", id: contactId, changes });
    }
    let opportunityId = null;
    if (flag(args, "create_opportunity")) {
      opportunityId = newIds.opportunity = newIds.opportunity || uuid();
      /** @type {Record<string, any>} */
      const changes = {
        name: lead.subject,
        estimatedvalue: lead.estimatedamount ?? null,
        stepname: AFTER_QUALIFY,
        "originatingleadid@odata.bind": bind(store, "lead", lead.leadid),
      };
      if (accountId) changes["customerid_account@odata.bind"] = bind(store, "account", accountId);
      else if (contactId) changes["customerid_contact@odata.bind"] = bind(store, "contact", contactId);
      if (currency) changes["transactioncurrencyid@odata.bind"] = bind(store, "transactioncurrency", currency);
      effects.push({ kind: "create", entity: "opportunity", id: opportunityId, changes });
    }
    /** @type {Record<string, any>} */
    const leadChanges = { statecode: 1, statuscode: 3 };
    if (accountId) leadChanges["parentaccountid@odata.bind"] = bind(store, "account", accountId);
    if (contactId) leadChanges["parentcontactid@odata.bind"] = bind(store, "contact", contactId);
    if (opportunityId) leadChanges["qualifyingopportunityid@odata.bind"] = bind(store, "opportunity", opportunityId);
    effects.push({ kind: "update", entity: "lead", id: lead.leadid, changes: leadChanges });
  } else if (name === "disqualify_lead") {
    let status = args.statuscode;
    if (typeof status === "string") {
      const found = Object.entries(DISQUALIFY_REASONS).find(([, label]) => label.toLowerCase() === status.toLowerCase());
      status = found ? Number(found[0]) : status;
    }
    if (!(status in DISQUALIFY_REASONS) || typeof status !== "number") {
      refuse(`statuscode must be one of ${Object.entries(DISQUALIFY_REASONS).map(([k, v]) => `${k} (${v})`).join(", ")}.`, "statuscode");
    }
    const lead = await get("lead", args.leadid);
    requireOpen(lead, "lead");
    args = { ...args, statuscode: status };
    effects.push({ kind: "update", entity: "lead", id: lead.leadid, changes: { statecode: 2, statuscode: status } });
  } else if (name === "convert_activity_to_case") {
    const activity = await get("appointment", args.activityid);
    const regarding = activity._regardingobjectid_value;
    const kind = activity["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"];
    /** @type {[string, string]|null} */
    let customer = null;
    if (regarding && (kind === "account" || kind === "contact")) customer = [kind, regarding];
    else if (regarding && kind === "opportunity") {
      const opp = await get("opportunity", regarding);
      if (opp._customerid_value) customer = [opp["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"], opp._customerid_value];
    } else if (regarding && kind === "incident") refuse("The appointment is already about a case.", "regardingobjectid");
    if (!customer) refuse("A case needs a customer: set the appointment's Regarding to an account, a contact or an opportunity.", "regardingobjectid");
    const caseId = (newIds.incident = newIds.incident || uuid());
    const [customerType, customerId] = /** @type {[string, string]} */ (customer);
    effects.push({
      kind: "create",
      entity: "incident",
      id: caseId,
      changes: {
        title: activity.subject,
        description: activity.description ?? null,
        [`customerid_${customerType}@odata.bind`]: bind(store, customerType, customerId),
        caseorigincode: 4,
      },
    });
    /** @type {Record<string, any>} */
    const changes = { "regardingobjectid_incident@odata.bind": bind(store, "incident", caseId) };
    if (flag(args, "complete_activity")) Object.assign(changes, { statecode: 1, statuscode: 2 });
    effects.push({ kind: "update", entity: "appointment", id: activity.activityid, changes });
  } else if (name === "close_opportunity") {
    if (args.status !== "won" && args.status !== "lost") refuse("status must be 'won' or 'lost'.", "status");
    const opp = await get("opportunity", args.opportunityid);
    requireOpen(opp, "opportunity");
    let actual = args.actualvalue ?? null;
    if (actual === null && args.status === "won" && opp.estimatedvalue != null) actual = opp.estimatedvalue;
    /** @type {Record<string, any>} */
    const changes = { actualclosedate: args.actualclosedate || new Date().toISOString().slice(0, 10) };
    if (actual !== null) changes.actualvalue = actual;
    if (args.status === "won") Object.assign(changes, { statecode: 1, statuscode: 3, closeprobability: 100, stepname: "4-Close" });
    else {
      const reason = args.statuscode ?? 4;
      if (reason !== 4 && reason !== 5) refuse("statuscode for a lost opportunity is 4 (Canceled) or 5 (Out-Sold).", "statuscode");
      Object.assign(changes, { statecode: 2, statuscode: reason, closeprobability: 0 });
      if (args.competitorid) changes["competitorid@odata.bind"] = bind(store, "competitor", args.competitorid);
    }
    effects.push({ kind: "update", entity: "opportunity", id: opp.opportunityid, changes });
  } else {
    throw new DataError("unknown_command", `There is no command '${name}'.`);
  }
  const out = { ...args };
  if (Object.keys(newIds).length) out.new_ids = newIds;
  return { effects, args: out };
}

/**
 * Run a command: on the device (queued as one operation) when offline-ready, else on the server.
 * @param {any} ctx the app context
 * @param {keyof typeof COMMAND_ENTITY} name
 * @param {Record<string, any>} args
 * @returns {Promise<{created: {entity: string, id: string}[], updated: {entity: string, id: string}[]}>}
 */
export async function runCommand(ctx, name, args) {
  const entity = COMMAND_ENTITY[name];
  if (!entity) throw new DataError("unknown_command", `There is no command '${name}'.`);
  const meta = ctx.store.entity(entity);
  if (!meta.offline_commands.includes(name)) throw new DataError("not_allowed_offline", `${name} is not available for ${entity}.`);
  if (!ctx.data.local) {
    const result = await call("POST", `/api/commands/${name}`, args);
    const ids = (/** @type {any[]} */ items) =>
      items.map((i) => ({ entity: i.entity, id: i.record[ctx.store.entity(i.entity).primary_id] }));
    return { created: ids(result.created), updated: ids(result.updated) };
  }
  const { effects, args: sent } = await plan(ctx.store, name, args);
  const subject = /** @type {Record<string, string>} */ (SUBJECT_KEY)[entity];
  await ctx.store.write("command", entity, sent[subject], {}, { command: name, args: sent, effects });
  ctx.sync.kick();
  return {
    created: effects.filter((e) => e.kind === "create").map((e) => ({ entity: e.entity, id: e.id })),
    updated: effects.filter((e) => e.kind === "update").map((e) => ({ entity: e.entity, id: e.id })),
  };
}
