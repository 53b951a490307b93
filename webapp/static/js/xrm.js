// @ts-check
/**
 * The reference's offline client APIs, answered from the device (IndexedDB through the store and
 * the OData engine), so scripts written for the reference run unchanged (DESIGN.md §3 Browser):
 *
 *   Xrm.Mobile.offline  (also window.Outpost.offline — the same object)
 *     isOfflineEnabled(entity)                          → boolean (not a promise)
 *     createRecord(entity, data)                        → {id, logicalName, entityType}
 *     retrieveRecord(entity, id, options)               → the record ($select, $expand)
 *     retrieveMultipleRecords(entity, options, maxPageSize = 5000) → an array (one page)
 *     updateRecord(entity, id, data)                    → {id, logicalName, entityType}
 *     deleteRecord(entity, id)                          → {id, logicalName, entityType}
 *   Xrm.WebApi.offline, and plain Xrm.WebApi (which answers from the device too)
 *     isAvailableOffline(entity)                        → boolean
 *     createRecord / updateRecord                       → {entityType, id}
 *     deleteRecord                                      → {entityType, id, name}
 *     retrieveRecord(entity, id, options)               → the record
 *     retrieveMultipleRecords(entity, options, maxPageSize) → {entities, nextLink?}; pass the
 *       query part of nextLink back as `options` for the next page
 *
 * Options are the Web API's OData strings (a leading `?` is fine). `data` is a Web API body:
 * it may carry the primary id (a duplicate is rejected); lookups are `x@odata.bind` or the
 * older `{logicalname, id}`. Writes go through `ctx.data` — validated like the server, then
 * the record and its queued operation in one transaction — so they sync like any other change.
 * Every failure rejects with the reference's shape `{errorCode, message}` and writes nothing:
 * `errorCode` is the reference's number (scripts compare those), the message starts the way
 * the reference's does, and `code` keeps Outpost's own name (docs/offline.md, "Error codes"):
 *   not_found → -2147220969 (0x80040217) "<entity> With Id = <id> Does Not Exist"
 *   duplicate_id → -2147220937 (0x80040237) "Cannot insert duplicate key: …"
 *   forbidden, privilege_denied, not_allowed_offline (the command is not available offline for
 *     the entity), not_offline (the entity is not available offline) → -2147220960 (0x80040220)
 *     "Privilege denied: …"
 *   invalid_argument, invalid_query, unknown_attribute, unknown_entity, validation_failed
 *     (wrong type, too long, required …) → -2147220989 (0x80040203) "Invalid argument: …"
 *   not_offline_ready (the offline data is not on the device yet) and anything unexpected →
 *     -2147220970 (0x80040216) "An unexpected error occurred: …"
 */
import { ODataError, nextPageOptions, parseOptions, projectRecord, runQuery } from "./odata.js";

const GUID_RE = /^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$/;
const DEFAULT_PAGE_SIZE = 5000;

/** The reference's numeric error codes (HRESULTs as signed 32-bit numbers) and message starts. */
const NOT_FOUND = { errorCode: -2147220969, prefix: "" }; // 0x80040217 ObjectDoesNotExist
const DUPLICATE = { errorCode: -2147220937, prefix: "Cannot insert duplicate key" }; // 0x80040237 DuplicateRecord
const PRIVILEGE = { errorCode: -2147220960, prefix: "Privilege denied" }; // 0x80040220 PrivilegeDenied
const INVALID = { errorCode: -2147220989, prefix: "Invalid argument" }; // 0x80040203 InvalidArgument
const UNEXPECTED = { errorCode: -2147220970, prefix: "An unexpected error occurred" }; // 0x80040216 UnExpected
/** @type {Readonly<Record<string, {errorCode: number, prefix: string}>>} by Outpost's code */
export const ERROR_CODES = Object.freeze({
  not_found: NOT_FOUND,
  duplicate_id: DUPLICATE,
  forbidden: PRIVILEGE,
  privilege_denied: PRIVILEGE,
  not_allowed_offline: PRIVILEGE,
  not_offline: PRIVILEGE,
  invalid_argument: INVALID,
  invalid_query: INVALID,
  unknown_attribute: INVALID,
  unknown_entity: INVALID,
  validation_failed: INVALID,
  bad_request: INVALID,
  not_offline_ready: UNEXPECTED,
  error: UNEXPECTED,
});

