"""Rules as data: what a value must be and which state moves a write may make, with the
message for each refusal, declared once and interpreted the same way on both sides.

The declaration is the metadata (webapp/crm/metadata.py): an attribute's type, `required`,
`max_length`, bounds and options; the statecode options' `next` and `via`, the statuscode
options' `state`. `attribute_rules` turns one attribute into the list of rules published with
it in GET /api/metadata (each with its message), `state_rules` an entity's state messages.
This module interprets those published rules for the server; webapp/static/js/ruledata.js
interprets the same data on the phone, so both refuse the same value with the same words
(tests/cases/rules/*.json holds the cases both must pass). Nothing here names an entity.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webapp.crm.metadata import Attribute

Rule = dict[str, Any]

REQUIRED = "Missing data for required field."
NOT_NULL = "Field may not be null."
NO_NUL = "Must not contain NUL characters."
TYPE_MESSAGES = {
    "string": "Not a valid string.",
    "memo": "Not a valid string.",
    "integer": "Not a valid integer.",
    "decimal": "Not a valid number.",
    "money": "Not a valid number.",
    "boolean": "Not a valid boolean.",
    "datetime": "Not a valid datetime.",
    "date": "Not a valid date; use YYYY-MM-DD.",
    "optionset": "Not a valid integer.",
}
# The text a date or a datetime is accepted in (published as the type rule's `pattern`; the
# phone matches the same one): ISO 8601's extended form, a missing offset meaning UTC. ASCII
# digits only ([0-9], not \d, which matches other scripts' digits in Python).
FORMS = {
    "date": "^([0-9]{4})-([0-9]{2})-([0-9]{2})$",
    "datetime": "^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.][0-9]+)?)?)?"
    "(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$",
}


def parse_when(rule: Rule, value: Any) -> dt.datetime | None:
    """A date or datetime written in the type rule's `pattern` and real on the calendar, as
    naive UTC to the second (an offset applied), or None (ruledata.js `parseWhen` alike)."""
    m = re.fullmatch(rule["pattern"], value) if isinstance(value, str) else None
    if m is None:
        return None
    y, mo, d, h, mi, sec = [int(p) if p else 0 for p in (*m.groups()[:6], None, None, None)[:6]]
    try:
        at = dt.datetime(y, mo, d, h, mi, sec)
    except ValueError:
        return None
    offset = m.groups()[6] if len(m.groups()) > 6 else None
    if offset and offset != "Z":
        hours, minutes = int(offset[1:3]), int(offset[-2:]) if len(offset) > 3 else 0
        if hours > 23 or minutes > 59:
            return None
        at -= (1 if offset[0] == "+" else -1) * dt.timedelta(hours=hours, minutes=minutes)
    return at


# What a column holds when the declaration sets no bounds: a 32-bit INTEGER, NUMERIC(19,4) for
# money, NUMERIC(28,10) for decimals. Never a database error instead of a message.
COLUMN_BOUNDS: dict[str, tuple[int, int]] = {
    "integer": (-(2**31), 2**31 - 1),
    "money": (-(10**15) + 1, 10**15 - 1),
    "decimal": (-(10**18) + 1, 10**18 - 1),
}
STATE_MESSAGES = {
    "create": "{entity} cannot be created as {to}; it starts as {from}.{via}",
    "move": "{entity} cannot be moved from {from} to {to} this way.{via}",
    "via": " Use {via}.",
    "status_of": "{status} is not a status of state {state}.",
}


# What each numeric column keeps after the point (NUMERIC(19,4) money, NUMERIC(28,10) decimals),
# how a value with more places is rounded to it, and the places money is shown with. One
# declaration, published as each numeric attribute's `places` rule: the server and the phone
# round a written value, a derived product and a shown amount by it alike.
NUMBER_PLACES = {"money": 4, "decimal": 10, "integer": 0}
ROUNDING = "half_even"
MONEY_DISPLAY_PLACES = 2
ROUNDINGS = {"half_even": decimal.ROUND_HALF_EVEN, "half_up": decimal.ROUND_HALF_UP}
_EXACT = decimal.Context(prec=200)  # wide enough that no product or rounding loses a digit


def places_rule(type_: str) -> Rule:
    """The `places` rule of a numeric type: a coercion, not a refusal (it has no message)."""
    rule: Rule = {"check": "places", "places": NUMBER_PLACES[type_], "rounding": ROUNDING}
    if type_ == "money":
        rule["display_places"] = MONEY_DISPLAY_PLACES
    return rule


def round_to(value: Any, places: int, rounding: str) -> decimal.Decimal:
    """`value` (a Decimal, an int or a float read as its shortest decimal form) kept to
    `places` after the point, a tie going the declared way (ruledata.js `roundTo` alike)."""
    exact = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
    return exact.quantize(decimal.Decimal(1).scaleb(-places), rounding=ROUNDINGS[rounding], context=_EXACT)


def kept(rules: Sequence[Rule], value: Any) -> Any:
    """A parsed number as its column keeps it (the `places` rule), or `value` when it has none."""
    rule = next((r for r in rules if r["check"] == "places"), None)
    if rule is None or isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        return value
    if isinstance(value, int) and rule["places"] == 0:
        return value
    return round_to(value, rule["places"], rule["rounding"])


def format_money(value: Any, symbol: str, rule: Rule | None = None) -> str:
    """Money shown with its currency symbol, e.g. '-$1,234.50': `display_places` places, a
    tie rounded the declared way (ruledata.js `formatMoney` alike)."""
    rule = rule or places_rule("money")
    amount = round_to(value, rule["display_places"], rule["rounding"])
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.{rule['display_places']}f}"


def _number(x: float | int) -> int | float:
    """A bound as published: a whole number as an integer (1e15 reads as 1000000000000000)."""
    return int(x) if float(x).is_integer() else float(x)


def attribute_rules(attr: Attribute) -> list[Rule]:
    """The rules a value of `attr` must pass, in the order they are checked (the first that
    fails is the message), each with the message it gives."""
    rules: list[Rule] = []
    if attr.required:
        rules.append({"check": "required", "message": REQUIRED})
        rules.append({"check": "not_null", "message": NOT_NULL})
    if attr.type in TYPE_MESSAGES:
        rule: Rule = {"check": "type", "message": TYPE_MESSAGES[attr.type]}
        if attr.type in FORMS:
            rule["pattern"] = FORMS[attr.type]
        rules.append(rule)
    if attr.type in ("string", "memo"):
        rules.append({"check": "no_nul", "message": NO_NUL})
        if attr.max_length is not None:
            n = attr.max_length
            rules.append({"check": "max_length", "limit": n, "message": f"Longer than maximum length {n}."})
    if attr.type in NUMBER_PLACES:
        rules.append(places_rule(attr.type))
    if attr.type in COLUMN_BOUNDS:
        lo_col, hi_col = COLUMN_BOUNDS[attr.type]
        lo = _number(attr.min_value) if attr.min_value is not None else lo_col
        hi = _number(attr.max_value) if attr.max_value is not None else hi_col
        message = f"Must be greater than or equal to {lo} and less than or equal to {hi}."
        rules.append({"check": "range", "min": lo, "max": hi, "message": message})
    if attr.type == "optionset":
        values = sorted(o.value for o in attr.options)
        message = f"Must be one of {', '.join(map(str, values))}."
        rules.append({"check": "one_of", "values": values, "message": message})
    return rules


def rule_message(rules: Sequence[Rule], check: str, default: str) -> str:
    """The message of the rule `check`, or `default` when the attribute has no such rule."""
    return next((r["message"] for r in rules if r["check"] == check), default)


def failure(rule: Rule, value: Any) -> str | None:
    """The message when a typed, non-null `value` breaks `rule` (a constraint), else None.
    `required`, `not_null` and `type` are about presence and parsing: the caller's."""
    check = rule["check"]
    if check == "no_nul":
        return rule["message"] if "\x00" in value else None
    if check == "max_length":
        return rule["message"] if len(value) > rule["limit"] else None
    if check == "range":
        v = decimal.Decimal(value) if not isinstance(value, int) else value
        lo, hi = decimal.Decimal(str(rule["min"])), decimal.Decimal(str(rule["max"]))
        return rule["message"] if v < lo or v > hi else None
    if check == "one_of":
        return rule["message"] if value not in rule["values"] else None
    if check in ("required", "not_null", "type", "places"):
        return None
    raise ValueError(f"unknown rule check {check!r}")


