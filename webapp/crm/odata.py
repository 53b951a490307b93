"""The OData query subset: parse `$filter $orderby $select $top $expand`, translate to SQL.

Everything runs in the database: `filter_condition` and `order_clauses` return SQLAlchemy Core
expressions; no row is ever filtered or sorted in Python. The device's JavaScript engine
mirrors these rules exactly (PROTOCOL.md §2), so they are kept small and are all listed here.

Fields
    Any attribute logical name; `_<lookup>_value` (same column as `<lookup>`); the system fields
    `ownerid`, `owningbusinessunit`, `createdby`, `modifiedby` (lookups, also as
    `_<name>_value`), `createdon`, `modifiedon` (datetime), `versionnumber` (integer).

$filter grammar (keywords and function names are lower-case and case-sensitive)
    or_expr   := and_expr ("or" and_expr)*
    and_expr  := unary ("and" unary)*
    unary     := "not" unary | "(" or_expr ")" | call | usercall | compare
    call      := ("contains" | "startswith" | "endswith") "(" field "," 'string' ")"
    usercall  := "Microsoft.Dynamics.CRM." ("EqualUserId" | "NotEqualUserId")
                 "(PropertyName='" field "')"
    compare   := field ("eq" | "ne" | "gt" | "ge" | "lt" | "le") literal
    So precedence is not > comparison > and > or; `not` applies to a parenthesised expression,
    a call or another `not` (write `not (name eq 'x')`, never `not name eq 'x'`). The field is
    always on the left; the right is always a literal. Nesting is limited to 50 levels and a
    filter to 500 comparisons/calls.

Literals and the field types they may be compared with
    'text' (quote doubled to escape: 'O''Brien')          string, memo; a quoted GUID also
                                                          works for lookup/uniqueidentifier
    12, -3, 4.50 (no exponent)                            integer, decimal, money, optionset
    true, false                                           boolean (eq/ne only)
    null                                                  any type (eq/ne only)
    3f2504e0-4f89-41d3-9a0c-0305e82c3301 (any case)       lookup, uniqueidentifier (eq/ne only)
    2026-11-28                                            date; datetime (= midnight UTC)
    2026-11-28T09:30Z, 2026-11-28T09:30:00.5+01:00        datetime (seconds optional, 1-6
                                                          fraction digits, Z or +hh:mm/-hh:mm;
                                                          converted to UTC)
    Anything else is an error naming the field, its type and the literal.

The signed-in user (the reference's FetchXML `eq-userid` / `ne-userid`, as its Web API writes
them; the "My …" views use them)
    `Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')` is true where the lookup holds
    the signed-in user's id; `NotEqualUserId` where it holds another id. Only lookups (and
    `ownerid`, `createdby`, `modifiedby`); a null lookup matches neither. The query runs for a
    user (`filter_condition(..., user_id=)`; the device passes its own user's id).

Strings
    All six comparisons are case-insensitive: the lower-cased column (`ci_lower`: Python
    `str.lower` in SQLite, `lower()` in PostgreSQL, `toLowerCase` on the device) against the
    lower-cased literal. gt/ge/lt/le and `$orderby` compare lower-cased values by code point
    (COLLATE "C" in PostgreSQL; SQLite compares UTF-8 bytes, which is code-point order).
    contains/startswith/endswith: lower-cased column LIKE the lower-cased literal, with %, _
    and \\ in the literal matched literally.

Nulls (every condition is true or false, never unknown)
    `f eq null` is true exactly when f is null; `f ne null` exactly when it is not.
    Any other comparison or function on a null field value is FALSE, including `ne`:
    `f ne 'x'` does not match rows where f is null.
    `not` simply negates: `not (f eq 'x')` is TRUE where f is null (so it differs from
    `f ne 'x'`); `not contains(f,'x')` is likewise true for a null f.
    In SQL every comparison is emitted as `f IS NOT NULL AND <comparison>`, so it is never NULL.

$orderby
    `field [asc|desc], ...` (default asc). Strings by lower-cased code point; lookups and ids by
    their lowercase id string (code point); NULLs first ascending, last descending; the primary
    id ascending is always appended as the final tie-breaker so every ordering is total.
    A blank $orderby means "by primary id only".

$select: a comma list of fields (whitespace tolerant, duplicates dropped). $top: a non-negative
integer (at most 2147483647). $expand: a comma list of `<lookup>($select=a,b)` for a lookup with
one target, or `<lookup>_<target>($select=...)` for one target of a polymorphic lookup; the
nested $select is required and is checked against the target entity.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Numeric, String, Table, and_, false, literal, not_, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.metadata import Entity
from webapp.db import ci_lower

__all__ = [
    "SYSTEM_FIELDS",
    "And",
    "Call",
    "Compare",
    "Expand",
    "Literal",
    "Node",
    "Not",
    "ODataError",
    "Or",
    "UserCall",
    "ci_sort_key",
    "codepoint",
    "filter_condition",
    "order_clauses",
    "parse_expand",
    "parse_filter",
    "parse_orderby",
    "parse_select",
    "parse_top",
    "resolve_field",
]

MAX_DEPTH = 50
MAX_TERMS = 500
MAX_TOP = 2_147_483_647

# System columns every entity table has, with the type they have in queries.
SYSTEM_FIELDS: dict[str, str] = {
    "ownerid": "lookup",
    "owningbusinessunit": "lookup",
    "createdby": "lookup",
    "modifiedby": "lookup",
    "createdon": "datetime",
    "modifiedon": "datetime",
    "versionnumber": "integer",
}

STRING_TYPES = frozenset({"string", "memo"})
NUMBER_TYPES = frozenset({"integer", "decimal", "money", "optionset"})
ID_TYPES = frozenset({"lookup", "uniqueidentifier"})
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
FUNCTIONS = ("contains", "startswith", "endswith")
EXPECTED = {
    "string": "a quoted string",
    "memo": "a quoted string",
    "integer": "a number",
    "decimal": "a number",
    "money": "a number",
    "optionset": "a number",
    "boolean": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "datetime": "a date-time (YYYY-MM-DDThh:mm:ssZ) or a date",
    "lookup": "a GUID",
    "uniqueidentifier": "a GUID",
}
_SYSTEM_BY_NAME: dict[str, Entity] = {e.logical_name: e for e in SYSTEM_ENTITIES}


class ODataError(ValueError):
    """A query option is malformed or does not fit the entity; the message says which and why.

    `option` is "$filter", "$orderby", "$select", "$top" or "$expand"; `field` names the field
    involved when there is one. The API turns this into a 400.
    """

    def __init__(self, message: str, option: str = "", field: str | None = None) -> None:
        if option and not message.startswith(option):
            message = f"{option}: {message}"
        super().__init__(message)
        self.message = message
        self.option = option
        self.field = field


# --- SQL constructs --------------------------------------------------------------------------


class ci_sort_key(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it is
    """The lower-cased value ordered by code point: the sort key of strings (PROTOCOL.md §2)."""

    type = String()
    inherit_cache = True


@compiles(ci_sort_key)
def _ci_sort_key_default(element: ci_sort_key, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(ci_sort_key, "sqlite")
def _ci_sort_key_sqlite(element: ci_sort_key, compiler: Any, **kw: Any) -> str:
    # SQLite's default BINARY collation compares UTF-8 bytes: code-point order already.
    return f"outpost_lower({compiler.process(element.clauses, **kw)})"


@compiles(ci_sort_key, "postgresql")
def _ci_sort_key_postgresql(element: ci_sort_key, compiler: Any, **kw: Any) -> str:
    return f'(lower({compiler.process(element.clauses, **kw)}) COLLATE "C")'


class codepoint(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it is
    """A string compared by code point as is (ids): COLLATE "C" in PostgreSQL, plain in SQLite."""

    type = String()
    inherit_cache = True


@compiles(codepoint)
def _codepoint_default(element: codepoint, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(codepoint, "postgresql")
def _codepoint_postgresql(element: codepoint, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A literal of $filter: `kind` is string, number, boolean, null, guid, date or datetime.

    `value` is the Python value (str, int | Decimal, bool, None, lowercase GUID str, date,
    naive UTC datetime); `text` is the literal as written, for messages.
    """

    kind: str
    value: Any
    text: str