/** @typedef {{errorCode: number, message: string, code: string}} XrmError */

/**
 * A rejection as the reference gives it: its number, a message shaped like its own, and
 * Outpost's code as an extra property.
 * @param {string} code @param {string} message @param {{entity?: string, id?: string}} [about]
 * @returns {XrmError}
 */
function failure(code, message, about = {}) {
  const known = ERROR_CODES[code] || UNEXPECTED;
  let text = message;
  if (known === NOT_FOUND) text = about.entity && about.id ? `${about.entity} With Id = ${about.id} Does Not Exist` : `Does Not Exist: ${message}`;
  else if (!message.startsWith(known.prefix)) text = `${known.prefix}: ${message}`;
  return { errorCode: known.errorCode, message: text, code };
}

/** Any failure as the reference's rejection shape. @param {any} err @param {{entity?: string, id?: string}} about @returns {XrmError} */
function asXrmError(err, about) {
  if (err && typeof err === "object" && typeof err.errorCode === "number" && typeof err.code === "string") return err; // already shaped
  if (err instanceof ODataError) return failure("invalid_query", err.message, about);
  if (err && typeof err === "object" && typeof err.errorCode === "string") return failure(err.errorCode, String(err.message), about);
  if (err && typeof err === "object" && typeof err.status === "number" && typeof err.code === "string") return failure(err.code, String(err.message), about); // ApiError
  if (err instanceof RangeError || err instanceof TypeError) return failure("invalid_argument", err.message, about);
  return failure("error", String(err?.message ?? err), about);
}

let installed = false;

/**
 * Define `window.Xrm` (Mobile.offline, WebApi, WebApi.offline) and `window.Outpost.offline`.
 * Idempotent: the functions read `ctx` at call time, so a new sign-in needs no new objects.
 * @param {any} ctx the app's context (store, data, sync)
 */
