// @ts-check
/**
 * Rules as data, interpreted on the device: what a value must be and which state moves a plain
 * write may make, with the message for each refusal. The rules arrive in the metadata (each
 * attribute's `rules`, the statecode options' `next` and `via`, the statuscode options'
 * `state`, the entity's `state_rules`), declared once on the server (webapp/crm/ruledata.py,
 * which interprets the same data there), so the phone and the server refuse the same value with
 * the same words. tests/cases/rules/*.json holds the cases both must pass. Pure functions of
 * the metadata; nothing here names an entity.
 */

/** @typedef {{check: string, message: string, limit?: number, min?: number, max?: number, values?: number[], places?: number, rounding?: string, display_places?: number, pattern?: string}} Rule */

/** The rule `check` of an attribute, or undefined. @param {any} attr @param {string} check @returns {Rule|undefined} */
export function ruleOf(attr, check) {
  return (attr.rules || []).find((/** @type {Rule} */ r) => r.check === check);
}

/**
 * A date or datetime written in its type rule's `pattern` and real on the calendar, as the wire
 * writes a datetime (UTC, to the second, an offset applied), or undefined: the server's
 * ruledata.py `parse_when` alike. @param {Rule} rule @param {any} value @returns {string|undefined}
 */
function parseWhen(rule, value) {
  const m = typeof value === "string" ? new RegExp(String(rule.pattern)).exec(value) : null;
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0));
  const at = new Date(0);
  at.setUTCFullYear(y, mo - 1, d);
  at.setUTCHours(h, mi, s, 0);
  const real = y >= 1 && at.getUTCFullYear() === y && at.getUTCMonth() === mo - 1 && at.getUTCDate() === d;
  if (!real || at.getUTCHours() !== h || at.getUTCMinutes() !== mi || at.getUTCSeconds() !== s) return undefined;
  const offset = m[7];
  if (offset && offset !== "Z") {
    const hours = Number(offset.slice(1, 3));
    const minutes = offset.length > 3 ? Number(offset.slice(-2)) : 0;
    if (hours > 23 || minutes > 59) return undefined;
    at.setTime(at.getTime() - (offset[0] === "+" ? 1 : -1) * (hours * 60 + minutes) * 60000);
  }
  return at.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * A value parsed as its attribute's type (as the server parses the same JSON forms; a date or
 * datetime by the type rule's published `pattern`), or undefined when it is not of that type.
 * @param {any} attr @param {any} value
 */
function parse(attr, value) {
  switch (attr.type) {
    case "string":
    case "memo":
      return typeof value === "string" ? value : undefined;
    case "integer":
    case "optionset":
      return typeof value === "number" && Number.isInteger(value) ? value : undefined;
    case "decimal":
    case "money":
      return typeof value === "number" && Number.isFinite(value) ? value : undefined;
    case "boolean":
      return typeof value === "boolean" ? value : undefined;
    case "date":
      return parseWhen(/** @type {Rule} */ (ruleOf(attr, "type")), value)?.slice(0, 10);
    case "datetime":
      return parseWhen(/** @type {Rule} */ (ruleOf(attr, "type")), value);
    default:
      return value;
  }
}

/**
 * A number's exact decimal value as [digits, scale] (value = digits / 10^scale), read from its
 * shortest decimal form, as the server reads a JSON number (Decimal(str(x))). @param {number|string} x
 * @returns {[bigint, number]}
 */