@dataclass(frozen=True)
class Compare:
    """`field op value`; op is one of eq ne gt ge lt le."""

    field: str
    op: str
    value: Literal


@dataclass(frozen=True)
class Call:
    """`name(field, value)`; name is contains, startswith or endswith."""

    name: str
    field: str
    value: Literal


@dataclass(frozen=True)
class UserCall:
    """`Microsoft.Dynamics.CRM.<name>(PropertyName='<field>')`; name is EqualUserId or NotEqualUserId."""

    name: str
    field: str


@dataclass(frozen=True)
class And:
    """All of `items` (two or more)."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Any of `items` (two or more)."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The negation of `item`."""

    item: Node


Node = And | Or | Not | Compare | Call | UserCall


@dataclass(frozen=True)
class Expand:
    """One `$expand` item: the navigation name as written, its lookup, target and columns."""

    nav: str
    attribute: str
    target: str
    select: list[str]


# --- fields ----------------------------------------------------------------------------------


def resolve_field(name: str, entity: Entity, *, option: str = "") -> tuple[str, str]:
    """The (column name, attribute type) behind a field name used in a query.

    Accepts attribute names, `_<lookup>_value` and the system fields; anything else is an
    ODataError naming the field and the entity.
    """
    if name.startswith("_") and name.endswith("_value") and len(name) > len("__value"):
        inner = name[1 : -len("_value")]
        attr = entity.attribute(inner)
        type_ = attr.type if attr is not None else SYSTEM_FIELDS.get(inner)
        if type_ == "lookup":
            return inner, "lookup"
        if type_ is not None:
            raise ODataError(
                f"'{name}' is not a field of {entity.logical_name}: '{inner}' is not a lookup", option, name
            )
        raise ODataError(f"'{name}' is not a field of {entity.logical_name}", option, name)
    attr = entity.attribute(name)
    if attr is not None:
        return name, attr.type
    if name in SYSTEM_FIELDS:
        return name, SYSTEM_FIELDS[name]
    raise ODataError(f"'{name}' is not a field of {entity.logical_name}", option, name)