def first_failure(rules: Sequence[Rule], value: Any) -> str | None:
    """The message of the first constraint `value` breaks, or None."""
    for rule in rules:
        message = failure(rule, value)
        if message is not None:
            return message
    return None


# --- what only the server writes -----------------------------------------------------------

SERVER_OWNED = {
    "ownerid": "ownerid is set by the server; change the owner with the assign action.",
    "owningbusinessunit": "owningbusinessunit follows the owner and is set by the server.",
    "versionnumber": "versionnumber is set by the server.",
    "createdon": "createdon is set by the server.",
    "modifiedon": "modifiedon is set by the server.",
    "createdby": "createdby is set by the server.",
    "modifiedby": "modifiedby is set by the server.",
}


# What a write's keys must be: the body's shape, the primary id, attributes and `@odata.bind`
# lookups (filled with `fill`; validation.py and data.js `validate` decide in the same order).
PAYLOAD_MESSAGES = {
    "not_an_object": "The body must be a JSON object.",
    "primary_id_fixed": "The primary id cannot be changed.",
    "primary_id_form": "Must be a lower-case UUID.",
    "not_an_attribute": "'{key}' is not an attribute of {entity}.",
    "lookup_form": "Lookups are written as '{name}@odata.bind': '/<entityset>(<id>)'.",
    "read_only": "{key} is computed by the server and cannot be written.",
    "not_a_lookup": "'{name}' is not a lookup of {entity}.",
    "bind_not_string": "A lookup is bound with a string '/<entityset>(<id>)'.",
    "bind_form": "'{value}' is not of the form '/<entityset>(<id>)'.",
    "not_an_entity_set": "'{set}' is not an entity set.",
    "wrong_target": "{key} can point at {allowed}, not {target}.",
    "wrong_hint": "{name} must point at a {hint}.",
}


