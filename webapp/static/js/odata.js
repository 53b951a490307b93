// @ts-check
/**
 * The device's query engine: the OData subset of the Web API (`$select $filter $orderby $top
 * $expand $skiptoken`), evaluated over an array of wire-format records (PROTOCOL.md §1).
 *
 * It mirrors the server's `webapp/crm/odata.py` and `webapp/crm/query.py` rule for rule, with
 * the same error messages, so one option string answers the same on the phone and the server
 * (tests/e2e/test_odata_differential.py holds the two against each other):
 *
 * - Option strings are read like a URL's query: a leading `?` is allowed, `&` separates options,
 *   `+` means a space and `%XX` escapes are decoded (write `%2B` for the `+` of a time-zone
 *   offset, `%26` for an `&` inside a string). The first occurrence of an option counts; keys
 *   that do not start with `$` are ignored; an unknown `$option` is an error.
 * - Strings compare case-insensitively by Unicode lower-casing (`toLowerCase`, Python's
 *   `str.lower`), and gt/ge/lt/le and `$orderby` compare the lower-cased strings by CODE POINT
 *   (not by UTF-16 code unit, which orders U+E000–U+FFFF after the astral characters).
 * - Nulls: `f eq null` / `f ne null` test for null; every other comparison or function on a null
 *   value is false (`f ne 'x'` skips nulls); `not` simply negates. Nulls sort first ascending
 *   and last descending; the primary id ascending breaks every tie.
 * - Lookups are read from `_<attr>_value` whether the query says `<attr>` or `_<attr>_value`;
 *   dates compare as calendar days, datetimes as instants (a literal's offset is converted to
 *   UTC), numbers numerically.
 * - Paging: `$skiptoken` is an offset encoded exactly like the server's (base64url of
 *   `{"o": N}` without padding); `$top` caps the total over all pages.
 */

export const MAX_DEPTH = 50;
export const MAX_TERMS = 500;
export const MAX_TOP = 2_147_483_647;
export const DEFAULT_PAGE_SIZE = 5000;

/** System columns every entity has, with their type in queries. */
export const SYSTEM_FIELDS = Object.freeze({
  ownerid: 'lookup',
  owningbusinessunit: 'lookup',
  createdby: 'lookup',
  modifiedby: 'lookup',
  createdon: 'datetime',
  modifiedon: 'datetime',
  versionnumber: 'integer',
});

/** Record keys the server includes whatever `$select` says (besides the primary id). */
export const ALWAYS_SELECTED = Object.freeze([
  '_ownerid_value',
  '_owningbusinessunit_value',
  '_createdby_value',
  '_modifiedby_value',
  'createdon',
  'modifiedon',
  'versionnumber',
]);

export const FORMATTED = '@OData.Community.Display.V1.FormattedValue';
export const LOGICAL = '@Microsoft.Dynamics.CRM.lookuplogicalname';

const SUPPORTED = new Set(['$select', '$filter', '$orderby', '$top', '$expand', '$skiptoken']);
const SYSTEM_TYPES = new Map(Object.entries(SYSTEM_FIELDS));
const STRING_TYPES = new Set(['string', 'memo']);
const NUMBER_TYPES = new Set(['integer', 'decimal', 'money', 'optionset']);
const ID_TYPES = new Set(['lookup', 'uniqueidentifier']);
const COMPARISONS = new Set(['eq', 'ne', 'gt', 'ge', 'lt', 'le']);
const FUNCTIONS = new Set(['contains', 'startswith', 'endswith']);
const KEYWORD_LITERALS = new Map([
  ['true', { kind: 'boolean', value: true }],
  ['false', { kind: 'boolean', value: false }],
  ['null', { kind: 'null', value: null }],
]);
const RESERVED = new Set([...COMPARISONS, 'and', 'or', 'not', ...KEYWORD_LITERALS.keys()]);
const LITERAL_KINDS = new Set(['string', 'number', 'guid', 'date', 'datetime']);
const EXPECTED = new Map([
  ['string', 'a quoted string'],
  ['memo', 'a quoted string'],
  ['integer', 'a number'],
  ['decimal', 'a number'],
  ['money', 'a number'],
  ['optionset', 'a number'],
  ['boolean', 'true or false'],
  ['date', 'a date (YYYY-MM-DD)'],
  ['datetime', 'a date-time (YYYY-MM-DDThh:mm:ssZ) or a date'],
  ['lookup', 'a GUID'],
  ['uniqueidentifier', 'a GUID'],
]);

// Python's whitespace (str.isspace, re's \s, str.split(), str.strip()), which differs from
// JavaScript's \s in a few characters; the server splits and strips with Python's.
const WS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP_RE = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');
const SPLIT_RE = new RegExp(`[${WS}]+`);

// The server's token patterns ($filter), ASCII digits and letters only.
const END = '(?![A-Za-z0-9_.:\\-+])';
const SPACE_RE = new RegExp(`[${WS}]+`, 'y');
const DATETIME_RE =
  /([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}:[0-9]{2})(?![A-Za-z0-9_.:\-])/y;