def _column(table: Table, name: str, option: str) -> Any:
    col = table.c.get(name)
    if col is None:
        raise ODataError(f"the table {table.name} has no column '{name}'", option, name)
    return col


# --- $filter: tokens -------------------------------------------------------------------------

_END = r"(?![A-Za-z0-9_.:\-+])"
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:\d{2})(?![A-Za-z0-9_.:\-])",
    re.ASCII,
)
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})" + _END, re.ASCII)
_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END)
_GUID_FULL_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?" + _END)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_FUNCTIONS = ("EqualUserId", "NotEqualUserId")
_USER_PREFIX = "Microsoft.Dynamics.CRM."
_USERCALL_RE = re.compile(r"Microsoft\.Dynamics\.CRM\.([A-Za-z]+)\(PropertyName='([A-Za-z_][A-Za-z0-9_]*)'\)")
_SPACE_RE = re.compile(r"\s+")
_MALFORMED_RE = re.compile(r"[^\s(),']+")


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) , name string number guid date datetime end
    value: Any
    text: str
    pos: int  # 1-based position in the option's text


def _describe(tok: _Token) -> str:
    return "the end of the expression" if tok.kind == "end" else f"'{tok.text}' at position {tok.pos}"


def _keyword_hint(tok: _Token) -> str:
    if tok.kind == "name" and tok.value.lower() in ("and", "or"):
        return " (keywords are lower-case)"
    return ""


def _date_literal(m: re.Match[str], text: str, pos: int) -> dt.date:
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ODataError(f"{text} at position {pos} is not a valid date", "$filter") from None


