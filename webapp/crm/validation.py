"""Payload validation: marshmallow schemas built from metadata, and `@odata.bind` lookups.

`parse_payload` turns a Web API body into column values or raises ValidationFailed whose
`details` names every bad field, so nothing is written from a half-valid payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields

from webapp.crm import ruledata
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Attribute, Entity

BIND_RE = re.compile(r"^/?(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[0-9a-fA-F-]{36})\)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WRITE_RULES = ruledata.write_rules()
SAY = WRITE_RULES["messages"]


class StrictNumber(fields.Decimal):
    """A JSON number only: strings and booleans are refused (no silent coercion); kept to the
    places its `places` rule declares, rounded as it says (the phone rounds alike)."""

    def __init__(self, *, rules: list[ruledata.Rule], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rules = rules

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise self.make_error("invalid")
        return ruledata.kept(self.rules, super()._deserialize(value, attr, data, **kwargs))


class StrictString(fields.String):
    """A JSON string only."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class UtcDateTime(fields.DateTime):
    """A datetime in its type rule's published `pattern` (the phone matches the same), as
    naive UTC to the second."""

    def __init__(self, *, rules: list[ruledata.Rule], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.type_rule = next(r for r in rules if r["check"] == "type")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        at = ruledata.parse_when(self.type_rule, value)
        if at is None:
            raise self.make_error("invalid")
        return at


class StrictDate(fields.Date):
    """A date in its type rule's published `pattern`, real on the calendar."""

    def __init__(self, *, rules: list[ruledata.Rule], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.type_rule = next(r for r in rules if r["check"] == "type")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        at = ruledata.parse_when(self.type_rule, value)
        if at is None:
            raise self.make_error("invalid")
        return at.date()


class Rules:
    """A marshmallow validator running an attribute's published rules (webapp/crm/ruledata.py):
    the constraints and their messages come from the declaration, as on the phone."""

    def __init__(self, rules: list[ruledata.Rule]) -> None:
        self.rules = rules

    def __call__(self, value: Any) -> Any:
        message = ruledata.first_failure(self.rules, value)
        if message is not None:
            raise ValidationError(message)
        return value


FIELD_TYPES: dict[str, Any] = {
    "string": StrictString,
    "memo": StrictString,
    "integer": lambda **kw: fields.Integer(strict=True, **kw),
    "optionset": lambda **kw: fields.Integer(strict=True, **kw),
    "decimal": StrictNumber,
    "money": StrictNumber,
    "boolean": lambda **kw: fields.Boolean(truthy={True}, falsy={False}, **kw),
    "datetime": UtcDateTime,
    "date": StrictDate,
}


def field_for(attr: Attribute) -> fields.Field[Any]:
    """The marshmallow field that parses exactly the JSON form of an attribute; what the value
    must be beyond its type, and every message, come from the attribute's rules."""
    make = FIELD_TYPES.get(attr.type)
    if make is None:
        raise ValueError(f"no field for type {attr.type}")
    rules = attr.rules
    messages = {
        "required": ruledata.rule_message(rules, "required", ruledata.REQUIRED),
        "null": ruledata.rule_message(rules, "not_null", ruledata.NOT_NULL),
        "invalid": ruledata.rule_message(rules, "type", ruledata.TYPE_MESSAGES[attr.type]),
    }
    extra = {"rules": rules} if make in (StrictNumber, UtcDateTime, StrictDate) else {}
    field: fields.Field[Any] = make(
        required=attr.required, allow_none=not attr.required, validate=Rules(rules), error_messages=messages, **extra
    )
    return field


_schema_cache: dict[tuple[int, bool], type[Schema]] = {}


def schema_for(entity: Entity, creating: bool) -> type[Schema]:
    """A Schema class with one field per client-writable scalar attribute."""
    key = (id(entity), creating)
    cached = _schema_cache.get(key)
    if cached is not None:
        return cached
    attrs: dict[str, fields.Field[Any]] = {}
    for a in entity.attributes:
        if a.read_only or a.type in ("lookup", "uniqueidentifier"):
            continue
        f = field_for(a)
        if not creating or a.logical_name in ("statecode", "statuscode"):
            f.required = False
        attrs[a.logical_name] = f
    cls = Schema.from_dict(attrs, name=f"{entity.logical_name}_{'create' if creating else 'update'}")
    _schema_cache[key] = cls
    return cls


_loader_cache: dict[tuple[int, bool], tuple[Entity, Schema]] = {}


def loader_for(entity: Entity, creating: bool) -> Schema:
    """An instance of `schema_for`, made once: building one deep-copies every field (most of a
    replayed operation's time before), and `load` keeps no state between calls."""
    key = (id(entity), creating)
    cached = _loader_cache.get(key)
    if cached is not None and cached[0] is entity:
        return cached[1]
    loader = schema_for(entity, creating)()
    _loader_cache[key] = (entity, loader)
    return loader


@dataclass
class Bind:
    """A lookup value from `<attr>@odata.bind`: the target entity and id, or None to clear."""

    attribute: str
    target: str | None
    id: str | None


def parse_payload(
    entity: Entity, payload: Any, entity_for_set: Any, creating: bool
) -> tuple[dict[str, Any], list[Bind], str | None]:
    """Split a Web API body into (scalar values, lookup binds, client-minted primary id); every
    message is the published `write_rules.messages` one (data.js `validate` decides alike).

    `entity_for_set` maps an entity-set name to its Entity (raising on unknown). Every
    problem is collected and raised together as ValidationFailed.
    """
    if not isinstance(payload, dict):
        raise ValidationFailed(SAY["not_an_object"])
    errors: dict[str, list[str]] = {}
    scalars: dict[str, Any] = {}
    binds: list[Bind] = []
    record_id: str | None = None
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        if key.endswith("@odata.bind"):
            bind = _parse_bind(entity, key[: -len("@odata.bind")], value, entity_for_set, errors)
            if bind is not None:
                binds.append(bind)
            continue
        if key == entity.primary_id:
            if not creating:
                errors.setdefault(key, []).append(SAY["primary_id_fixed"])
            elif not isinstance(value, str) or not UUID_RE.match(value):
                errors.setdefault(key, []).append(SAY["primary_id_form"])
            else:
                record_id = value
            continue
        owned = ruledata.server_owned(WRITE_RULES, key)
        if owned is not None:
            errors.setdefault(key, []).append(owned)
            continue
        if key.startswith("@") or "@" in key:
            continue  # annotations (formatted values, etags) a client echoes back are ignored
        attr = entity.attribute(key)
        if attr is None:
            if key.startswith("_") and key.endswith("_value"):
                errors.setdefault(key, []).append(ruledata.fill(SAY["lookup_form"], {"name": key[1:-6]}))
            else:
                errors.setdefault(key, []).append(
                    ruledata.fill(SAY["not_an_attribute"], {"key": key, "entity": entity.logical_name})
                )
            continue
        if attr.type == "lookup":
            errors.setdefault(key, []).append(ruledata.fill(SAY["lookup_form"], {"name": key}))
            continue
        if attr.read_only:
            errors.setdefault(key, []).append(ruledata.fill(SAY["read_only"], {"key": key}))
            continue
        scalars[key] = value
    try:
        loaded = loader_for(entity, creating).load(scalars, partial=not creating)
    except ValidationError as exc:
        for k, msgs in exc.normalized_messages().items():  # type: ignore[no-untyped-call]  # marshmallow leaves it unannotated
            errors.setdefault(str(k), []).extend(msgs if isinstance(msgs, list) else [str(msgs)])
        loaded = {}
    if creating:
        bound = {b.attribute for b in binds if b.id is not None}
        for a in entity.lookups():
            if a.required and a.logical_name not in bound and a.logical_name not in errors:
                errors.setdefault(a.logical_name, []).append(
                    ruledata.rule_message(a.rules, "required", ruledata.REQUIRED)
                )
    else:
        for b in binds:
            attr = entity.attribute(b.attribute)
            if attr is not None and attr.required and b.id is None:
                errors.setdefault(b.attribute, []).append(
                    ruledata.rule_message(attr.rules, "not_null", ruledata.NOT_NULL)
                )
    if errors:
        raise_validation(errors)
    return loaded, binds, record_id


def raise_validation(errors: dict[str, list[str]]) -> None:
    """Raise ValidationFailed naming the first bad field, with every message in details."""
    first = sorted(errors)[0]
    raise ValidationFailed(f"{first}: {errors[first][0]}", field=first, details=errors)


def _parse_bind(
    entity: Entity, name: str, value: Any, entity_for_set: Any, errors: dict[str, list[str]]
) -> Bind | None:
    attr = entity.attribute(name)
    target_hint = None
    if attr is None and "_" in name:
        base, _, target_hint = name.rpartition("_")
        attr = entity.attribute(base)
    if attr is None or attr.type != "lookup":
        errors.setdefault(name, []).append(
            ruledata.fill(SAY["not_a_lookup"], {"name": name, "entity": entity.logical_name})
        )
        return None
    key = attr.logical_name
    if value is None:
        return Bind(key, None, None)
    if not isinstance(value, str):
        errors.setdefault(key, []).append(SAY["bind_not_string"])
        return None
    m = BIND_RE.match(value)
    if not m:
        errors.setdefault(key, []).append(ruledata.fill(SAY["bind_form"], {"value": value}))
        return None
    try:
        target = entity_for_set(m["set"])
    except Exception:
        errors.setdefault(key, []).append(ruledata.fill(SAY["not_an_entity_set"], {"set": m["set"]}))
        return None
    if target.logical_name not in attr.targets:
        args = {"key": key, "allowed": ", ".join(attr.targets), "target": target.logical_name}
        errors.setdefault(key, []).append(ruledata.fill(SAY["wrong_target"], args))
        return None
    if target_hint is not None and target_hint != target.logical_name:
        errors.setdefault(key, []).append(ruledata.fill(SAY["wrong_hint"], {"name": name, "hint": target_hint}))
        return None
    return Bind(key, target.logical_name, m["id"].lower())