function exact(x) {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i.exec(String(x));
  if (!m) throw new Error(`not a finite number: ${x}`);
  let digits = BigInt(`${m[1]}${m[2]}${m[3] || ""}`);
  let scale = (m[3] || "").length - Number(m[4] || 0);
  if (scale < 0) {
    digits *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return [digits, scale];
}

/**
 * An exact [digits, scale] kept to `places` after the point, a tie going the declared way
 * (`half_even` or `half_up`, away from zero), as the server's Decimal quantize does.
 * @param {[bigint, number]} value @param {number} places @param {string} rounding @returns {bigint} the digits at scale `places`
 */
function roundExact([digits, scale], places, rounding) {
  if (scale <= places) return digits * 10n ** BigInt(places - scale);
  const unit = 10n ** BigInt(scale - places);
  const kept = digits / unit; // toward zero
  const rest = digits % unit;
  const twice = 2n * (rest < 0n ? -rest : rest);
  if (rounding !== "half_even" && rounding !== "half_up") throw new Error(`unknown rounding '${rounding}'`);
  const up = twice > unit || (twice === unit && (rounding === "half_up" || kept % 2n !== 0n));
  return up ? kept + (digits < 0n ? -1n : 1n) : kept;
}

/** Digits at a scale as a decimal string ("-12.3400"). @param {bigint} digits @param {number} places */
function decimalText(digits, places) {
  const text = (digits < 0n ? -digits : digits).toString().padStart(places + 1, "0");
  const whole = places ? text.slice(0, -places) : text;
  return `${digits < 0n ? "-" : ""}${whole}${places ? `.${text.slice(-places)}` : ""}`;
}

/** A number kept to `places`, rounded the declared way (the server's `round_to`). @param {number|string} value @param {number} places @param {string} rounding */
export function roundTo(value, places, rounding) {
  return Number(decimalText(roundExact(exact(value), places, rounding), places));
}

/** A parsed number as its column keeps it (the attribute's `places` rule). @param {any} attr @param {any} value */
function kept(attr, value) {
  const rule = ruleOf(attr, "places");
  if (!rule || typeof value !== "number" || (rule.places === 0 && Number.isInteger(value))) return value;
  return roundTo(value, Number(rule.places), String(rule.rounding));
}

/**
 * Money shown with its currency symbol, "-$1,234.50": the `places` rule's `display_places`,
 * a tie rounded the declared way (the server's ruledata.py `format_money`).
 * @param {number} value @param {string} symbol @param {Rule} rule the money attribute's `places` rule
 */
export function formatMoney(value, symbol, rule) {
  const places = Number(rule.display_places);
  const digits = roundExact(exact(value), places, String(rule.rounding));
  const [whole, part] = decimalText(digits < 0n ? -digits : digits, places).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${digits < 0n ? "-" : ""}${symbol}${grouped}${part === undefined ? "" : `.${part}`}`;
}

/**
 * Whether a formatted amount (the server's, or one made here earlier) still shows `value` as its
 * places rule would: the same digits once rounded to `display_places`, whatever the symbol.
 * @param {unknown} formatted @param {number|string} value @param {Rule} rule
 */
export function showsAmount(formatted, value, rule) {
  if (typeof formatted !== "string") return false;
  const places = Number(rule.display_places);
  const digits = roundExact(exact(value), places, String(rule.rounding));
  const text = `${digits < 0n ? "-" : ""}${decimalText(digits < 0n ? -digits : digits, places)}`;
  return formatted.replace(/[^0-9.-]/g, "") === text;
}

/** The message when a typed, non-null value breaks a constraint rule, else null. @param {Rule} rule @param {any} value */
export function failure(rule, value) {
  switch (rule.check) {
    case "no_nul":
      return value.includes("\u0000") ? rule.message : null;
    case "max_length":
      return [...value].length > Number(rule.limit) ? rule.message : null;
    case "range":
      return value < Number(rule.min) || value > Number(rule.max) ? rule.message : null;
    case "one_of":
      return (rule.values || []).includes(value) ? null : rule.message;
    case "required":
    case "not_null":
    case "type":
    case "places":
      return null;
    default:
      throw new Error(`unknown rule check '${rule.check}'`);
  }
}

/**
 * One value against its attribute's rules: `{value}` (parsed as the server stores it) or
 * `{message}` (the first rule it breaks).
 * @param {any} attr @param {any} value @returns {{value: any, message?: undefined} | {message: string, value?: undefined}}
 */
export function checkValue(attr, value) {
  if (value === null || value === undefined) {
    const notNull = ruleOf(attr, "not_null");
    return notNull ? { message: notNull.message } : { value: null };
  }
  const parsed = kept(attr, parse(attr, value));
  const type = ruleOf(attr, "type");
  if (parsed === undefined && type) return { message: type.message };
  for (const rule of attr.rules || []) {
    const message = failure(rule, parsed);
    if (message !== null) return { message };
  }
  return { value: parsed };
}

/** `template` with each `{name}` replaced by args[name] (the server fills the same way). @param {string} template @param {Record<string, any>} args */
export function fill(template, args) {
  let out = template;
  for (const [key, value] of Object.entries(args)) out = out.replaceAll(`{${key}}`, String(value));
  return out;
}

/**
 * The message refusing a write of `key` when only the server writes it (the document's
 * `write_rules`), else null. @param {any} rules @param {string} key
 */
export function serverOwned(rules, key) {
  if (!rules) return null;
  if (Object.hasOwn(rules.server_owned, key)) return String(rules.server_owned[key]);
  if (rules.server_owned_prefixes.some((/** @type {string} */ p) => key.startsWith(p))) return fill(rules.server_owned_other, { key });
  return null;
}

/** The placeholder form of a bind, as a message shows it. */
const BIND_FORM = /^\/?([A-Za-z_][A-Za-z0-9_]*)\(([0-9a-fA-F-]{36})\)$/;

/**
 * What is wrong with a `name@odata.bind` value, as the server's validation.py `_parse_bind`
 * decides it, with the published payload messages (`write_rules.messages`): `{field, message}`,
 * or `{field, target, id}` (target null: the lookup is cleared).
 * @param {Record<string, string>} messages @param {any} meta @param {string} name the key before "@odata.bind"
 * @param {any} value @param {Record<string, any>} bySet entity metadata by set name
 * @returns {{field: string, message: string, attr?: any} | {field: string, attr: any, target: string|null, id: string|null, message?: undefined}}
 */
export function checkBind(messages, meta, name, value, bySet) {
  const attrOf = (/** @type {string} */ n) => meta.attributes.find((/** @type {any} */ a) => a.logical_name === n);
  let attr = attrOf(name);
  let hint = null;
  if (!attr && name.includes("_")) {
    hint = name.slice(name.lastIndexOf("_") + 1);
    attr = attrOf(name.slice(0, name.lastIndexOf("_")));
  }
  if (!attr || attr.type !== "lookup") return { field: name, message: fill(messages.not_a_lookup, { name, entity: meta.logical_name }) };
  const key = attr.logical_name;
  if (value === null) return { field: key, attr, target: null, id: null };
  if (typeof value !== "string") return { field: key, attr, message: messages.bind_not_string };
  const m = BIND_FORM.exec(value);
  if (!m) return { field: key, attr, message: fill(messages.bind_form, { value }) };
  const target = bySet[m[1]];
  if (!target) return { field: key, attr, message: fill(messages.not_an_entity_set, { set: m[1] }) };
  if (!attr.targets.includes(target.logical_name)) {
    return { field: key, attr, message: fill(messages.wrong_target, { key, allowed: attr.targets.join(", "), target: target.logical_name }) };
  }
  if (hint !== null && hint !== target.logical_name) return { field: key, attr, message: fill(messages.wrong_hint, { name, hint }) };
  return { field: key, attr, target: target.logical_name, id: m[2].toLowerCase() };
}

/**
 * The state options, status options and state messages of an entity, or null when it has no
 * state. @param {any} meta @returns {[any[], any[], Record<string, string>] | null}
 */
export function stateMachine(meta) {
  const state = meta.attributes.find((/** @type {any} */ a) => a.logical_name === "statecode");
  const status = meta.attributes.find((/** @type {any} */ a) => a.logical_name === "statuscode");
  if (!state || !status || !meta.state_rules) return null;
  return [state.options, status.options, meta.state_rules.messages];
}

/** A refused state change: the attribute to blame and the message. @typedef {{field: string, message: string}} Refusal */

/**
 * Whether a plain create (`current` null) or update may make a state change: each state lists
 * in `next` the states a write may move it to; the rest are a command's (`via`). Null when it
 * may. @param {any[]} states @param {any[]} statuses @param {Record<string, string>} messages
 * @param {number|null} current @param {Record<string, any>} given @returns {Refusal|null}
 */
export function checkMove(states, statuses, messages, current, given) {
  let target = given.statecode ?? null;
  if (target === null && given.statuscode != null) target = statuses.find((s) => s.value === given.statuscode)?.state ?? null;
  const start = current ?? states[0].value;
  if (target === null || target === start) return null;
  const option = (/** @type {number} */ v) => states.find((s) => s.value === v);
  if ((option(start)?.next || []).includes(target)) return null;
  const via = option(start)?.via;
  const args = { from: option(start)?.label ?? start, to: option(target)?.label ?? target, via: via ? fill(messages.via, { via }) : "" };
  return { field: "statecode", message: fill(messages[current === null ? "create" : "move"], args) };
}

/**
 * The statecode and statuscode to write so that they agree (a status belongs to one state):
 * `merged` is the record with the write applied, `given` the write itself.
 * @param {any[]} states @param {any[]} statuses @param {Record<string, string>} messages
 * @param {Record<string, any>} merged @param {Record<string, any>} given
 * @returns {{changes: Record<string, any>, refusal?: undefined} | {refusal: Refusal, changes?: undefined}}
 */
export function pairState(states, statuses, messages, merged, given) {
  const stateOf = (/** @type {any} */ v) => statuses.find((s) => s.value === v)?.state ?? null;
  let state = merged.statecode ?? null;
  const status = merged.statuscode ?? null;
  /** @type {Record<string, any>} */
  const changes = {};
  const givenStatus = given.statuscode ?? null;
  if (givenStatus !== null && !("statecode" in given)) {
    state = stateOf(givenStatus);
    changes.statecode = state;
  }
  if (state === null) {
    state = states[0].value;
    changes.statecode = state;
  }
  if (status === null || ("statecode" in given && !("statuscode" in given)) || stateOf(status) !== state) {
    if (givenStatus !== null && stateOf(givenStatus) !== state) {
      return { refusal: { field: "statuscode", message: fill(messages.status_of, { status: givenStatus, state }) } };
    }
    changes.statuscode = statuses.find((s) => s.state === state)?.value ?? null;
  }
  return { changes };
}

/**
 * Set the values of the attributes with a `formula` from the record's other values, as the
 * server computes them (webapp/crm/ruledata.py `derive`): `join` spaces the sources that hold
 * text (none: null); `product` multiplies them exactly, kept to the attribute's `places` rule
 * (one missing: null).
 * @param {{attributes: any[]}} meta @param {Record<string, any>} v
 */
export function derive(meta, v) {
  for (const attr of meta.attributes) {
    const formula = attr.formula;
    if (!formula) continue;
    const values = formula.of.map((/** @type {string} */ name) => v[name]);
    if (formula.op === "join") {
      v[attr.logical_name] = values.filter(Boolean).join(" ") || null;
    } else if (values.some((/** @type {any} */ x) => x == null)) {
      v[attr.logical_name] = null;
    } else {
      const rule = /** @type {Rule} */ (ruleOf(attr, "places"));
      /** @type {[bigint, number]} */
      let product = [1n, 0];
      for (const x of values) {
        const [digits, scale] = exact(x);
        product = [product[0] * digits, product[1] + scale];
      }
      const places = Number(rule.places);
      v[attr.logical_name] = Number(decimalText(roundExact(product, places, String(rule.rounding)), places));
    }
  }
}