export function install(ctx) {
  const w = /** @type {any} */ (window);
  if (installed && w.Xrm?.Mobile?.offline && w.Outpost?.offline === w.Xrm.Mobile.offline) return;
  const api = offlineApi(ctx);

  /**
   * Run an API call; every failure rejects with {errorCode, message, code}.
   * @template T @param {() => Promise<T>} fn @param {string} entity @param {any} [id] @returns {Promise<T>}
   */
  const call = async (fn, entity, id) => {
    try {
      return await fn();
    } catch (err) {
      throw asXrmError(err, { entity: typeof entity === "string" ? entity : undefined, id: typeof id === "string" ? id : undefined });
    }
  };

  const mobileOffline = Object.freeze({
    /** @param {string} entity */
    isOfflineEnabled: (entity) => api.enabled(entity),
    /** @param {string} entity @param {Record<string, any>} data */
    createRecord: (entity, data) =>
      call(async () => {
        const id = await api.create(entity, data);
        return { id, logicalName: entity, entityType: entity };
      }, entity),
    /** @param {string} entity @param {string} id @param {string} [options] */
    retrieveRecord: (entity, id, options) => call(() => api.retrieve(entity, id, options), entity, id),
    /** @param {string} entity @param {string} [options] @param {number} [maxPageSize] */
    retrieveMultipleRecords: (entity, options, maxPageSize) => call(async () => (await api.retrieveMultiple(entity, options, maxPageSize)).entities, entity),
    /** @param {string} entity @param {string} id @param {Record<string, any>} data */
    updateRecord: (entity, id, data) =>
      call(async () => {
        const done = await api.update(entity, id, data);
        return { id: done, logicalName: entity, entityType: entity };
      }, entity, id),
    /** @param {string} entity @param {string} id */
    deleteRecord: (entity, id) =>
      call(async () => {
        const done = await api.remove(entity, id);
        return { id: done.id, logicalName: entity, entityType: entity };
      }, entity, id),
  });

  const webApiOffline = Object.freeze({
    /** @param {string} entity */
    isAvailableOffline: (entity) => api.enabled(entity),
    /** @param {string} entity @param {Record<string, any>} data */
    createRecord: (entity, data) => call(async () => ({ entityType: entity, id: await api.create(entity, data) }), entity),
    /** @param {string} entity @param {string} id @param {Record<string, any>} data */
    updateRecord: (entity, id, data) => call(async () => ({ entityType: entity, id: await api.update(entity, id, data) }), entity, id),
    /** @param {string} entity @param {string} id */
    deleteRecord: (entity, id) =>
      call(async () => {
        const done = await api.remove(entity, id);
        return { entityType: entity, id: done.id, name: done.name };
      }, entity, id),
    /** @param {string} entity @param {string} id @param {string} [options] */
    retrieveRecord: (entity, id, options) => call(() => api.retrieve(entity, id, options), entity, id),
    /** @param {string} entity @param {string} [options] @param {number} [maxPageSize] */
    retrieveMultipleRecords: (entity, options, maxPageSize) => call(() => api.retrieveMultiple(entity, options, maxPageSize), entity),
  });

  const xrm = w.Xrm && typeof w.Xrm === "object" ? w.Xrm : {};
  xrm.Mobile = { ...(xrm.Mobile || {}), offline: mobileOffline };
  xrm.WebApi = Object.freeze({ ...webApiOffline, offline: webApiOffline });
  w.Xrm = xrm;
  w.Outpost.offline = mobileOffline;
  installed = true;
}

/**
 * The calls themselves, over the app's store and data layer.
 * @param {any} ctx
 */