def write_rules() -> dict[str, Any]:
    """The fields no client may write and what a write's keys must be, with their messages
    (published once in the document: they are the same for every entity)."""
    return {
        "server_owned": SERVER_OWNED,
        "server_owned_prefixes": ["_ownerid", "_owningbusinessunit"],
        "server_owned_other": "{key} is set by the server.",
        "messages": PAYLOAD_MESSAGES,
    }


def server_owned(rules: Mapping[str, Any], key: str) -> str | None:
    """The message refusing a write of `key` when only the server writes it, else None."""
    if key in rules["server_owned"]:
        return rules["server_owned"][key]  # type: ignore[no-any-return]
    if any(key.startswith(p) for p in rules["server_owned_prefixes"]):
        return fill(rules["server_owned_other"], {"key": key})
    return None


# --- statecode and statuscode ---------------------------------------------------------------


def state_rules(display_name: str) -> dict[str, Any]:
    """An entity's state messages as published (its name filled in; the states and statuses
    themselves are the statecode and statuscode options)."""
    what = display_name.lower()
    what = f"{'An' if what[:1] in 'aeiou' else 'A'} {what}"
    return {"messages": {k: v.replace("{entity}", what) for k, v in STATE_MESSAGES.items()}}


def fill(template: str, args: Mapping[str, Any]) -> str:
    """`template` with each `{name}` replaced by args[name] (the phone fills the same way)."""
    out = template
    for key, value in args.items():
        out = out.replace("{" + key + "}", str(value))
    return out


class StateRefused(ValueError):
    """A state change the rules refuse; `field` is the attribute to blame."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def check_move(
    states: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    messages: Mapping[str, str],
    current: int | None,
    given: Mapping[str, Any],
) -> None:
    """Refuse a state change a plain create (`current` None) or update may not make: each
    state lists in `next` the states a write may move it to; the rest are a command's (`via`)."""
    target = given.get("statecode")
    if target is None and given.get("statuscode") is not None:
        target = next((s.get("state") for s in statuses if s["value"] == given["statuscode"]), None)
    start = states[0]["value"] if current is None else current
    if target is None or target == start:
        return
    option = {s["value"]: s for s in states}
    if target in option.get(start, {}).get("next", ()):
        return
    via = option.get(start, {}).get("via")
    args = {
        "from": option[start]["label"] if start in option else start,
        "to": option[target]["label"] if target in option else target,
        "via": fill(messages["via"], {"via": via}) if via else "",
    }
    raise StateRefused(fill(messages["create" if current is None else "move"], args), "statecode")


def pair_state(
    states: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    messages: Mapping[str, str],
    merged: Mapping[str, Any],
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """The statecode and statuscode to write so that they agree (a status belongs to one
    state): `merged` is the record with the write applied, `given` the write itself."""
    state_of = {s["value"]: s.get("state") for s in statuses}
    state, status = merged.get("statecode"), merged.get("statuscode")
    out: dict[str, Any] = {}
    given_status = given.get("statuscode")
    if given_status is not None and "statecode" not in given:
        state = state_of.get(given_status)
        out["statecode"] = state
    if state is None:
        state = states[0]["value"]
        out["statecode"] = state
    if status is None or ("statecode" in given and "statuscode" not in given) or state_of.get(status) != state:
        if given_status is not None and state_of.get(given_status) != state:
            raise StateRefused(fill(messages["status_of"], {"status": given_status, "state": state}), "statuscode")
        out["statuscode"] = next((v for v, s in state_of.items() if s == state), None)
    return out


# --- derived values -------------------------------------------------------------------------


def derive(attributes: Sequence[Attribute], merged: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the attributes with a `formula`, from the record's other values.

    `join`: the sources that hold text, in order, spaced (none: null). `product`: the sources
    multiplied exactly, then kept to the column's `places` rule (a source missing: null). webapp/static/js/ruledata.js
    `derive` computes the same."""
    out: dict[str, Any] = {}
    for attr in attributes:
        if attr.formula is None:
            continue
        op, sources = attr.formula
        values = [merged.get(source) for source in sources]
        if op == "join":
            out[attr.logical_name] = " ".join(str(v) for v in values if v) or None
        elif any(v is None for v in values):
            out[attr.logical_name] = None
        else:
            product = decimal.Decimal(1)
            for v in values:
                product = _EXACT.multiply(product, v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v)))
            rule = next(r for r in attr.rules if r["check"] == "places")
            rounded = round_to(product, rule["places"], rule["rounding"])
            out[attr.logical_name] = int(rounded) if attr.type == "integer" else rounded
    return out


def derived_from(attributes: Sequence[Attribute]) -> dict[str, tuple[str, ...]]:
    """Each derived attribute's sources: field security hides a derived value with its sources."""
    return {a.logical_name: a.formula[1] for a in attributes if a.formula is not None}