const DATE_RE = new RegExp(`([0-9]{4})-([0-9]{2})-([0-9]{2})${END}`, 'y');
const GUID_RE = new RegExp(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}${END}`, 'y');
const GUID_FULL_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const NUMBER_RE = new RegExp(`-?[0-9]+(?:\\.[0-9]+)?${END}`, 'y');
const NAME_RE = /[A-Za-z_][A-Za-z0-9_]*/y;
// The reference's current-user conditions (FetchXML eq-userid / ne-userid), as its Web API writes them.
export const USER_FUNCTIONS = Object.freeze(['EqualUserId', 'NotEqualUserId']);
const USER_PREFIX = 'Microsoft.Dynamics.CRM.';
const USERCALL_RE = /Microsoft\.Dynamics\.CRM\.([A-Za-z]+)\(PropertyName='([A-Za-z_][A-Za-z0-9_]*)'\)/y;
const MALFORMED_RE = new RegExp(`[^${WS}(),']+`, 'uy');
// Python's str.isdigit (decimal digits plus the common superscript, subscript and circled ones);
// it only chooses between two error messages.
const DIGIT_RE = /^[\p{Nd}\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u2080-\u2089\u2460-\u2468\u2474-\u247c\u2488-\u2490]/u;
// A record's datetime: the wire's "YYYY-MM-DDTHH:MM:SSZ" (fast path), or leniently (fraction,
// offset, space, no time).
const WIRE_DATETIME_RE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$/;
const RECORD_DATETIME_RE =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$/;
const EXPAND_ITEM_RE = new RegExp(`^[${WS}]*([A-Za-z_][A-Za-z0-9_]*)[${WS}]*(?:\\(([\\s\\S]*)\\))?[${WS}]*$`);

/**
 * @typedef {object} AttributeMeta  One attribute as published by GET /api/metadata.
 * @property {string} logical_name
 * @property {string} type  string, memo, integer, decimal, money, boolean, datetime, date,
 *   optionset, lookup or uniqueidentifier
 * @property {string[]} [targets]  a lookup's target entities (several: polymorphic)
 */

/**
 * @typedef {object} EntityMeta  One entity as published by GET /api/metadata.
 * @property {string} logical_name
 * @property {string} [entity_set]
 * @property {string} primary_id
 * @property {string} [primary_name]
 * @property {AttributeMeta[]} attributes
 */

/**
 * @typedef {Record<string, EntityMeta> | EntityMeta[]} EntityCatalog  The organisation's
 *   entities: by logical name, or the `entities` array of GET /api/metadata as it is.
 */

/**
 * @typedef {object} Literal  A `$filter` literal: `value` is a string (lower-case for guid;
 *   "YYYY-MM-DD" for date; "YYYY-MM-DDTHH:MM:SS.ffffff" in UTC for datetime), a number, a
 *   boolean or null; `text` is the literal as written.
 * @property {'string'|'number'|'boolean'|'null'|'guid'|'date'|'datetime'} kind
 * @property {any} value
 * @property {string} text
 */

/**
 * @typedef {{type: 'compare', field: string, op: string, value: Literal}
 *   | {type: 'call', name: string, field: string, value: Literal}
 *   | {type: 'user', name: string, field: string}
 *   | {type: 'and', items: FilterNode[]}
 *   | {type: 'or', items: FilterNode[]}
 *   | {type: 'not', item: FilterNode}} FilterNode  A parsed `$filter`.
 */

/**
 * @typedef {object} OrderItem  One `$orderby` item: the column (a lookup by its attribute name).
 * @property {string} field
 * @property {boolean} descending
 */

/**
 * @typedef {object} ExpandItem  One `$expand` item: the navigation name as written, its lookup
 *   attribute, the target entity and the target's columns.
 * @property {string} nav
 * @property {string} attribute
 * @property {string} target
 * @property {string[]} select
 */

/**
 * @typedef {object} QueryOptions  A parsed option string. `skiptoken` is the decoded offset
 *   (0 without a `$skiptoken`).
 * @property {string[] | null} select
 * @property {FilterNode | null} filter
 * @property {OrderItem[]} orderby
 * @property {number | null} top
 * @property {ExpandItem[]} expand
 * @property {number} skiptoken
 */

/**
 * @typedef {object} RunOptions
 * @property {number} [maxPageSize]  records per page (a positive integer; default 5000)
 * @property {EntityCatalog} [entities]  needed for `$expand`
 * @property {(entity: string, id: string) => (Record<string, any> | null | undefined)} [resolve]
 *   the record of `entity` with that id, or undefined (needed for `$expand`)
 * @property {Map<string, MemoEntry>} [memo]  the caller's store of filtered, sorted results, by
 *   filter and ordering: a view's second page, or the same view opened again, skips the filter
 *   and the sort. The caller must clear it whenever `records` change, or patch each entry with
 *   its `matches` and `compare` (viewcache.js).
 * @property {string | null} [userId]  the signed-in user, for `Microsoft.Dynamics.CRM.EqualUserId`
 *   / `NotEqualUserId` (the "My …" views); without it those conditions are an error, as on a
 *   server with no user
 */

/**
 * @typedef {object} MemoEntry  one query's filtered, sorted records, and what made them
 * @property {Record<string, any>[]} sorted  the matching records in the query's order
 * @property {((record: Record<string, any>) => boolean) | null} matches  its filter (null: all)
 * @property {(a: Record<string, any>, b: Record<string, any>) => number} compare  its order (total)
 */

/** A query option is malformed or does not fit the entity; the message says which and why. */
export class ODataError extends Error {
  /**
   * @param {string} message  prefixed with `option: ` unless it starts with the option already
   * @param {string} [option]  "$filter", "$orderby", "$select", "$top", "$expand", "$skiptoken"
   *   or the unknown option's name
   * @param {string | null} [field]  the field involved, when there is one
   */
  constructor(message, option = '', field = null) {
    if (option && !message.startsWith(option)) message = `${option}: ${message}`;
    super(message);
    this.name = 'ODataError';
    this.option = option;
    this.field = field;
  }
}

// --- small helpers ---------------------------------------------------------------------------

/** @param {string} text */
function pyStrip(text) {
  return text.replace(STRIP_RE, '');
}

/** @param {string} text  Python's `text.split()`: on whitespace runs, no empty items. */
function pySplit(text) {
  return text.split(SPLIT_RE).filter((part) => part !== '');
}

/** @param {unknown} value */
function isNull(value) {
  return value === null || value === undefined;
}

/**
 * Compare two strings by Unicode code point: -1, 0 or 1.
 *
 * JavaScript's `<` compares UTF-16 code units, which puts U+E000–U+FFFF after every astral
 * character (their surrogates are 0xD800–0xDFFF); this corrects exactly that case.
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
export function compareCodePoints(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Move surrogates above U+E000–U+FFFF (ICU's "code point order" fix-up).
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

const HIGH_UNIT_RE = /[\ud800-\uffff]/;

/**
 * A string whose UTF-16 order (`<`) is the code-point order of `text`: units from U+D800 up are
 * moved so that surrogates sort above U+E000–U+FFFF. Strings below U+D800 come back unchanged.
 * Sort keys use it, so sorting compares natively instead of unit by unit.
 * @param {string} text
 * @returns {string}
 */
export function codePointKey(text) {
  if (!HIGH_UNIT_RE.test(text)) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out += c < 0xd800 ? text[i] : String.fromCharCode(c >= 0xe000 ? c - 0x800 : c + 0x2000);
  }
  return out;
}

/** @type {WeakMap<EntityMeta, Map<string, AttributeMeta>>} */
const attributeMaps = new WeakMap();

/**
 * @param {EntityMeta} entity
 * @param {string} name
 * @returns {AttributeMeta | undefined}
 */
function attribute(entity, name) {
  let map = attributeMaps.get(entity);
  if (!map) {
    map = new Map((entity.attributes || []).map((a) => [a.logical_name, a]));
    attributeMaps.set(entity, map);
  }
  return map.get(name);
}

/** @param {AttributeMeta} attr */
function isPolymorphic(attr) {
  return attr.type === 'lookup' && (attr.targets || []).length > 1;
}

/**
 * @param {EntityCatalog | undefined} entities
 * @param {string} name
 * @returns {EntityMeta | undefined}
 */
function catalogEntity(entities, name) {
  if (!entities) return undefined;
  if (Array.isArray(entities)) return entities.find((e) => e.logical_name === name);
  return Object.prototype.hasOwnProperty.call(entities, name) ? entities[name] : undefined;
}

/**
 * The record key that holds a column: `_<name>_value` for lookups, the name otherwise.
 * @param {string} column
 * @param {string} type
 */
function recordKey(column, type) {
  return type === 'lookup' ? `_${column}_value` : column;
}

// --- fields ----------------------------------------------------------------------------------

/**
 * The [column name, attribute type] behind a field name used in a query: attribute names,
 * `_<lookup>_value` and the system fields; anything else is an ODataError.
 * @param {string} name
 * @param {EntityMeta} entity
 * @param {string} [option]
 * @returns {[string, string]}
 */
export function resolveField(name, entity, option = '') {
  if (name.startsWith('_') && name.endsWith('_value') && name.length > '__value'.length) {
    const inner = name.slice(1, -'_value'.length);
    const attr = attribute(entity, inner);
    const type = attr ? attr.type : SYSTEM_TYPES.get(inner);
    if (type === 'lookup') return [inner, 'lookup'];
    if (type !== undefined) {
      throw new ODataError(
        `'${name}' is not a field of ${entity.logical_name}: '${inner}' is not a lookup`,
        option,
        name,
      );
    }
    throw new ODataError(`'${name}' is not a field of ${entity.logical_name}`, option, name);
  }
  const attr = attribute(entity, name);
  if (attr) return [name, attr.type];
  const system = SYSTEM_TYPES.get(name);
  if (system !== undefined) return [name, system];
  throw new ODataError(`'${name}' is not a field of ${entity.logical_name}`, option, name);
}

