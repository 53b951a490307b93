// @ts-check
/**
 * Where screens read and write. Once the device is offline-ready, every read comes from the
 * device store through the OData engine and every write goes to the store and the queue in one
 * transaction (then the sync loop pushes it). Before that ("Skip for now") the app is
 * online-only and talks to the Web API. Writes are validated on the device by the metadata's
 * rules (ruledata.js), which the server declares and interprets too: the same messages.
 */
import { call } from "./api.js";
import { runQuery } from "./odata.js";
import { checkBind, checkMove, checkValue, fill, pairState, ruleOf, serverOwned, stateMachine } from "./ruledata.js";
import { uuid } from "./store.js";

/** A rejection shaped like the reference's offline API errors. */
export class DataError extends Error {
  /** @param {string} errorCode @param {string} message @param {string} [field] @param {Record<string, string[]>} [details] every bad field's messages, as the server's */
  constructor(errorCode, message, field, details) {
    super(message);
    this.errorCode = errorCode;
    this.field = field;
    this.details = details;
  }
}

export class Data {
  /** @param {import("./store.js").Store} store @param {import("./sync.js").Sync} sync */
  constructor(store, sync) {
    this.store = store;
    this.sync = sync;
  }

  /** Whether reads and writes go to the device (offline-ready) rather than the server. */
  get local() {
    return this.sync.status.offlineReady;
  }

  /**
   * Whether reads of `entity` come from the device: once offline-ready, and during the first
   * download already for every entity whose download has finished (the app is usable early).
   * @param {string} entity
   */
  async readsLocal(entity) {
    if (this.local) return true;
    const version = this.store.customizations?.version;
    const names = entity === "activitypointer" ? this.store.activityTypes() : [entity];
    for (const name of names) {
      const mark = await this.store.getMeta(`download:${name}`, null);
      if (!mark?.done || mark.version !== version) return false;
    }
    return names.length > 0;
  }

  /** @param {string} entity */
  meta(entity) {
    return this.store.entity(entity);
  }

  /**
   * A page of records for OData options ("$filter=…&$orderby=…").
   * @param {string} entity @param {string} options @param {number} [maxPageSize]
   * @returns {Promise<{entities: any[], nextSkip: number|null}>}
   */
  async query(entity, options, maxPageSize = 5000) {
    const meta = this.meta(entity);
    if (!(await this.readsLocal(entity))) {
      const q = options.replace(/^\?/, "");
      const page = await call("GET", `/api/data/${meta.entity_set}${q ? `?${q}` : ""}`);
      return { entities: page.value, nextSkip: page["@odata.nextLink"] ? 1 : null };
    }
    const generation = this.store.generation;
    const records = await this.store.all(entity);
    const targets = await this.#expandTargets(meta, options);
    const result = runQuery(records, options, meta, {
      maxPageSize,
      memo: this.store.views.memo(entity, generation), // kept sorted views, patched as records change (viewcache.js)
      entities: this.store.entities,
      userId: this.store.user.id,
      resolve: (/** @type {string} */ target, /** @type {string} */ id) => targets.get(`${target}|${id}`),
    });
    return { entities: result.value, nextSkip: result.nextSkip };
  }