def _datetime_literal(m: re.Match[str], text: str, pos: int) -> dt.datetime:
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = dt.UTC
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError(zone)
            tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        value = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise ODataError(f"{text} at position {pos} is not a valid date-time", "$filter") from None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        pos = i + 1
        m = _SPACE_RE.match(text, i)
        if m:
            i = m.end()
            continue
        if ch in "(),":
            tokens.append(_Token(ch, ch, ch, pos))
            i += 1
            continue
        if ch == "'":
            j, parts = i + 1, []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise ODataError(f"unterminated string starting at position {pos}", "$filter")
                parts.append(text[j:k])
                if text.startswith("''", k):
                    parts.append("'")
                    j = k + 2
                    continue
                i = k + 1
                break
            value = "".join(parts)
            if "\x00" in value:  # PostgreSQL refuses NUL in text; refuse it here, on both databases
                raise ODataError(f"the string at position {pos} contains a NUL character", "$filter")
            tokens.append(_Token("string", value, text[pos - 1 : i], pos))
            continue
        if text.startswith(_USER_PREFIX, i):
            m = _USERCALL_RE.match(text, i)
            if not m:
                raise ODataError(
                    f"malformed function at position {pos}: write {_USER_PREFIX}EqualUserId(PropertyName='ownerid')",
                    "$filter",
                )
            if m.group(1) not in USER_FUNCTIONS:
                raise ODataError(
                    f"unknown function '{m.group(1)}' at position {pos}; supported: {', '.join(USER_FUNCTIONS)}",
                    "$filter",
                )
            tokens.append(_Token("usercall", (m.group(1), m.group(2)), m.group(), pos))
            i = m.end()
            continue
        m = _DATETIME_RE.match(text, i)
        if m:
            tokens.append(_Token("datetime", _datetime_literal(m, m.group(), pos), m.group(), pos))
            i = m.end()
            continue
        m = _DATE_RE.match(text, i)
        if m:
            tokens.append(_Token("date", _date_literal(m, m.group(), pos), m.group(), pos))
            i = m.end()
            continue
        m = _GUID_RE.match(text, i)
        if m:
            tokens.append(_Token("guid", m.group().lower(), m.group(), pos))
            i = m.end()
            continue
        m = _NUMBER_RE.match(text, i)
        if m:
            s = m.group()
            tokens.append(_Token("number", Decimal(s) if "." in s else int(s), s, pos))
            i = m.end()
            continue
        m = _NAME_RE.match(text, i)
        if m and not (m.end() < n and text[m.end()] in ".-:"):
            tokens.append(_Token("name", m.group(), m.group(), pos))
            i = m.end()
            continue
        bad = _MALFORMED_RE.match(text, i)
        word = bad.group() if bad else ch
        if ch.isdigit() or ch == "-" or (m is not None):
            raise ODataError(f"malformed value '{word}' at position {pos}", "$filter")
        raise ODataError(f"unexpected character '{ch}' at position {pos}", "$filter")
    tokens.append(_Token("end", None, "", n + 1))
    return tokens


# --- $filter: parser -------------------------------------------------------------------------