// --- $filter: tokens -------------------------------------------------------------------------

/**
 * @typedef {object} Token
 * @property {string} kind  ( ) , name string number guid date datetime end
 * @property {any} value
 * @property {string} text
 * @property {number} pos  1-based position in code points, like the server's
 */

/** @param {Token} tok */
function describe(tok) {
  return tok.kind === 'end' ? 'the end of the expression' : `'${tok.text}' at position ${tok.pos}`;
}

/** @param {Token} tok */
function keywordHint(tok) {
  if (tok.kind === 'name' && ['and', 'or'].includes(tok.value.toLowerCase())) return ' (keywords are lower-case)';
  return '';
}

/** @param {number} n @param {number} width */
function pad(n, width) {
  return String(n).padStart(width, '0');
}

/** @param {number} year @param {number} month */
function daysInMonth(year, month) {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** @param {number} year @param {number} month @param {number} day */
function validDate(year, month, day) {
  return year >= 1 && year <= 9999 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

/**
 * The key of a UTC instant: "YYYY-MM-DDTHH:MM:SS.ffffff", which orders like the instant.
 * `offsetMinutes` is the zone's offset (local = UTC + offset). Null when out of range.
 * @param {number[]} parts  year, month, day, hour, minute, second
 * @param {string} fraction  up to 6 digits
 * @param {number} offsetMinutes
 * @returns {string | null}
 */
function instantKey(parts, fraction, offsetMinutes) {
  const [year, month, day, hour, minute, second] = parts;
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute - offsetMinutes, second, 0);
  const y = d.getUTCFullYear();
  if (Number.isNaN(y) || y < 1 || y > 9999) return null;
  return (
    `${pad(y, 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.` +
    fraction.slice(0, 6).padEnd(6, '0')
  );
}

/**
 * A `$filter` datetime literal as its UTC key, as the server's `_datetime_literal` checks it.
 * @param {RegExpExecArray} m
 * @param {number} pos
 */
function datetimeLiteral(m, pos) {
  const [text, year, month, day, hour, minute, second, fraction, zone] = m;
  const nums = [year, month, day, hour, minute, second || '0'].map(Number);
  let offset = 0;
  let ok = validDate(nums[0], nums[1], nums[2]) && nums[3] <= 23 && nums[4] <= 59 && nums[5] <= 59;
  if (zone !== 'Z') {
    const hours = Number(zone.slice(1, 3));
    const minutes = Number(zone.slice(4, 6));
    if (hours > 23 || minutes > 59) ok = false;
    offset = (zone[0] === '+' ? 1 : -1) * (hours * 60 + minutes);
  }
  const key = ok ? instantKey(nums, fraction || '', offset) : null;
  if (key === null) throw new ODataError(`${text} at position ${pos} is not a valid date-time`, '$filter');
  return key;
}

/**
 * @param {RegExpExecArray} m
 * @param {number} pos
 */
function dateLiteral(m, pos) {
  const [text, year, month, day] = m;
  if (!validDate(Number(year), Number(month), Number(day))) {
    throw new ODataError(`${text} at position ${pos} is not a valid date`, '$filter');
  }
  return text;
}

/**
 * @param {RegExp} re  a sticky pattern
 * @param {string} text
 * @param {number} i
 */
function matchAt(re, text, i) {
  re.lastIndex = i;
  return re.exec(text);
}

/**
 * Split a `$filter` into tokens, exactly like the server's `_tokenize`.
 * @param {string} text
 * @returns {Token[]}
 */
function tokenize(text) {
  /** @type {Token[]} */
  const tokens = [];
  const n = text.length;
  // Positions count code points, like Python's string indices.
  let cpBase = 0;
  let unitBase = 0;
  /** @param {number} i */
  const position = (i) => {
    for (; unitBase < i; unitBase++) {
      const c = text.charCodeAt(unitBase);
      if (!(c >= 0xdc00 && c <= 0xdfff && unitBase > 0 && isLead(text.charCodeAt(unitBase - 1)))) cpBase++;
    }
    return cpBase + 1;
  };
  let i = 0;
  while (i < n) {
    const ch = text[i];
    const pos = position(i);
    let m = matchAt(SPACE_RE, text, i);
    if (m) {
      i += m[0].length;
      continue;
    }
    if (ch === '(' || ch === ')' || ch === ',') {
      tokens.push({ kind: ch, value: ch, text: ch, pos });
      i += 1;
      continue;
    }
    if (ch === "'") {
      let j = i + 1;
      const parts = [];
      for (;;) {
        const k = text.indexOf("'", j);
        if (k < 0) throw new ODataError(`unterminated string starting at position ${pos}`, '$filter');
        parts.push(text.slice(j, k));
        if (text.startsWith("''", k)) {
          parts.push("'");
          j = k + 2;
          continue;
        }
        const start = i;
        i = k + 1;
        const value = parts.join('');
        if (value.includes('\x00')) {
          throw new ODataError(`the string at position ${pos} contains a NUL character`, '$filter');
        }
        tokens.push({ kind: 'string', value, text: text.slice(start, i), pos });
        break;
      }
      continue;
    }
    if (text.startsWith(USER_PREFIX, i)) {
      m = matchAt(USERCALL_RE, text, i);
      if (!m) {
        throw new ODataError(
          `malformed function at position ${pos}: write ${USER_PREFIX}EqualUserId(PropertyName='ownerid')`,
          '$filter',
        );
      }
      if (!USER_FUNCTIONS.includes(m[1])) {
        throw new ODataError(`unknown function '${m[1]}' at position ${pos}; supported: ${USER_FUNCTIONS.join(', ')}`, '$filter');
      }
      tokens.push({ kind: 'usercall', value: [m[1], m[2]], text: m[0], pos });
      i += m[0].length;
      continue;
    }
    m = matchAt(DATETIME_RE, text, i);
    if (m) {
      tokens.push({ kind: 'datetime', value: datetimeLiteral(m, pos), text: m[0], pos });
      i += m[0].length;
      continue;
    }
    m = matchAt(DATE_RE, text, i);
    if (m) {
      tokens.push({ kind: 'date', value: dateLiteral(m, pos), text: m[0], pos });
      i += m[0].length;
      continue;
    }
    m = matchAt(GUID_RE, text, i);
    if (m) {
      tokens.push({ kind: 'guid', value: m[0].toLowerCase(), text: m[0], pos });
      i += m[0].length;
      continue;
    }
    m = matchAt(NUMBER_RE, text, i);
    if (m) {
      tokens.push({ kind: 'number', value: Number(m[0]), text: m[0], pos });
      i += m[0].length;
      continue;
    }
    m = matchAt(NAME_RE, text, i);
    const end = m ? i + m[0].length : i;
    if (m && !(end < n && '.-:'.includes(text[end]))) {
      tokens.push({ kind: 'name', value: m[0], text: m[0], pos });
      i = end;
      continue;
    }
    const bad = matchAt(MALFORMED_RE, text, i);
    const char = String.fromCodePoint(/** @type {number} */ (text.codePointAt(i)));
    const word = bad ? bad[0] : char;
    if (DIGIT_RE.test(char) || char === '-' || m !== null) {
      throw new ODataError(`malformed value '${word}' at position ${pos}`, '$filter');
    }
    throw new ODataError(`unexpected character '${char}' at position ${pos}`, '$filter');
  }
  tokens.push({ kind: 'end', value: null, text: '', pos: position(n) });
  return tokens;
}

/** @param {number} c */
function isLead(c) {
  return c >= 0xd800 && c <= 0xdbff;
}

// --- $filter: parser -------------------------------------------------------------------------

class Parser {
  /** @param {string} text */
  constructor(text) {
    this.tokens = tokenize(text);
    this.i = 0;
    this.depth = 0;
    this.terms = 0;
  }

  peek(offset = 0) {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)];
  }

  take() {
    const tok = this.peek();
    this.i += 1;
    return tok;
  }

  /** @param {string} word */
  isWord(word) {
    const tok = this.peek();
    return tok.kind === 'name' && tok.value === word;
  }

  /** @param {string} message */
  fail(message) {
    return new ODataError(message, '$filter');
  }

  /** @returns {FilterNode} */
  parse() {
    if (this.peek().kind === 'end') throw this.fail('the expression is empty');
    const node = this.orExpr();
    const tok = this.peek();
    if (tok.kind !== 'end') {
      if (tok.kind === ')') {
        throw this.fail(`unbalanced parentheses: ')' at position ${tok.pos} has no matching '('`);
      }
      throw this.fail(`expected 'and', 'or' or the end of the expression, found ${describe(tok)}${keywordHint(tok)}`);
    }
    return node;
  }

  enter() {
    this.depth += 1;
    if (this.depth > MAX_DEPTH) throw this.fail(`the expression is nested too deeply (more than ${MAX_DEPTH} levels)`);
  }

  /** @returns {FilterNode} */
  orExpr() {
    const items = [this.andExpr()];
    while (this.isWord('or')) {
      this.take();
      items.push(this.andExpr());
    }
    return items.length === 1 ? items[0] : { type: 'or', items };
  }

  /** @returns {FilterNode} */
  andExpr() {
    const items = [this.unary()];
    while (this.isWord('and')) {
      this.take();
      items.push(this.unary());
    }
    return items.length === 1 ? items[0] : { type: 'and', items };
  }

  /** @returns {FilterNode} */
  unary() {
    const tok = this.peek();
    if (tok.kind === 'name' && tok.value === 'not') {
      this.take();
      const nxt = this.peek();
      if (nxt.kind === 'name' && nxt.value !== 'not' && this.peek(1).kind !== '(') {
        throw this.fail(
          `'not' at position ${tok.pos} applies to a parenthesised expression: ` +
            `write not (${nxt.text} ...), not 'not ${nxt.text} ...'`,
        );
      }
      this.enter();
      const item = this.unary();
      this.depth -= 1;
      return { type: 'not', item };
    }
    if (tok.kind === '(') {
      this.take();
      this.enter();
      if (this.peek().kind === ')') throw this.fail(`empty parentheses at position ${tok.pos}`);
      const node = this.orExpr();
      this.depth -= 1;
      const close = this.take();
      if (close.kind !== ')') {
        if (close.kind === 'end') {
          throw this.fail(`unbalanced parentheses: '(' at position ${tok.pos} is never closed`);
        }
        throw this.fail(`expected 'and', 'or' or ')', found ${describe(close)}${keywordHint(close)}`);
      }
      return node;
    }
    if (tok.kind === 'usercall') {
      this.countTerm();
      this.take();
      return { type: 'user', name: tok.value[0], field: tok.value[1] };
    }
    if (tok.kind === 'name') {
      this.countTerm();
      if (this.peek(1).kind === '(') return this.call();
      return this.compare();
    }
    if (tok.kind === 'end') throw this.fail('the expression ends where a condition was expected');
    if (LITERAL_KINDS.has(tok.kind)) {
      throw this.fail(`expected a field name, found the value ${describe(tok)}; the field goes on the left`);
    }
    throw this.fail(`expected a condition, found ${describe(tok)}`);
  }

  countTerm() {
    this.terms += 1;
    if (this.terms > MAX_TERMS) throw this.fail(`too many conditions (at most ${MAX_TERMS})`);
  }

  /** @returns {string} */
  field() {
    const tok = this.take();
    if (tok.kind !== 'name') {
      if (LITERAL_KINDS.has(tok.kind)) {
        throw this.fail(`expected a field name, found the value ${describe(tok)}; the field goes on the left`);
      }
      throw this.fail(`expected a field name, found ${describe(tok)}`);
    }
    if (RESERVED.has(tok.value)) throw this.fail(`expected a field name, found the keyword ${describe(tok)}`);
    return tok.value;
  }

  /**
   * @param {string} after
   * @returns {Literal}
   */
  literal(after) {
    const tok = this.take();
    if (LITERAL_KINDS.has(tok.kind)) {
      return { kind: /** @type {Literal['kind']} */ (tok.kind), value: tok.value, text: tok.text };
    }
    const keyword = tok.kind === 'name' ? KEYWORD_LITERALS.get(tok.value) : undefined;
    if (keyword) return { kind: /** @type {Literal['kind']} */ (keyword.kind), value: keyword.value, text: tok.text };
    if (tok.kind === 'name') {
      const hint = KEYWORD_LITERALS.has(tok.value.toLowerCase())
        ? ' (true, false and null are lower-case)'
        : '; comparing two fields is not supported and strings need quotes';
      throw this.fail(`expected a value after ${after}, found ${describe(tok)}${hint}`);
    }
    throw this.fail(`expected a value after ${after}, found ${describe(tok)}`);
  }

  /** @returns {FilterNode} */
  compare() {
    const fieldTok = this.peek();
    const name = this.field();
    const op = this.take();
    if (op.kind === 'name' && COMPARISONS.has(op.value)) {
      return { type: 'compare', field: name, op: op.value, value: this.literal(`'${op.value}'`) };
    }
    if (op.kind === 'name' && COMPARISONS.has(op.value.toLowerCase())) {
      throw this.fail(`unknown operator '${op.value}' at position ${op.pos} (operators are lower-case)`);
    }
    if (op.kind === 'name') {
      throw this.fail(`unknown operator '${op.value}' at position ${op.pos}; expected one of eq, ne, gt, ge, lt, le`);
    }
    throw this.fail(`expected an operator (eq, ne, gt, ge, lt, le) after '${fieldTok.text}', found ${describe(op)}`);
  }

  /** @returns {FilterNode} */
  call() {
    const nameTok = this.take();
    if (!FUNCTIONS.has(nameTok.value)) {
      const hint = FUNCTIONS.has(nameTok.value.toLowerCase()) ? ' (function names are lower-case)' : '';
      throw this.fail(
        `unknown function '${nameTok.value}' at position ${nameTok.pos}${hint}; ` +
          'supported: contains, startswith, endswith',
      );
    }
    this.take(); // "("
    const name = this.field();
    const comma = this.take();
    if (comma.kind !== ',') {
      throw this.fail(`${nameTok.value}() takes a field and a string: expected ',', found ${describe(comma)}`);
    }
    const value = this.literal(`'${nameTok.value}(${name},'`);
    const close = this.take();
    if (close.kind !== ')') {
      throw this.fail(`${nameTok.value}() takes exactly a field and a string: expected ')', found ${describe(close)}`);
    }
    return { type: 'call', name: nameTok.value, field: name, value };
  }
}