function offlineApi(ctx) {
  /** @param {string} entity */
  const enabled = (entity) => {
    const store = ctx.store;
    const meta = typeof entity === "string" ? store?.entities?.[entity] : undefined;
    const profile = store?.customizations?.offline_profile;
    return Boolean(meta && profile?.enabled && profile.entities?.[entity]?.enabled && meta.offline_commands.includes("read"));
  };

  /** The entity's metadata, when the device can answer for it. @param {any} entity */
  const metaFor = (entity) => {
    if (typeof entity !== "string" || !entity) throw failure("invalid_argument", "The entity's logical name must be a non-empty string.");
    const store = ctx.store;
    if (!store?.customizations) throw failure("not_offline_ready", "Outpost has no customizations on this device yet: sign in and download the offline updates.");
    const meta = store.entities[entity];
    if (!meta) throw failure("unknown_entity", `There is no entity '${entity}'.`);
    if (!enabled(entity)) throw failure("not_offline", `${meta.display_collection_name} (${entity}) are not available offline.`);
    if (!ctx.data?.local) throw failure("not_offline_ready", "The offline data is not on this device yet: download the offline updates (Offline Status → Download Customizations).");
    return meta;
  };

  /** A record id: a GUID, braces and upper case allowed. @param {any} id */
  const idOf = (id) => {
    const m = typeof id === "string" ? GUID_RE.exec(id.trim()) : null;
    if (!m) throw failure("invalid_argument", `'${id}' is not a record id (a GUID).`);
    return m[1].toLowerCase();
  };

  /** @param {any} options */
  const optionsOf = (options) => {
    if (options === undefined || options === null) return "";
    if (typeof options !== "string") throw failure("invalid_argument", "The options must be an OData query string such as \"?$select=name&$top=5\".");
    return options;
  };

  /** An activity (through activitypointer) or any record on the device, with the entity it is. @param {any} meta @param {string} id */
  const find = async (meta, id) => {
    const types = meta.logical_name === "activitypointer" ? ctx.store.activityTypes() : [meta.logical_name];
    for (const type of types) {
      const record = await ctx.store.get(type, id);
      if (record) return { entity: type, record };
    }
    throw failure("not_found", `There is no ${meta.logical_name} with id ${id} on this device.`, { entity: meta.logical_name, id });
  };

  /** An activity read through activitypointer carries only activitypointer's columns, as on the server. @param {any} meta @param {any} record @param {any} opts */
  const shape = (meta, record, opts) => {
    if (meta.logical_name !== "activitypointer" || opts.select !== null) return record;
    const out = projectRecord(record, meta.attributes.map((/** @type {any} */ a) => a.logical_name), meta);
    for (const e of opts.expand) if (e.nav in record) out[e.nav] = record[e.nav];
    return out;
  };

  return {
    enabled,

    /** @param {string} entity @param {Record<string, any>} data @returns {Promise<string>} */
    async create(entity, data) {
      metaFor(entity);
      return ctx.data.create(entity, data);
    },

    /** @param {string} entity @param {string} id @param {Record<string, any>} data @returns {Promise<string>} */
    async update(entity, id, data) {
      metaFor(entity);
      const rid = idOf(id);
      await ctx.data.update(entity, rid, data);
      return rid;
    },

    /** @param {string} entity @param {string} id @returns {Promise<{id: string, name: string|null}>} */
    async remove(entity, id) {
      const meta = metaFor(entity);
      const rid = idOf(id);
      const found = await find(meta, rid);
      const name = found.record[meta.primary_name] ?? null;
      if (found.entity !== entity) {
        // Through activitypointer: both command sets must allow it. ctx.data.remove cannot find
        // an activity by its activitypointer id on the device (data.js retrieves [activitypointer, id]),
        // so the concrete type is passed on.
        if (!meta.offline_commands.includes("delete")) throw failure("not_allowed_offline", `delete is not available offline for ${meta.display_collection_name}.`);
        await ctx.data.remove(found.entity, rid);
      } else {
        await ctx.data.remove(entity, rid);
      }
      return { id: rid, name };
    },

    /** @param {string} entity @param {string} id @param {string} [options] */
    async retrieve(entity, id, options) {
      const meta = metaFor(entity);
      const rid = idOf(id);
      const text = optionsOf(options);
      const entities = ctx.store.entities;
      const opts = parseOptions(text, meta, entities, { single: true });
      const { record } = await find(meta, rid);
      /** @type {Map<string, any>} */
      const targets = new Map();
      for (const exp of opts.expand) {
        const tid = record[`_${exp.attribute}_value`];
        if (!tid) continue;
        const target = await ctx.store.get(exp.target, tid);
        if (target) targets.set(`${exp.target}|${tid}`, target);
      }
      const { value } = runQuery([record], text, meta, { entities, resolve: (/** @type {string} */ t, /** @type {string} */ i) => targets.get(`${t}|${i}`) });
      return shape(meta, value[0], opts);
    },

    /** @param {string} entity @param {string} [options] @param {number} [maxPageSize] */
    async retrieveMultiple(entity, options, maxPageSize) {
      const meta = metaFor(entity);
      const text = optionsOf(options);
      const size = maxPageSize === undefined || maxPageSize === null ? DEFAULT_PAGE_SIZE : maxPageSize;
      if (!Number.isInteger(size) || size < 1) throw failure("invalid_argument", `maxPageSize must be a positive whole number, not ${maxPageSize}.`);
      const opts = parseOptions(text, meta, ctx.store.entities);
      const page = await ctx.data.query(entity, text, size);
      /** @type {{entities: any[], nextLink?: string}} */
      const result = { entities: page.entities.map((/** @type {any} */ r) => shape(meta, r, opts)) };
      if (page.nextSkip !== null && page.nextSkip !== undefined) {
        result.nextLink = `${location.origin}/api/data/${meta.entity_set}${nextPageOptions(text, page.nextSkip)}`;
      }
      return result;
    },
  };
}