_LITERAL_KINDS = ("string", "number", "guid", "date", "datetime")
_KEYWORD_LITERALS: dict[str, tuple[str, Any]] = {
    "true": ("boolean", True),
    "false": ("boolean", False),
    "null": ("null", None),
}
_RESERVED = frozenset({*COMPARISONS, "and", "or", "not", *_KEYWORD_LITERALS})


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.value == word

    def fail(self, message: str) -> ODataError:
        return ODataError(message, "$filter")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("the expression is empty")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == ")":
                raise self.fail(f"unbalanced parentheses: ')' at position {tok.pos} has no matching '('")
            raise self.fail(
                f"expected 'and', 'or' or the end of the expression, found {_describe(tok)}{_keyword_hint(tok)}"
            )
        return node

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)")

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.is_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "name" and tok.value == "not":
            self.take()
            nxt = self.peek()
            if nxt.kind == "name" and nxt.value != "not" and self.peek(1).kind != "(":
                raise self.fail(
                    f"'not' at position {tok.pos} applies to a parenthesised expression: "
                    f"write not ({nxt.text} ...), not 'not {nxt.text} ...'"
                )
            self.enter()
            item = self.unary()
            self.depth -= 1
            return Not(item)
        if tok.kind == "(":
            self.take()
            self.enter()
            if self.peek().kind == ")":
                raise self.fail(f"empty parentheses at position {tok.pos}")
            node = self.or_expr()
            self.depth -= 1
            close = self.take()
            if close.kind != ")":
                if close.kind == "end":
                    raise self.fail(f"unbalanced parentheses: '(' at position {tok.pos} is never closed")
                raise self.fail(f"expected 'and', 'or' or ')', found {_describe(close)}{_keyword_hint(close)}")
            return node
        if tok.kind == "usercall":
            self.count_term()
            self.take()
            return UserCall(tok.value[0], tok.value[1])
        if tok.kind == "name":
            self.count_term()
            if self.peek(1).kind == "(":
                return self.call()
            return self.compare()
        if tok.kind == "end":
            raise self.fail("the expression ends where a condition was expected")
        if tok.kind in _LITERAL_KINDS:
            raise self.fail(f"expected a field name, found the value {_describe(tok)}; the field goes on the left")
        raise self.fail(f"expected a condition, found {_describe(tok)}")

    def count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"too many conditions (at most {MAX_TERMS})")

    def field(self) -> str:
        tok = self.take()
        if tok.kind != "name":
            if tok.kind in _LITERAL_KINDS:
                raise self.fail(f"expected a field name, found the value {_describe(tok)}; the field goes on the left")
            raise self.fail(f"expected a field name, found {_describe(tok)}")
        if tok.value in _RESERVED:
            raise self.fail(f"expected a field name, found the keyword {_describe(tok)}")
        return str(tok.value)

    def literal(self, after: str) -> Literal:
        tok = self.take()
        if tok.kind in _LITERAL_KINDS:
            return Literal(tok.kind, tok.value, tok.text)
        if tok.kind == "name" and tok.value in _KEYWORD_LITERALS:
            kind, value = _KEYWORD_LITERALS[tok.value]
            return Literal(kind, value, tok.text)
        if tok.kind == "name":
            hint = (
                " (true, false and null are lower-case)"
                if tok.value.lower() in _KEYWORD_LITERALS
                else "; comparing two fields is not supported and strings need quotes"
            )
            raise self.fail(f"expected a value after {after}, found {_describe(tok)}{hint}")
        raise self.fail(f"expected a value after {after}, found {_describe(tok)}")

    def compare(self) -> Compare:
        field_tok = self.peek()
        name = self.field()
        op = self.take()
        if op.kind == "name" and op.value in COMPARISONS:
            return Compare(name, op.value, self.literal(f"'{op.value}'"))
        if op.kind == "name" and op.value.lower() in COMPARISONS:
            raise self.fail(f"unknown operator '{op.value}' at position {op.pos} (operators are lower-case)")
        if op.kind == "name":
            raise self.fail(
                f"unknown operator '{op.value}' at position {op.pos}; expected one of eq, ne, gt, ge, lt, le"
            )
        raise self.fail(
            f"expected an operator (eq, ne, gt, ge, lt, le) after '{field_tok.text}', found {_describe(op)}"
        )

    def call(self) -> Call:
        name_tok = self.take()
        if name_tok.value not in FUNCTIONS:
            hint = " (function names are lower-case)" if name_tok.value.lower() in FUNCTIONS else ""
            raise self.fail(
                f"unknown function '{name_tok.value}' at position {name_tok.pos}{hint}; "
                "supported: contains, startswith, endswith"
            )
        self.take()  # "("
        name = self.field()
        comma = self.take()
        if comma.kind != ",":
            raise self.fail(f"{name_tok.value}() takes a field and a string: expected ',', found {_describe(comma)}")
        value = self.literal(f"'{name_tok.value}({name},'")
        close = self.take()
        if close.kind != ")":
            raise self.fail(
                f"{name_tok.value}() takes exactly a field and a string: expected ')', found {_describe(close)}"
            )
        return Call(name_tok.value, name, value)


def parse_filter(text: str) -> Node:
    """Parse a `$filter` expression into a small AST, refusing anything outside the subset.

    Syntax only: field names and types are checked by `filter_condition` against an entity.
    """
    if not isinstance(text, str):
        raise ODataError("the option must be text", "$filter")
    return _Parser(text).parse()


# --- $filter: SQL ----------------------------------------------------------------------------


def _mismatch(field: str, type_: str, lit: Literal) -> ODataError:
    return ODataError(
        f"'{field}' is {type_}; {lit.text} is not {EXPECTED.get(type_, 'a suitable value')}", "$filter", field
    )