/**
 * Parse a `$filter` expression (syntax only; `compileFilter` checks fields and types).
 * @param {string} text
 * @returns {FilterNode}
 */
export function parseFilter(text) {
  if (typeof text !== 'string') throw new ODataError('the option must be text', '$filter');
  return new Parser(text).parse();
}

// --- $filter: evaluation ---------------------------------------------------------------------

/**
 * @param {string} field
 * @param {string} type
 * @param {Literal} lit
 */
function mismatch(field, type, lit) {
  return new ODataError(
    `'${field}' is ${type}; ${lit.text} is not ${EXPECTED.get(type) ?? 'a suitable value'}`,
    '$filter',
    field,
  );
}

/**
 * @param {string} op
 * @param {number} c  a comparison result (-1, 0, 1)
 */
function holds(op, c) {
  switch (op) {
    case 'eq':
      return c === 0;
    case 'ne':
      return c !== 0;
    case 'gt':
      return c > 0;
    case 'ge':
      return c >= 0;
    case 'lt':
      return c < 0;
    default:
      return c <= 0;
  }
}

/**
 * @template {number | string} T
 * @param {T} a
 * @param {T} b
 */
function compareNative(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The key a record's datetime value orders by ("YYYY-MM-DDTHH:MM:SS.ffffff", UTC).
 * @param {unknown} value
 * @returns {string}
 */
function datetimeKey(value) {
  const text = String(value);
  if (WIRE_DATETIME_RE.test(text)) return `${text.slice(0, 19)}.000000`; // the wire's own form: UTC already
  const m = RECORD_DATETIME_RE.exec(text);
  if (m) {
    const [, year, month, day, hour, minute, second, fraction, zone] = m;
    let offset = 0;
    if (zone && zone !== 'Z') {
      const digits = zone.replace(':', '');
      offset = (zone[0] === '+' ? 1 : -1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
    }
    const parts = [year, month, day, hour || '0', minute || '0', second || '0'].map(Number);
    const key = instantKey(parts, fraction || '', offset);
    if (key !== null) return key;
  }
  const ms = Date.parse(text);
  if (!Number.isNaN(ms)) return `${new Date(ms).toISOString().slice(0, 19)}.${pad((ms % 1000 + 1000) % 1000, 3)}000`;
  return text;
}

/**
 * The key a record's date value orders by ("YYYY-MM-DD").
 * @param {unknown} value
 */
function dateKey(value) {
  return String(value).slice(0, 10);
}

/** @param {unknown} value */
function lower(value) {
  return String(value).toLowerCase();
}

/**
 * @param {{field: string, op: string, value: Literal}} node
 * @param {EntityMeta} entity
 * @returns {(record: Record<string, any>) => boolean}
 */
function compileCompare(node, entity) {
  const [column, type] = resolveField(node.field, entity, '$filter');
  const key = recordKey(column, type);
  const { value: lit, op } = node;
  if (lit.kind === 'null') {
    if (op !== 'eq' && op !== 'ne') {
      throw new ODataError(`null can only be compared with eq or ne, not '${op}'`, '$filter', node.field);
    }
    return op === 'eq' ? (r) => isNull(r[key]) : (r) => !isNull(r[key]);
  }
  /** @type {(value: any) => boolean} */
  let test;
  if (STRING_TYPES.has(type)) {
    if (lit.kind !== 'string') throw mismatch(node.field, type, lit);
    const v = lit.value.toLowerCase();
    if (op === 'eq') test = (x) => lower(x) === v;
    else if (op === 'ne') test = (x) => lower(x) !== v;
    else test = (x) => holds(op, compareCodePoints(lower(x), v));
  } else if (NUMBER_TYPES.has(type)) {
    if (lit.kind !== 'number') throw mismatch(node.field, type, lit);
    const v = lit.value;
    test = (x) => holds(op, compareNative(Number(x), v));
  } else if (type === 'boolean') {
    if (lit.kind !== 'boolean') throw mismatch(node.field, type, lit);
    if (op !== 'eq' && op !== 'ne') {
      throw new ODataError(`'${node.field}' is boolean: use eq or ne, not '${op}'`, '$filter', node.field);
    }
    const v = lit.value;
    test = op === 'eq' ? (x) => Boolean(x) === v : (x) => Boolean(x) !== v;
  } else if (type === 'date') {
    if (lit.kind !== 'date') throw mismatch(node.field, type, lit);
    const v = lit.value;
    test = (x) => holds(op, compareCodePoints(dateKey(x), v));
  } else if (type === 'datetime') {
    let v;
    if (lit.kind === 'date') v = `${lit.value}T00:00:00.000000`;
    else if (lit.kind === 'datetime') v = lit.value;
    else throw mismatch(node.field, type, lit);
    test = (x) => holds(op, compareCodePoints(datetimeKey(x), v));
  } else if (ID_TYPES.has(type)) {
    let v;
    if (lit.kind === 'guid') v = lit.value;
    else if (lit.kind === 'string' && GUID_FULL_RE.test(lit.value)) v = lit.value.toLowerCase();
    else throw mismatch(node.field, type, lit);
    if (op !== 'eq' && op !== 'ne') {
      throw new ODataError(`'${node.field}' is ${type}: use eq or ne, not '${op}'`, '$filter', node.field);
    }
    test = op === 'eq' ? (x) => lower(x) === v : (x) => lower(x) !== v;
  } else {
    throw new ODataError(`'${node.field}' has type ${type}, which cannot be filtered`, '$filter', node.field);
  }
  return (r) => {
    const x = r[key];
    return !isNull(x) && test(x);
  };
}

/**
 * @param {{name: string, field: string, value: Literal}} node
 * @param {EntityMeta} entity
 * @returns {(record: Record<string, any>) => boolean}
 */
function compileCall(node, entity) {
  const [column, type] = resolveField(node.field, entity, '$filter');
  if (!STRING_TYPES.has(type)) {
    throw new ODataError(`${node.name}() needs a string field; '${node.field}' is ${type}`, '$filter', node.field);
  }
  if (node.value.kind !== 'string') {
    throw new ODataError(
      `${node.name}() needs a quoted string; ${node.value.text} is not a string`,
      '$filter',
      node.field,
    );
  }
  const key = recordKey(column, type);
  const v = node.value.value.toLowerCase();
  /** @type {(x: string) => boolean} */
  const test =
    node.name === 'contains'
      ? (x) => x.includes(v)
      : node.name === 'startswith'
        ? (x) => x.startsWith(v)
        : (x) => x.endsWith(v);
  return (r) => {
    const x = r[key];
    return !isNull(x) && test(lower(x));
  };
}

/**
 * `EqualUserId` / `NotEqualUserId` on a lookup: the signed-in user's id, or another one.
 * @param {{name: string, field: string}} node
 * @param {EntityMeta} entity
 * @param {string | null | undefined} userId
 * @returns {(record: Record<string, any>) => boolean}
 */
function compileUser(node, entity, userId) {
  const [column, type] = resolveField(node.field, entity, '$filter');
  if (type !== 'lookup') throw new ODataError(`${node.name}() needs a lookup; '${node.field}' is ${type}`, '$filter', node.field);
  if (!userId) throw new ODataError(`${node.name}() needs a signed-in user`, '$filter', node.field);
  const key = recordKey(column, type);
  const me = userId.toLowerCase();
  const equal = node.name === 'EqualUserId';
  return (r) => {
    const x = r[key];
    return !isNull(x) && (lower(x) === me) === equal;
  };
}

/**
 * A predicate for a parsed `$filter` on `entity`: true or false for every record, never
 * "unknown". Checks every field against the entity and every literal against the field's type
 * (ODataError otherwise), as the server does before it runs the query.
 * @param {FilterNode} node
 * @param {EntityMeta} entity
 * @param {string | null} [userId]  the signed-in user (EqualUserId / NotEqualUserId)
 * @returns {(record: Record<string, any>) => boolean}
 */
export function compileFilter(node, entity, userId = null) {
  switch (node.type) {
    case 'compare':
      return compileCompare(node, entity);
    case 'call':
      return compileCall(node, entity);
    case 'user':
      return compileUser(node, entity, userId);
    case 'and': {
      const parts = node.items.map((n) => compileFilter(n, entity, userId));
      return (r) => parts.every((p) => p(r));
    }
    case 'or': {
      const parts = node.items.map((n) => compileFilter(n, entity, userId));
      return (r) => parts.some((p) => p(r));
    }
    case 'not': {
      const inner = compileFilter(node.item, entity, userId);
      return (r) => !inner(r);
    }
    default:
      throw new ODataError(`not a filter expression: ${JSON.stringify(node)}`, '$filter');
  }
}

// --- $orderby --------------------------------------------------------------------------------

/**
 * Parse `$orderby` into [{field, descending}]; blank text means no explicit order.
 * @param {string} text
 * @param {EntityMeta} entity
 * @returns {OrderItem[]}
 */
export function parseOrderby(text, entity) {
  if (typeof text !== 'string') throw new ODataError('the option must be text', '$orderby');
  if (!pyStrip(text)) return [];
  /** @type {OrderItem[]} */
  const order = [];
  text.split(',').forEach((item, index) => {
    const parts = pySplit(item);
    if (parts.length === 0) {
      throw new ODataError(`item ${index + 1} is empty (two commas in a row or a trailing comma)`, '$orderby');
    }
    if (parts.length > 2) throw new ODataError(`'${pyStrip(item)}' is not 'field asc' or 'field desc'`, '$orderby');
    const direction = parts.length === 2 ? parts[1] : 'asc';
    if (direction !== 'asc' && direction !== 'desc') {
      const hint = ['asc', 'desc'].includes(direction.toLowerCase()) ? ' (lower-case)' : '';
      throw new ODataError(`unknown direction '${direction}' for '${parts[0]}': use asc or desc${hint}`, '$orderby');
    }
    const [column] = resolveField(parts[0], entity, '$orderby');
    order.push({ field: column, descending: direction === 'desc' });
  });
  return order;
}

/**
 * The sort key of a non-null value of `type`, and how two such keys compare.
 * @param {string} type
 * @returns {[(value: any) => any, (a: any, b: any) => number]}
 */
function sortKeyOf(type) {
  // Every key is a number or a string whose `<` is code-point order (see codePointKey).
  if (STRING_TYPES.has(type)) return [(v) => codePointKey(lower(v)), compareNative];
  if (ID_TYPES.has(type)) return [(v) => codePointKey(String(v)), compareNative]; // lower-case ids, as stored
  if (NUMBER_TYPES.has(type)) return [Number, compareNative];
  if (type === 'boolean') return [(v) => (v ? 1 : 0), compareNative];
  if (type === 'date') return [dateKey, compareNative];
  if (type === 'datetime') return [datetimeKey, compareNative];
  return [(v) => codePointKey(String(v)), compareNative];
}

/**
 * @typedef {object} SortColumn
 * @property {string} key  the record key
 * @property {boolean} descending
 * @property {(value: any) => any} keyOf
 * @property {(a: any, b: any) => number} compare
 */

/**
 * The sort columns of an ordering, with the primary id ascending appended as the tie-breaker.
 * @param {OrderItem[] | string} orderby
 * @param {EntityMeta} entity
 * @returns {SortColumn[]}
 */
function sortColumns(orderby, entity) {
  const order = typeof orderby === 'string' ? parseOrderby(orderby, entity) : orderby || [];
  const items = order.some((o) => o.field === entity.primary_id)
    ? order
    : [...order, { field: entity.primary_id, descending: false }];
  return items.map(({ field, descending }) => {
    const [column, type] = resolveField(field, entity, '$orderby');
    const [keyOf, compare] = sortKeyOf(type);
    return { key: recordKey(column, type), descending, keyOf, compare };
  });
}

/**
 * @param {SortColumn[]} columns
 * @param {any[]} ka  keys of record a (null for a null value)
 * @param {any[]} kb
 */
function compareKeys(columns, ka, kb) {
  for (let i = 0; i < columns.length; i++) {
    const a = ka[i];
    const b = kb[i];
    // Nulls are the smallest values: first ascending, last descending.
    let c;
    if (a === null) c = b === null ? 0 : -1;
    else if (b === null) c = 1;
    else c = columns[i].compare(a, b);
    if (c !== 0) return columns[i].descending ? -c : c;
  }
  return 0;
}

/**
 * @param {SortColumn[]} columns
 * @param {Record<string, any>} record
 */
function keysOf(columns, record) {
  return columns.map((col) => {
    const value = record[col.key];
    return isNull(value) ? null : col.keyOf(value);
  });
}

/**
 * A comparator for `Array.prototype.sort` implementing a parsed `$orderby` (or its text):
 * strings by lower-cased code point, lookups and ids by their id, numbers numerically, dates
 * and datetimes chronologically, nulls first ascending and last descending, and the primary
 * id ascending as the final tie-breaker, so the order is total.
 * @param {OrderItem[] | string} orderby
 * @param {EntityMeta} entity
 * @returns {(a: Record<string, any>, b: Record<string, any>) => number}
 */
export function compareRecords(orderby, entity) {
  return comparator(sortColumns(orderby, entity));
}

/** @param {SortColumn[]} columns @returns {(a: Record<string, any>, b: Record<string, any>) => number} */
function comparator(columns) {
  return (a, b) => compareKeys(columns, keysOf(columns, a), keysOf(columns, b));
}

// --- $select, $top, $expand, $skiptoken ------------------------------------------------------

/**
 * The column names a `$select` asks for (lookups as `<attr>` or `_<attr>_value`).
 * @param {string} text
 * @param {EntityMeta} entity
 * @param {string} [option]
 * @returns {string[]}
 */
export function parseSelect(text, entity, option = '$select') {
  if (typeof text !== 'string' || !pyStrip(text)) throw new ODataError('the list of fields is empty', option);
  /** @type {string[]} */
  const columns = [];
  text.split(',').forEach((item, index) => {
    const name = pyStrip(item);
    if (!name) throw new ODataError(`item ${index + 1} is empty (two commas in a row or a trailing comma)`, option);
    const [column] = resolveField(name, entity, option);
    if (!columns.includes(column)) columns.push(column);
  });
  return columns;
}

/**
 * The `$top` cap: a non-negative integer.
 * @param {string} text
 * @returns {number}
 */
export function parseTop(text) {
  const value = typeof text === 'string' ? pyStrip(text) : '';
  if (!/^[0-9]+$/.test(value)) {
    const shown = typeof text === 'string' ? text : String(text);
    throw new ODataError(`'${shown}' is not a non-negative integer`, '$top');
  }
  if (BigInt(value) > BigInt(MAX_TOP)) throw new ODataError(`${value} is too large (at most ${MAX_TOP})`, '$top');
  return Number(value);
}

/**
 * Split on commas outside parentheses.
 * @param {string} text
 */
function splitTopLevel(text) {
  const items = [];
  let depth = 0;
  let start = 0;
  let cp = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (!(ch >= '\udc00' && ch <= '\udfff' && i > 0 && isLead(text.charCodeAt(i - 1)))) cp++;
    if (ch === '(') depth += 1;
    else if (ch === ')') {
      depth -= 1;
      if (depth < 0) {
        throw new ODataError(`unbalanced parentheses: ')' at position ${cp} has no matching '('`, '$expand');
      }
    } else if (ch === ',' && depth === 0) {
      items.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth) throw new ODataError("unbalanced parentheses: a '(' is never closed", '$expand');
  items.push(text.slice(start));
  return items;
}

/**
 * The lookup attribute and target entity behind an `$expand` navigation name.
 * @param {string} nav
 * @param {EntityMeta} entity
 * @returns {[string, string]}
 */
function expandTarget(nav, entity) {
  const attr = attribute(entity, nav);
  if (attr) {
    if (attr.type !== 'lookup') {
      throw new ODataError(`'${nav}' is not a lookup of ${entity.logical_name}`, '$expand', nav);
    }
    const targets = attr.targets || [];
    if (isPolymorphic(attr)) {
      const options = targets.map((t) => `${nav}_${t}`).join(' or ');
      throw new ODataError(`'${nav}' can point at ${targets.join(', ')}: expand ${options}`, '$expand', nav);
    }
    return [nav, targets[0]];
  }
  for (const a of entity.attributes || []) {
    if (isPolymorphic(a) && nav.startsWith(`${a.logical_name}_`)) {
      const targets = a.targets || [];
      const target = nav.slice(a.logical_name.length + 1);
      if (targets.includes(target)) return [a.logical_name, target];
      throw new ODataError(
        `'${target}' is not a target of ${a.logical_name} (targets: ${targets.join(', ')})`,
        '$expand',
        nav,
      );
    }
  }
  throw new ODataError(`'${nav}' is not a lookup of ${entity.logical_name}`, '$expand', nav);
}

/**
 * Parse `$expand` (lookups with a required nested `$select`) and check it against the entities.
 * @param {string} text
 * @param {EntityMeta} entity
 * @param {EntityCatalog} [entities]  the organisation's entities (the targets must be there)
 * @returns {ExpandItem[]}
 */
export function parseExpand(text, entity, entities) {
  if (typeof text !== 'string' || !pyStrip(text)) throw new ODataError('the list of lookups is empty', '$expand');
  /** @type {ExpandItem[]} */
  const expands = [];
  splitTopLevel(text).forEach((item, index) => {
    if (!pyStrip(item)) {
      throw new ODataError(`item ${index + 1} is empty (two commas in a row or a trailing comma)`, '$expand');
    }
    const m = EXPAND_ITEM_RE.exec(item);
    if (!m) throw new ODataError(`'${pyStrip(item)}' is not 'lookup($select=field,...)'`, '$expand');
    const nav = m[1];
    const inner = m[2];
    const [attributeName, targetName] = expandTarget(nav, entity);
    if (inner === undefined) {
      throw new ODataError(`'${nav}' needs a nested $select, e.g. ${nav}($select=...)`, '$expand', nav);
    }
    const target = catalogEntity(entities, targetName);
    if (!target) throw new ODataError(`the target entity '${targetName}' of '${nav}' is unknown`, '$expand', nav);
    /** @type {string[] | null} */
    let select = null;
    for (const part of inner.split(';')) {
      const eq = part.indexOf('=');
      const key = pyStrip(eq < 0 ? part : part.slice(0, eq));
      if (key !== '$select' || eq < 0) {
        const shown = key || pyStrip(part) || 'nothing';
        throw new ODataError(`only $select is supported inside ${nav}(...), found '${shown}'`, '$expand', nav);
      }
      if (select !== null) throw new ODataError(`${nav}(...) has $select twice`, '$expand', nav);
      try {
        select = parseSelect(part.slice(eq + 1), target, '');
      } catch (exc) {
        if (!(exc instanceof ODataError)) throw exc;
        throw new ODataError(`${nav}($select=...): ${exc.message}`, '$expand', exc.field);
      }
    }
    if (select === null) throw new ODataError(`'${nav}' needs a nested $select`, '$expand', nav);
    if (expands.some((e) => e.nav === nav)) throw new ODataError(`'${nav}' is expanded twice`, '$expand', nav);
    expands.push({ nav, attribute: attributeName, target: targetName, select });
  });
  return expands;
}

const SKIPTOKEN_ERROR = '$skiptoken is not a token this server issued.';

/**
 * An opaque token for the page that starts at `offset` (the server's `encode_skiptoken`).
 * @param {number} offset
 * @returns {string}
 */
export function encodeSkipToken(offset) {
  const json = `{"o": ${offset}}`; // json.dumps' spacing, so tokens are byte-for-byte the server's
  return btoa(json).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The offset a skip token stands for (the server's `decode_skiptoken`).
 * @param {string} token
 * @returns {number}
 */
export function decodeSkipToken(token) {
  let offset;
  let isFloat = false;
  try {
    // Like Python's lenient base64: characters outside the alphabet are skipped.
    const b64 = String(token).replace(/-/g, '+').replace(/_/g, '/').replace(/[^A-Za-z0-9+/=]/g, '');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    /** @type {any} */
    /**
     * Python's json keeps 5.0 a float (refused); JSON.parse makes it 5 unless it shows the source.
     * @param {string} key
     * @param {any} value
     * @param {{source?: string}} [context]
     */
    const reviver = (key, value, context) => {
      if (key === 'o' && typeof value === 'number' && /[.eE]/.test(context?.source ?? '')) isFloat = true;
      return value;
    };
    const parsed = JSON.parse(text, /** @type {any} */ (reviver));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !('o' in parsed)) throw new Error();
    offset = parsed.o;
  } catch {
    throw new ODataError(SKIPTOKEN_ERROR, '$skiptoken');
  }
  if (isFloat || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new ODataError(SKIPTOKEN_ERROR, '$skiptoken');
  }
  return offset;
}

/**
 * The option string of the page that starts at `nextSkip`: `options` with its `$skiptoken`
 * replaced (what the server's `@odata.nextLink` carries).
 * @param {string} options
 * @param {number} nextSkip
 * @returns {string}
 */
export function nextPageOptions(options, nextSkip) {
  const params = new URLSearchParams(options || '');
  params.delete('$skiptoken');
  params.set('$skiptoken', encodeSkipToken(nextSkip));
  return `?${params.toString()}`;
}

/**
 * The options of a query string, first occurrence of each key, in order of appearance.
 * @param {string | null | undefined} options
 * @returns {Map<string, string>}
 */
function readOptions(options) {
  if (options !== null && options !== undefined && typeof options !== 'string') {
    throw new TypeError('OData options must be a string such as "?$select=name&$top=5"');
  }
  /** @type {Map<string, string>} */
  const args = new Map();
  new URLSearchParams(options || '').forEach((value, key) => {
    if (!args.has(key)) args.set(key, value);
  });
  return args;
}

/**
 * Parse an option string as the server's Web API does (same checks, same order, same messages).
 * @param {string | null | undefined} options  e.g. "?$select=name&$filter=statecode eq 0&$top=5"
 * @param {EntityMeta} entity
 * @param {EntityCatalog} [entities]  the organisation's entities, needed for `$expand`
 * @param {{single?: boolean}} [how]  `single`: the options of one record (retrieveRecord), where
 *   only `$select` and `$expand` apply
 * @returns {QueryOptions}
 */
export function parseOptions(options, entity, entities, how = {}) {
  const args = readOptions(options);
  for (const key of args.keys()) {
    if (key.startsWith('$') && !SUPPORTED.has(key)) {
      const error = new ODataError(
        `The query option ${key} is not supported (use $select, $filter, $orderby, $top, $expand).`,
      );
      error.option = key;
      throw error;
    }
    if (how.single && ['$filter', '$orderby', '$top', '$skiptoken'].includes(key)) {
      throw new ODataError(`${key} applies to collections, not to a single record.`, key);
    }
  }
  /** @type {QueryOptions} */
  const opts = { select: null, filter: null, orderby: [], top: null, expand: [], skiptoken: 0 };
  const get = (/** @type {string} */ key) => args.get(key) ?? '';
  if (args.has('$select')) opts.select = parseSelect(get('$select'), entity);
  if (pyStrip(get('$filter'))) opts.filter = parseFilter(get('$filter'));
  if (pyStrip(get('$orderby'))) opts.orderby = parseOrderby(get('$orderby'), entity);
  if (args.has('$top')) opts.top = parseTop(get('$top'));
  if (pyStrip(get('$expand'))) opts.expand = parseExpand(get('$expand'), entity, entities);
  if (args.has('$skiptoken')) opts.skiptoken = decodeSkipToken(get('$skiptoken'));
  return opts;
}

// --- running a query -------------------------------------------------------------------------

/**
 * A record as the server serialises it under `$select`: the primary id, the selected
 * attributes (lookups as `_<attr>_value`, with their annotations) and the system fields.
 * Without `select`, a shallow copy of the whole record.
 * @param {Record<string, any>} record
 * @param {string[] | null} select
 * @param {EntityMeta} entity
 * @returns {Record<string, any>}
 */
export function projectRecord(record, select, entity) {
  if (select === null || select === undefined) return { ...record };
  const keep = new Set([entity.primary_id, ...ALWAYS_SELECTED]);
  /** @type {string[]} */
  const attributeKeys = [];
  for (const column of select) {
    const attr = attribute(entity, column);
    if (attr && column !== entity.primary_id) {
      const key = recordKey(column, attr.type);
      keep.add(key);
      attributeKeys.push(key);
    }
  }
  /** @type {Record<string, any>} */
  const out = {};
  for (const [key, value] of Object.entries(record)) {
    const at = key.indexOf('@');
    // Record-level annotations (`@Outpost.Access`) stay, as the server writes them whatever `$select` says.
    if (at === 0 || keep.has(at < 0 ? key : key.slice(0, at))) out[key] = value;
  }
  for (const key of attributeKeys) {
    // The server writes every selected attribute, null or not.
    if (!(key in out)) {
      out[key] = null;
      if (key.startsWith('_') && key.endsWith('_value')) out[`${key}${LOGICAL}`] = null;
    }
  }
  return out;
}

/**
 * An expanded record as the server nests it: without the record-level annotations.
 * @param {Record<string, any>} record
 */
function withoutRecordAnnotations(record) {
  for (const key of Object.keys(record)) if (key.startsWith('@')) delete record[key];
  return record;
}

/**
 * Run an option string over `records` of `entity` on the device, with the server's semantics:
 * filter, order (with the primary-id tie-breaker), page from `$skiptoken`, cap at `$top`,
 * project with `$select` and attach `$expand`ed lookups through `resolve`.
 *
 * `nextSkip` is the offset of the next page or null; `nextPageOptions(options, nextSkip)` is the
 * option string that fetches it.
 * @param {Record<string, any>[]} records  wire-format records (PROTOCOL.md §1)
 * @param {string | null | undefined} options
 * @param {EntityMeta} entity
 * @param {RunOptions} [run]
 * @returns {{value: Record<string, any>[], nextSkip: number | null}}
 */
export function runQuery(records, options, entity, run = {}) {
  const { maxPageSize = DEFAULT_PAGE_SIZE, entities, resolve, memo, userId = null } = run;
  if (!(maxPageSize === Infinity || (Number.isInteger(maxPageSize) && maxPageSize > 0))) {
    throw new RangeError(`maxPageSize must be a positive integer, not ${maxPageSize}`);
  }
  const opts = parseOptions(options, entity, entities);
  const predicate = opts.filter ? compileFilter(opts.filter, entity, userId) : null;
  const columns = sortColumns(opts.orderby, entity);
  if (opts.expand.length && typeof resolve !== 'function') {
    throw new TypeError('runQuery: $expand needs a resolve(entity, id) function');
  }

  const memoKey = memo ? JSON.stringify([opts.filter, opts.orderby, userId]) : '';
  let sorted = memo?.get(memoKey)?.sorted;
  if (!sorted) {
    const matching = predicate ? records.filter(predicate) : records.slice();
    // Decorate-sort-undecorate: each record's keys are computed once, not per comparison.
    const decorated = matching.map((record) => ({ record, keys: keysOf(columns, record) }));
    decorated.sort((a, b) => compareKeys(columns, a.keys, b.keys));
    sorted = decorated.map(({ record }) => record);
    memo?.set(memoKey, { sorted, matches: predicate, compare: comparator(columns) });
  }

  const skip = opts.skiptoken;
  let limit = maxPageSize;
  if (opts.top !== null) limit = Math.max(0, Math.min(maxPageSize, opts.top - skip));
  let page = sorted.slice(skip, skip + limit + 1);
  let more = page.length > limit;
  page = page.slice(0, limit);
  if (opts.top !== null && skip + page.length >= opts.top) more = false;

  const value = page.map((record) => {
    const out = projectRecord(record, opts.select, entity);
    for (const exp of opts.expand) {
      const idKey = `_${exp.attribute}_value`;
      const id = record[idKey];
      const attr = attribute(entity, exp.attribute);
      // A polymorphic lookup expands per target: only the rows that point at this one.
      const otherTarget = attr !== undefined && isPolymorphic(attr) && record[`${idKey}${LOGICAL}`] !== exp.target;
      const fits = !isNull(id) && id !== '' && !otherTarget;
      const found = fits && resolve ? resolve(exp.target, id) : null;
      const target = /** @type {EntityMeta} */ (catalogEntity(entities, exp.target));
      out[exp.nav] = found ? withoutRecordAnnotations(projectRecord(found, exp.select, target)) : null;
    }
    return out;
  });
  return { value, nextSkip: more ? skip + value.length : null };
}