  /** Records that $expand may need, keyed "entity|id". @param {any} meta @param {string} options */
  async #expandTargets(meta, options) {
    /** @type {Map<string, any>} */
    const out = new Map();
    const expand = new URLSearchParams(options.replace(/^\?/, "")).get("$expand"); // also as %24expand
    if (!expand) return out;
    for (const part of expand.split(",")) {
      const nav = part.split("(")[0].trim();
      const attr = meta.attributes.find((/** @type {any} */ a) => a.logical_name === nav || nav.startsWith(`${a.logical_name}_`));
      for (const target of attr?.targets || []) {
        const t = this.store.entities[target];
        if (!t) continue;
        for (const r of await this.store.all(target)) out.set(`${target}|${r[t.primary_id]}`, r);
      }
    }
    return out;
  }

  /** @param {string} entity @param {string} id */
  async retrieve(entity, id) {
    const meta = this.meta(entity);
    if (!(await this.readsLocal(entity))) return call("GET", `/api/data/${meta.entity_set}(${id})`);
    const types = entity === "activitypointer" ? this.store.activityTypes() : [entity];
    let record = null;
    for (const type of types) record = record || (await this.store.get(type, id)); // activities live under their type
    if (!record) throw new DataError("not_found", `There is no ${entity} with id ${id} on this device.`);
    return record;
  }

  /** @param {string} entity @param {Record<string, any>} data @returns {Promise<string>} the id */
  async create(entity, data) {
    const meta = this.meta(entity);
    const changes = this.validate(meta, data, true);
    const id = changes[meta.primary_id] || uuid();
    delete changes[meta.primary_id];
    if (!this.local) {
      const created = await call("POST", `/api/data/${meta.entity_set}`, { ...changes, [meta.primary_id]: id });
      return created[meta.primary_id];
    }
    this.#allowed(meta, "create");
    checkState(meta, null, {}, changes);
    await this.store.write("create", entity, id, changes);
    this.sync.kick();
    return id;
  }

  /** @param {string} entity @param {string} id @param {Record<string, any>} data */
  async update(entity, id, data) {
    const meta = this.meta(entity);
    const changes = this.validate(meta, data, false);
    if (!this.local) {
      await call("PATCH", `/api/data/${meta.entity_set}(${id})`, changes);
      return;
    }
    this.#allowed(meta, "update");
    if ("statecode" in changes || "statuscode" in changes) {
      const current = await this.retrieve(entity, id);
      checkState(meta, current.statecode ?? null, current, changes);
    }
    await this.store.write("update", entity, id, changes);
    this.sync.kick();
  }

  /** @param {string} entity @param {string} id */
  async remove(entity, id) {
    const meta = this.meta(entity);
    if (!this.local) {
      await call("DELETE", `/api/data/${meta.entity_set}(${id})`);
      return;
    }
    this.#allowed(meta, "delete");
    let target = entity;
    if (entity === "activitypointer") {
      const record = await this.retrieve(entity, id);
      target = record.activitytypecode;
      this.#allowed(this.meta(target), "delete");
    }
    await this.store.write("delete", target, id, {});
    this.sync.kick();
  }

  /** @param {any} meta @param {string} command */
  #allowed(meta, command) {
    if (!meta.offline_commands.includes(command)) {
      throw new DataError("not_allowed_offline", `${command} is not available offline for ${meta.display_collection_name}.`);
    }
  }

  /**
   * Check a Web API payload against the metadata, as the server's validation.py does, in the
   * same order and with the same published messages (`write_rules.messages`); returns the
   * changes. Lookups: `x@odata.bind` ("/accounts(<id>)" or null) or the older `{logicalname, id}`.
   * @param {any} meta @param {Record<string, any>} data @param {boolean} creating
   */
  validate(meta, data, creating) {
    const writeRules = this.store.customizations?.write_rules;
    /** @type {Record<string, string>} */
    const messages = writeRules?.messages ?? {};
    if (!data || typeof data !== "object" || Array.isArray(data)) throw new DataError("validation_failed", messages.not_an_object ?? "The body must be a JSON object.");
    /** @type {Record<string, any>} */
    const out = {};
    const attrs = new Map(meta.attributes.map((/** @type {any} */ a) => [a.logical_name, a]));
    const bound = new Set();
    /** @type {Record<string, string[]>} */
    const errors = {};
    const refuse = (/** @type {string} */ key, /** @type {string} */ message) => void (errors[key] ||= []).push(message);
    for (const [key, value] of Object.entries(data)) {
      if (key.endsWith("@odata.bind")) {
        const bind = checkBind(messages, meta, key.slice(0, -"@odata.bind".length), value, this.store.bySet);
        if (bind.message !== undefined) refuse(bind.field, bind.message);
        else {
          if (bind.id === null && ruleOf(bind.attr, "not_null") && !creating) refuse(bind.field, /** @type {any} */ (ruleOf(bind.attr, "not_null")).message);
          out[key] = value;
          if (bind.id !== null) bound.add(bind.field);
        }
        continue;
      }
      if (key === meta.primary_id) {
        if (!creating) refuse(key, messages.primary_id_fixed);
        else if (typeof value !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value)) refuse(key, messages.primary_id_form);
        else out[key] = value;
        continue;
      }
      const owned = serverOwned(writeRules, key);
      if (owned !== null) {
        refuse(key, owned);
        continue;
      }
      if (key.includes("@")) continue; // annotations a script echoes back (formatted values) are ignored, as on the server
      const attr = attrs.get(key);
      if (!attr) {
        if (key.startsWith("_") && key.endsWith("_value")) refuse(key, fill(messages.lookup_form, { name: key.slice(1, -6) }));
        else refuse(key, fill(messages.not_an_attribute, { key, entity: meta.logical_name }));
        continue;
      }
      if (attr.type === "lookup") {
        // The older form: {logicalname, id}, written as the bind it stands for.
        if (value && typeof value === "object" && typeof value.logicalname === "string" && typeof value.id === "string" && this.store.entities[value.logicalname]) {
          const name = `${key}${attr.targets.length > 1 ? `_${value.logicalname}` : ""}`;
          const bindValue = `/${this.store.entities[value.logicalname].entity_set}(${value.id.toLowerCase()})`;
          const bind = checkBind(messages, meta, name, bindValue, this.store.bySet);
          if (bind.message !== undefined) refuse(bind.field, bind.message);
          else {
            out[`${name}@odata.bind`] = bindValue;
            bound.add(key);
          }
          continue;
        }
        refuse(key, fill(messages.lookup_form, { name: key }));
        continue;
      }
      if (attr.read_only) {
        refuse(key, fill(messages.read_only, { key }));
        continue;
      }
      const checked = checkValue(attr, value);
      if (checked.message !== undefined) refuse(key, checked.message);
      else out[key] = checked.value;
    }
    if (creating) {
      for (const attr of meta.attributes) {
        const required = ruleOf(attr, "required");
        if (!required || attr.logical_name === meta.primary_id || errors[attr.logical_name]) continue;
        const present = attr.type === "lookup" ? bound.has(attr.logical_name) : out[attr.logical_name] !== undefined && out[attr.logical_name] !== null;
        if (!present) refuse(attr.logical_name, required.message);
      }
    }
    const bad = Object.keys(errors).sort();
    if (bad.length) throw new DataError("validation_failed", `${bad[0]}: ${errors[bad[0]][0]}`, bad[0], errors);
    return out;
  }
}

/**
 * Refuse a state change a plain create or update may not make, and a status that does not
 * belong to the state it is written with: the metadata's state rules (ruledata.js), as the
 * server interprets them.
 * @param {any} meta @param {number|null} current null for a create @param {Record<string, any>} record the record now ({} for a create)
 * @param {Record<string, any>} changes
 */
export function checkState(meta, current, record, changes) {
  const machine = stateMachine(meta);
  if (!machine) return;
  const refusal = checkMove(...machine, current, changes) ?? pairState(...machine, { ...record, ...changes }, changes).refusal;
  if (!refusal) return;
  const message = refusal.field === "statecode" ? refusal.message : `${refusal.field}: ${refusal.message}`;
  throw new DataError("validation_failed", message, refusal.field, { [refusal.field]: [refusal.message] });
}