def _number_param(value: int | Decimal, type_: str) -> Any:
    """A bind parameter for a number, typed so PostgreSQL never rounds or overflows it."""
    if type_ in ("integer", "optionset") and isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            if type_ in ("integer", "optionset"):
                return literal(value, BigInteger())
            return literal(Decimal(value), Numeric())
        value = Decimal(value)
    return literal(value, Numeric())


def _compare_condition(node: Compare, entity: Entity, table: Table) -> ColumnElement[bool]:
    name, type_ = resolve_field(node.field, entity, option="$filter")
    col = _column(table, name, "$filter")
    lit, op = node.value, node.op
    if lit.kind == "null":
        if op not in ("eq", "ne"):
            raise ODataError(f"null can only be compared with eq or ne, not '{op}'", "$filter", node.field)
        null_test: ColumnElement[bool] = col.is_(None) if op == "eq" else col.is_not(None)
        return null_test
    compare = COMPARISONS[op]
    expr: ColumnElement[bool]
    if type_ in STRING_TYPES:
        if lit.kind != "string":
            raise _mismatch(node.field, type_, lit)
        value = lit.value.lower()
        expr = compare(ci_lower(col), value) if op in ("eq", "ne") else compare(ci_sort_key(col), value)
    elif type_ in NUMBER_TYPES:
        if lit.kind != "number":
            raise _mismatch(node.field, type_, lit)
        expr = compare(col, _number_param(lit.value, type_))
    elif type_ == "boolean":
        if lit.kind != "boolean":
            raise _mismatch(node.field, type_, lit)
        if op not in ("eq", "ne"):
            raise ODataError(f"'{node.field}' is boolean: use eq or ne, not '{op}'", "$filter", node.field)
        expr = compare(col, true() if lit.value else false())
    elif type_ == "date":
        if lit.kind != "date":
            raise _mismatch(node.field, type_, lit)
        expr = compare(col, lit.value)
    elif type_ == "datetime":
        if lit.kind == "date":
            value = dt.datetime.combine(lit.value, dt.time())
        elif lit.kind == "datetime":
            value = lit.value
        else:
            raise _mismatch(node.field, type_, lit)
        expr = compare(col, value)
    elif type_ in ID_TYPES:
        if lit.kind == "guid":
            value = lit.value
        elif lit.kind == "string" and _GUID_FULL_RE.fullmatch(lit.value):
            value = lit.value.lower()
        else:
            raise _mismatch(node.field, type_, lit)
        if op not in ("eq", "ne"):
            raise ODataError(f"'{node.field}' is {type_}: use eq or ne, not '{op}'", "$filter", node.field)
        expr = compare(col, value)
    else:  # pragma: no cover - every attribute type is handled above
        raise ODataError(f"'{node.field}' has type {type_}, which cannot be filtered", "$filter", node.field)
    return and_(col.is_not(None), expr)


