// @ts-check
/**
 * The business commands' declaration (the metadata document's `commands`, declared once in
 * webapp/crm/commanddata.py) interpreted on the device; webapp/crm/commandrules.py is the same
 * interpreter on the server, function for function, so both refuse with the same words and plan
 * the same effects (tests/cases/rules/commands.json holds the cases both must pass).
 *
 * Pure: records arrive already read, in one neutral form (a plain value as JSON has it; a lookup
 * as `{entity, id}`), and entity metadata as published. The caller reads what `nextLoad` asks
 * for, until it asks for nothing, then writes the effects `plan` returns. Nothing here names an
 * entity, a field or a message.
 */

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** @typedef {{entity: string, id: string}} Ref */
/** @typedef {{kind: string, entity: string, id: string, changes: Record<string, any>}} Effect */
/** @typedef {(entity: string) => any} Meta an entity's published metadata, by logical name */

/** A command refused, as the server refuses it: its error code, message, field and details. */
export class CommandRefused extends Error {
  /** @param {string} code @param {string} message @param {string} [field] @param {Record<string, string[]>} [details] */
  constructor(code, message, field, details) {
    super(message);
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

/** `template` with each `{name}` replaced by args[name] (the server fills the same way). @param {string} template @param {Record<string, any>} args */
export function fill(template, args) {
  let out = template;
  for (const [key, value] of Object.entries(args)) out = out.replaceAll(`{${key}}`, String(value));
  return out;
}

/**
 * The refusal a declared `{message, detail?}` gives, blaming `field`.
 * @param {any} spec @param {string|undefined} [field] @param {Record<string, any>} [args] @param {string} [code]
 */
export function refuse(spec, field, args = {}, code = "validation_failed") {
  const details = field !== undefined && "detail" in spec ? { [field]: [fill(spec.detail, args)] } : undefined;
  return new CommandRefused(code, fill(spec.message, args), field, details);
}

/** The declaration of the command `name` (listed sorted, as the server lists them). @param {any} doc @param {any} name */
export function command(doc, name) {
  const commands = doc.commands;
  if (typeof name !== "string" || !Object.hasOwn(commands, name)) {
    throw refuse(doc.messages.unknown_command, undefined, { name, names: Object.keys(commands).sort().join(", ") }, "bad_request");
  }
  return commands[name];
}

/** `{arg: k}`: the argument is true; `{arg: k, is: v}`: it equals v; none: always. @param {any} condition @param {Record<string, any>} values */
export function holds(condition, values) {
  if (!condition) return true;
  const value = values[condition.arg];
  return "is" in condition ? value === condition.is : value === true;
}

/** The entities a command may create: the keys its `new_ids` may carry. @param {any} decl @returns {string[]} */
export function madeEntities(decl) {
  return (decl.records || []).map((/** @type {any} */ r) => r.entity);
}

/** @param {any} meta @param {number} state @returns {any[]} */
function statuses(meta, state) {
  const status = meta.attributes.find((/** @type {any} */ a) => a.logical_name === "statuscode");
  return status.options.filter((/** @type {any} */ o) => o.state === state);
}

/** @param {any} value */
const isId = (value) => typeof value === "string" && UUID_RE.test(value);

/**
 * One argument's value as the command uses it, or its refusal.
 * @param {any} doc @param {any} decl @param {string} key @param {any} spec @param {any} raw @param {any} meta
 */
function argument(doc, decl, key, spec, raw, meta) {
  const messages = doc.messages;
  switch (spec.type) {
    case "id":
      if (raw == null && !spec.required) return null;
      if (!isId(raw)) throw refuse(messages.id, key, { key });
      return raw;
    case "boolean":
      if (raw == null) return false;
      if (typeof raw !== "boolean") throw refuse(messages.boolean, key, { key });
      return raw;
    case "choice":
      if (typeof raw !== "string" || !spec.values.includes(raw)) throw refuse(spec, key);
      return raw;
    case "status": {
      const options = statuses(meta, spec.state);
      let value = raw == null ? (spec.default ?? null) : raw;
      if (typeof value === "string" && spec.labels) {
        const text = value.toLowerCase();
        value = options.find((o) => o.label.toLowerCase() === text)?.value ?? value;
      }
      if (typeof value !== "number" || !Number.isInteger(value) || !options.some((o) => o.value === value)) {
        const choices = options.map((o) => fill(spec.choice, { value: o.value, label: o.label })).join(spec.join);
        throw refuse(spec, key, { choices });
      }
      return value;
    }
    case "new_ids": {
      if (raw == null) return {};
      if (typeof raw !== "object" || Array.isArray(raw)) throw refuse(messages.new_ids, key);
      /** @type {Record<string, string>} */
      const ids = {};
      for (const entity of madeEntities(decl)) {
        if (raw[entity] == null) continue;
        if (!isId(raw[entity])) throw refuse(messages.new_id, key, { key: entity });
        ids[entity] = raw[entity];
      }
      return ids;
    }
    case "value":
      return raw ?? null;
    default:
      throw new Error(`unknown argument type '${spec.type}'`);
  }
}

/**
 * The arguments' values (defaults in, labels read as values), refusing the first bad one;
 * `meta` is the subject entity's metadata.
 * @param {any} doc @param {any} decl @param {any} args @param {any} meta @returns {Record<string, any>}
 */
export function checkArgs(doc, decl, args, meta) {
  if (typeof args !== "object" || args === null || Array.isArray(args)) throw refuse(doc.messages.not_an_object);
  const names = new Set(decl.args.map((/** @type {any} */ spec) => spec.name));
  const unknown = Object.keys(args).filter((k) => !names.has(k)).sort();
  if (unknown.length) {
    const spec = doc.messages.unknown_argument;
    const error = refuse(spec, unknown[0], { key: unknown[0] });
    error.details = Object.fromEntries(unknown.map((k) => [k, [spec.detail]]));
    throw error;
  }
  /** @type {Record<string, any>} */
  const values = {};
  for (const spec of decl.args) {
    if (holds(spec.when, values)) values[spec.name] = argument(doc, decl, spec.name, spec, args[spec.name], meta);
  }
  return values;
}

/** @param {any} find */
const via = (find) => `${find.as}:via`;

/**
 * The next record to read, as [key in `loaded`, entity, id], or null when all are read;
 * refuses as soon as a record read breaks what the command requires.
 * @param {any} decl @param {Record<string, any>} values @param {Record<string, any>} loaded
 * @returns {[string, string, string] | null}
 */
export function nextLoad(decl, values, loaded) {
  if (!("subject" in loaded)) return ["subject", decl.entity, values[decl.subject]];
  const subject = loaded.subject;
  const require = decl.require;
  if (require && subject[require.field] !== require.is) {
    throw new CommandRefused("validation_failed", require.message, require.field, { [require.field]: [require.message] });
  }
  for (const record of decl.records || []) {
    const existing = record.existing;
    if (existing && values[existing] && !(record.as in loaded)) return [record.as, record.entity, values[existing]];
  }
  const find = decl.find;
  if (find) {
    const target = subject[find.from];
    if (target && Object.hasOwn(find.refuse || {}, target.entity)) throw refuse(find.refuse[target.entity], find.from);
    if (target && Object.hasOwn(find.through || {}, target.entity) && !(via(find) in loaded)) return [via(find), target.entity, target.id];
  }
  return null;
}

/** The record a lookup of the subject leads to: itself when accepted, else one hop on. @param {any} find @param {any} subject @param {Record<string, any>} loaded @returns {Ref} */
function found(find, subject, loaded) {
  const target = subject[find.from];
  let out = null;
  if (target && find.accept.includes(target.entity)) out = target;
  else if (target && Object.hasOwn(find.through || {}, target.entity)) out = loaded[via(find)][find.through[target.entity]] ?? null;
  if (!out) throw refuse(find.missing, find.from);
  return out;
}

/**
 * An expression's value (webapp/crm/commanddata.py lists the forms).
 * @param {any} expr @param {Record<string, any>} values @param {Record<string, any>} subject @param {Record<string, any>} refs @param {string} today
 * @returns {any}
 */
export function evaluate(expr, values, subject, refs, today) {
  if ("value" in expr) return expr.value;
  if ("arg" in expr) return values[expr.arg] ?? null;
  if ("field" in expr) return subject[expr.field] ?? null;
  if ("ref" in expr) return refs[expr.ref] ?? null;
  if ("today" in expr) return today;
  if ("first" in expr) {
    const all = expr.first.map((/** @type {any} */ e) => evaluate(e, values, subject, refs, today));
    return all.find((/** @type {any} */ v) => v !== null && v !== "") ?? all[all.length - 1];
  }
  throw new Error(`unknown expression ${JSON.stringify(expr)}`);
}

/**
 * Set `name` of a record of `entity` to `value` in a Web API payload (a lookup as a bind).
 * @param {Meta} meta @param {string} entity @param {string} name @param {any} value @param {boolean} skipNull @param {Record<string, any>} changes
 */
function write(meta, entity, name, value, skipNull, changes) {
  const attr = meta(entity).attributes.find((/** @type {any} */ a) => a.logical_name === name);
  if (!attr) throw new Error(`the command declaration sets '${name}', which ${entity} does not have`);
  if (attr.type !== "lookup") {
    if (value !== null || !skipNull) changes[name] = value;
    return;
  }
  if (value === null) return;
  const targets = attr.targets;
  const ref = typeof value === "string" && targets.length === 1 ? { entity: targets[0], id: value } : value;
  if (typeof ref !== "object" || !targets.includes(ref.entity)) throw new Error(`the command declaration sets lookup '${name}' of ${entity} to ${JSON.stringify(value)}`);
  const key = targets.length > 1 ? `${name}_${ref.entity}@odata.bind` : `${name}@odata.bind`;
  changes[key] = `/${meta(ref.entity).entity_set}(${ref.id})`;
}

/** @param {Meta} meta @param {string} entity @param {Record<string, any>} sets @param {[any, any, any, string]} scope @param {Record<string, any>} changes */
function setAll(meta, entity, sets, scope, changes) {
  for (const [name, expr] of Object.entries(sets)) write(meta, entity, name, evaluate(expr, ...scope), Boolean(expr.skip_null), changes);
}

/**
 * The command's effects, in order, and the arguments to send (statuses given by label as their
 * values, the ids minted for new records added).
 * @param {any} decl @param {Record<string, any>} values @param {Record<string, any>} loaded @param {Meta} meta
 * @param {() => string} mint @param {string} today @param {Record<string, any>} args
 * @returns {[Effect[], Record<string, any>]}
 */
export function plan(decl, values, loaded, meta, mint, today, args) {
  const subject = loaded.subject;
  /** @type {Record<string, any>} */
  const refs = { subject: { entity: decl.entity, id: values[decl.subject] } };
  if (decl.find) refs[decl.find.as] = found(decl.find, subject, loaded);
  /** @type {[any, any, any, string]} */
  const scope = [values, subject, refs, today];
  /** @type {Effect[]} */
  const effects = [];
  const newIds = { ...(args.new_ids || {}) };
  for (const record of decl.records || []) {
    const existing = record.existing;
    if (existing && values[existing]) {
      refs[record.as] = { entity: record.entity, id: values[existing] };
      continue;
    }
    if (!holds(record.when, values)) {
      refs[record.as] = null;
      continue;
    }
    const id = (values.new_ids || {})[record.entity] || mint();
    newIds[record.entity] = id;
    /** @type {Record<string, any>} */
    const changes = {};
    setAll(meta, record.entity, record.set, scope, changes);
    effects.push({ kind: "create", entity: record.entity, id, changes });
    refs[record.as] = { entity: record.entity, id };
  }
  /** @type {Record<string, any>} */
  const update = {};
  for (const part of decl.update) if (holds(part.when, values)) setAll(meta, decl.entity, part.set, scope, update);
  effects.push({ kind: "update", entity: decl.entity, id: refs.subject.id, changes: update });
  const sent = { ...args };
  for (const spec of decl.args) {
    if (spec.type === "status" && spec.labels && args[spec.name] != null) sent[spec.name] = values[spec.name];
  }
  if (Object.keys(newIds).length) sent.new_ids = newIds;
  return [effects, sent];
}