def _like_pattern(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _call_condition(node: Call, entity: Entity, table: Table) -> ColumnElement[bool]:
    name, type_ = resolve_field(node.field, entity, option="$filter")
    if type_ not in STRING_TYPES:
        raise ODataError(f"{node.name}() needs a string field; '{node.field}' is {type_}", "$filter", node.field)
    if node.value.kind != "string":
        raise ODataError(
            f"{node.name}() needs a quoted string; {node.value.text} is not a string", "$filter", node.field
        )
    col = _column(table, name, "$filter")
    prefix = node.value.value.lower()
    pattern = _like_pattern(prefix)
    if node.name == "contains":
        pattern = f"%{pattern}%"
    elif node.name == "startswith":
        pattern = f"{pattern}%"
    else:
        pattern = f"%{pattern}"
    matches = and_(col.is_not(None), ci_lower(col).like(pattern, escape="\\"))
    if node.name == "startswith" and prefix and ord(prefix[-1]) < 0x10FFFF:
        # The same rows, plus a code-point range the case-folded index can walk (LIKE on an
        # expression cannot use it): every string starting with p lies in [p, p').
        following = ord(prefix[-1]) + 1
        upper = prefix[:-1] + chr(0xE000 if 0xD800 <= following <= 0xDFFF else following)  # skip surrogates
        key = ci_sort_key(col)
        matches = and_(matches, key >= prefix, key < upper)
    return matches


def _user_condition(node: UserCall, entity: Entity, table: Table, user_id: str | None) -> ColumnElement[bool]:
    name, type_ = resolve_field(node.field, entity, option="$filter")
    if type_ != "lookup":
        raise ODataError(f"{node.name}() needs a lookup; '{node.field}' is {type_}", "$filter", node.field)
    if user_id is None:
        raise ODataError(f"{node.name}() needs a signed-in user", "$filter", node.field)
    col = _column(table, name, "$filter")
    return and_(col.is_not(None), col == user_id if node.name == "EqualUserId" else col != user_id)


def filter_condition(node: Node, entity: Entity, table: Table, user_id: str | None = None) -> ColumnElement[bool]:
    """The SQL condition for a parsed `$filter` on `entity`'s `table` (never SQL NULL).

    Checks every field against the entity and every literal against the field's type.
    The caller adds the organisation and security conditions; `user_id` is the signed-in user
    (EqualUserId / NotEqualUserId).
    """
    if isinstance(node, Compare):
        return _compare_condition(node, entity, table)
    if isinstance(node, Call):
        return _call_condition(node, entity, table)
    if isinstance(node, UserCall):
        return _user_condition(node, entity, table, user_id)
    if isinstance(node, And):
        return and_(*(filter_condition(n, entity, table, user_id) for n in node.items))
    if isinstance(node, Or):
        return or_(*(filter_condition(n, entity, table, user_id) for n in node.items))
    if isinstance(node, Not):
        return not_(filter_condition(node.item, entity, table, user_id))
    raise ODataError(f"not a filter expression: {node!r}", "$filter")


# --- $orderby --------------------------------------------------------------------------------


def parse_orderby(text: str, entity: Entity) -> list[tuple[str, bool]]:
    """Parse `$orderby` into [(column name, descending)]; blank text means no explicit order."""
    if not isinstance(text, str):
        raise ODataError("the option must be text", "$orderby")
    if not text.strip():
        return []
    order: list[tuple[str, bool]] = []
    for n, item in enumerate(text.split(","), start=1):
        parts = item.split()
        if not parts:
            raise ODataError(f"item {n} is empty (two commas in a row or a trailing comma)", "$orderby")
        if len(parts) > 2:
            raise ODataError(f"'{item.strip()}' is not 'field asc' or 'field desc'", "$orderby")
        direction = parts[1] if len(parts) == 2 else "asc"
        if direction not in ("asc", "desc"):
            hint = " (lower-case)" if direction.lower() in ("asc", "desc") else ""
            raise ODataError(f"unknown direction '{direction}' for '{parts[0]}': use asc or desc{hint}", "$orderby")
        column, _type = resolve_field(parts[0], entity, option="$orderby")
        order.append((column, direction == "desc"))
    return order


def _sort_expression(column: Any, type_: str) -> Any:
    if type_ in STRING_TYPES:
        return ci_sort_key(column)
    if type_ in ID_TYPES:
        return codepoint(column)
    return column


def order_clauses(order: list[tuple[str, bool]], entity: Entity, table: Table) -> list[Any]:
    """ORDER BY clauses for a parsed `$orderby`, ending with the primary id as tie-breaker.

    NULLs come first ascending and last descending on every database.
    """
    clauses: list[Any] = []
    for name, descending in order:
        column, type_ = resolve_field(name, entity, option="$orderby")
        expr = _sort_expression(_column(table, column, "$orderby"), type_)
        clauses.append(expr.desc().nulls_last() if descending else expr.asc().nulls_first())
    if not any(name == entity.primary_id for name, _desc in order):
        clauses.append(codepoint(_column(table, entity.primary_id, "$orderby")).asc())
    return clauses


# --- $select, $top, $expand ------------------------------------------------------------------


def parse_select(text: str, entity: Entity, *, option: str = "$select") -> list[str]:
    """The column names a `$select` asks for (lookups as `<attr>` or `_<attr>_value`)."""
    if not isinstance(text, str) or not text.strip():
        raise ODataError("the list of fields is empty", option)
    columns: list[str] = []
    for n, item in enumerate(text.split(","), start=1):
        name = item.strip()
        if not name:
            raise ODataError(f"item {n} is empty (two commas in a row or a trailing comma)", option)
        column, _type = resolve_field(name, entity, option=option)
        if column not in columns:
            columns.append(column)
    return columns


def parse_top(text: str) -> int:
    """The `$top` cap: a non-negative integer."""
    value = text.strip() if isinstance(text, str) else ""
    if not re.fullmatch(r"[0-9]+", value):
        shown = text if isinstance(text, str) else repr(text)
        raise ODataError(f"'{shown}' is not a non-negative integer", "$top")
    top = int(value)
    if top > MAX_TOP:
        raise ODataError(f"{value} is too large (at most {MAX_TOP})", "$top")
    return top


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ODataError(f"unbalanced parentheses: ')' at position {i + 1} has no matching '('", "$expand")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise ODataError("unbalanced parentheses: a '(' is never closed", "$expand")
    items.append(text[start:])
    return items


_EXPAND_ITEM_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)


def _expand_target(nav: str, entity: Entity) -> tuple[str, str]:
    attr = entity.attribute(nav)
    if attr is not None:
        if attr.type != "lookup":
            raise ODataError(f"'{nav}' is not a lookup of {entity.logical_name}", "$expand", nav)
        if attr.is_polymorphic:
            options = " or ".join(f"{nav}_{t}" for t in attr.targets)
            raise ODataError(f"'{nav}' can point at {', '.join(attr.targets)}: expand {options}", "$expand", nav)
        return nav, attr.targets[0]
    for attr in entity.lookups():
        if attr.is_polymorphic and nav.startswith(f"{attr.logical_name}_"):
            target = nav[len(attr.logical_name) + 1 :]
            if target in attr.targets:
                return attr.logical_name, target
            raise ODataError(
                f"'{target}' is not a target of {attr.logical_name} (targets: {', '.join(attr.targets)})",
                "$expand",
                nav,
            )
    raise ODataError(f"'{nav}' is not a lookup of {entity.logical_name}", "$expand", nav)


def parse_expand(text: str, entity: Entity, entities: Mapping[str, Entity] | None = None) -> list[Expand]:
    """Parse `$expand` (lookups with a required nested `$select`) and check it against the entities.

    `entities` maps logical names to entities (custom ones included); system entities are
    found without it.
    """
    if not isinstance(text, str) or not text.strip():
        raise ODataError("the list of lookups is empty", "$expand")
    expands: list[Expand] = []
    for n, item in enumerate(_split_top_level(text), start=1):
        if not item.strip():
            raise ODataError(f"item {n} is empty (two commas in a row or a trailing comma)", "$expand")
        m = _EXPAND_ITEM_RE.fullmatch(item)
        if not m:
            raise ODataError(f"'{item.strip()}' is not 'lookup($select=field,...)'", "$expand")
        nav, inner = m.group(1), m.group(2)
        attribute, target_name = _expand_target(nav, entity)
        if inner is None:
            raise ODataError(f"'{nav}' needs a nested $select, e.g. {nav}($select=...)", "$expand", nav)
        target = (entities or {}).get(target_name) or _SYSTEM_BY_NAME.get(target_name)
        if target is None:
            raise ODataError(f"the target entity '{target_name}' of '{nav}' is unknown", "$expand", nav)
        select: list[str] | None = None
        for part in inner.split(";"):
            key, eq, value = part.partition("=")
            key = key.strip()
            if key != "$select" or not eq:
                shown = key or part.strip() or "nothing"
                raise ODataError(f"only $select is supported inside {nav}(...), found '{shown}'", "$expand", nav)
            if select is not None:
                raise ODataError(f"{nav}(...) has $select twice", "$expand", nav)
            try:
                select = parse_select(value, target, option="")
            except ODataError as exc:
                raise ODataError(f"{nav}($select=...): {exc.message}", "$expand", exc.field) from None
        if select is None:  # pragma: no cover - split always yields one part
            raise ODataError(f"'{nav}' needs a nested $select", "$expand", nav)
        if any(e.nav == nav for e in expands):
            raise ODataError(f"'{nav}' is expanded twice", "$expand", nav)
        expands.append(Expand(nav, attribute, target_name, select))
    return expands
