"""Entity metadata: the one description that tables, validation, the API and the device use.

An entity is a list of typed attributes plus what the app needs to show it (views, form,
quick-find columns) and what the device may do with it offline (its offline commands).
System entities are declared in `webapp.crm.entities`; custom entities arrive as JSON
(`outpost add-entity`) and go through `entity_from_dict`, which refuses bad definitions
with a message naming the offending part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webapp.crm.ruledata import attribute_rules, state_rules

ATTRIBUTE_TYPES = (
    "string",
    "memo",
    "integer",
    "decimal",
    "money",
    "boolean",
    "datetime",
    "date",
    "optionset",
    "lookup",
    "uniqueidentifier",
)
OWNERSHIPS = ("user", "organization")
STRING_FORMATS = ("email", "phone", "url")  # the reference's string formats a phone has a keyboard for
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,48}$")

# Columns every entity table has; a client may never write them (the server owns them).
SYSTEM_ATTRIBUTES = (
    "ownerid",
    "owningbusinessunit",
    "createdon",
    "modifiedon",
    "createdby",
    "modifiedby",
    "versionnumber",
)


class MetadataError(ValueError):
    """A metadata definition is not acceptable; the message says which part and why."""


@dataclass(frozen=True)
class Option:
    """One value of an option set."""

    value: int
    label: str
    state: int | None = None  # for statuscode: the statecode this status belongs to
    next_states: tuple[int, ...] = ()  # for statecode: the states a plain update may move to (commands aside)
    via: str | None = None  # for statecode: the command that moves a record out of this state


@dataclass(frozen=True)
class Attribute:
    """One typed field of an entity."""

    logical_name: str
    type: str
    display_name: str = ""
    required: bool = False
    max_length: int | None = None
    options: tuple[Option, ...] = ()
    targets: tuple[str, ...] = ()
    read_only: bool = False  # derived or server-generated: never written by a client
    min_value: float | None = None
    max_value: float | None = None
    format: str | None = None  # a string's kind (STRING_FORMATS): the phone's input type and keyboard
    # A value computed from others, (op, sources): "join" (the non-empty sources' text, spaced)
    # or "product" (of numbers). The server and the phone compute it alike (ruledata.derive).
    formula: tuple[str, tuple[str, ...]] | None = None
    # A lookup's parental behaviour: deleting the record it points at deletes this record too
    # ("delete") or clears the lookup ("clear", the reference product's default "remove link").
    cascade: str = "clear"
    # A value the server numbers when a record is created without one, (prefix, digits): the
    # change's version, zero-padded ("CAS-000042").
    autonumber: tuple[str, int] | None = None

    @property
    def is_polymorphic(self) -> bool:
        """A lookup that can point at several entities (customer, regarding)."""
        return self.type == "lookup" and len(self.targets) > 1

    def option_values(self) -> set[int]:
        """The allowed integer values of an option set."""
        return {o.value for o in self.options}

    def label_for(self, value: Any) -> str | None:
        """The display label of an option value."""
        for option in self.options:
            if option.value == value:
                return option.label
        return None

    @property
    def rules(self) -> list[dict[str, Any]]:
        """What a value must be, with the message for each refusal (webapp/crm/ruledata.py)."""
        cached = self.__dict__.get("_rules")
        if cached is None:
            cached = attribute_rules(self)
            object.__setattr__(self, "_rules", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        """The attribute as published in the customizations."""
        out: dict[str, Any] = {
            "logical_name": self.logical_name,
            "display_name": self.display_name or self.logical_name,
            "type": self.type,
            "required": self.required,
            "max_length": self.max_length,
            "options": [
                {
                    "value": o.value,
                    "label": o.label,
                    **({"state": o.state} if o.state is not None else {}),
                    **({"next": list(o.next_states)} if self.logical_name == "statecode" else {}),
                    **({"via": o.via} if o.via is not None else {}),
                }
                for o in self.options
            ],
            "targets": list(self.targets),
            "read_only": self.read_only,
            "rules": self.rules,
        }
        if self.min_value is not None:
            out["min_value"] = self.min_value
        if self.max_value is not None:
            out["max_value"] = self.max_value
        if self.format is not None:
            out["format"] = self.format
        if self.formula is not None:
            out["formula"] = {"op": self.formula[0], "of": list(self.formula[1])}
        if self.type == "lookup":
            out["cascade"] = self.cascade
        if self.autonumber is not None:
            out["autonumber"] = {"prefix": self.autonumber[0], "digits": self.autonumber[1]}
        return out


@dataclass(frozen=True)
class View:
    """A system view: columns, a filter and an ordering, all in the OData dialect."""

    id: str
    name: str
    columns: tuple[str, ...]
    filter: str = ""
    orderby: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The view as published in the customizations."""
        return {
            "id": self.id,
            "name": self.name,
            "columns": list(self.columns),
            "filter": self.filter,
            "orderby": self.orderby,
        }


@dataclass(frozen=True)
class Entity:
    """One entity: its attributes and everything derived from the one description."""

    logical_name: str
    display_name: str
    display_collection_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    ownership: str
    attributes: tuple[Attribute, ...]
    views: tuple[View, ...] = ()
    form: tuple[tuple[str, tuple[str, ...]], ...] = ()
    quick_find: tuple[str, ...] = ()
    offline_commands: tuple[str, ...] = ()
    api_writable: bool = True  # systemuser, team, businessunit are managed by the CLI/admin
    is_custom: bool = False
    table_name: str = ""
    activity: bool = False  # one of the activity types unioned by activitypointer
    union_of: tuple[str, ...] = ()  # activitypointer: the entities it unions
    related: tuple[tuple[str, str], ...] = ()  # (entity, lookup attribute) shown on the form

    @property
    def has_state(self) -> bool:
        """Whether the entity carries statecode/statuscode."""
        return "statecode" in self.attribute_map

    @property
    def attribute_map(self) -> dict[str, Attribute]:
        """Attributes by logical name."""
        cached = self.__dict__.get("_attribute_map")
        if cached is None:
            cached = {a.logical_name: a for a in self.attributes}
            object.__setattr__(self, "_attribute_map", cached)
        return cached

    @property
    def state_machine(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        """The published statecode options, statuscode options and state messages, which
        webapp/crm/ruledata.py interprets (as the phone does the same published data)."""
        cached = self.__dict__.get("_state_machine")
        if cached is None:
            state, status = self.attribute_map["statecode"], self.attribute_map["statuscode"]
            messages = state_rules(self.display_name)["messages"]
            cached = (state.to_dict()["options"], status.to_dict()["options"], messages)
            object.__setattr__(self, "_state_machine", cached)
        return cached

    def attribute(self, name: str) -> Attribute | None:
        """The attribute called `name`, or None."""
        return self.attribute_map.get(name)

    def lookups(self) -> list[Attribute]:
        """The lookup attributes."""
        return [a for a in self.attributes if a.type == "lookup"]

    def form_sections(self) -> list[dict[str, Any]]:
        """The form layout; by default one section with every client-editable attribute."""
        if self.form:
            return [{"name": name, "fields": list(fields)} for name, fields in self.form]
        skip = {self.primary_id, *SYSTEM_ATTRIBUTES}
        fields = [a.logical_name for a in self.attributes if a.logical_name not in skip]
        return [{"name": "General", "fields": fields}]

    def to_dict(self) -> dict[str, Any]:
        """The entity as published in `GET /api/metadata`."""
        return {
            "logical_name": self.logical_name,
            "display_name": self.display_name,
            "display_collection_name": self.display_collection_name,
            "entity_set": self.entity_set,
            "primary_id": self.primary_id,
            "primary_name": self.primary_name,
            "ownership": self.ownership,
            "is_custom": self.is_custom,
            "is_activity": self.activity,
            "attributes": [a.to_dict() for a in self.attributes],
            "views": [v.to_dict() for v in self.views],
            "form": {"sections": self.form_sections()},
            "quick_find": list(self.quick_find),
            "offline_commands": list(self.offline_commands),
            "api_writable": self.api_writable and not self.union_of,
            "related": [{"entity": e, "attribute": a} for e, a in self.related],
            **({"state_rules": state_rules(self.display_name)} if self.has_state else {}),
        }


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MetadataError(message)


def attribute_from_dict(data: Any, where: str) -> Attribute:
    """Build an attribute from its JSON form, refusing anything malformed."""
    _require(isinstance(data, dict), f"{where}: an attribute must be an object")
    name = data.get("logical_name")
    _require(isinstance(name, str) and bool(NAME_RE.match(name)), f"{where}: logical_name must match {NAME_RE.pattern}")
    where = f"{where} '{name}'"
    type_ = data.get("type")
    _require(type_ in ATTRIBUTE_TYPES, f"{where}: type must be one of {', '.join(ATTRIBUTE_TYPES)}")
    _require(
        type_ != "uniqueidentifier",
        f"{where}: uniqueidentifier is the primary id's type and is added automatically",
    )
    max_length = data.get("max_length")
    if type_ in ("string", "memo"):
        if max_length is None:
            max_length = 100 if type_ == "string" else 4000
        _require(
            isinstance(max_length, int) and 1 <= max_length <= 1_048_576,
            f"{where}: max_length must be an integer from 1 to 1048576",
        )
    else:
        _require(max_length is None, f"{where}: max_length applies to string and memo only")
    options: list[Option] = []
    if type_ == "optionset":
        raw = data.get("options")
        _require(isinstance(raw, list) and bool(raw), f"{where}: an option set needs a non-empty options list")
        for o in raw:
            _require(
                isinstance(o, dict) and isinstance(o.get("value"), int) and isinstance(o.get("label"), str),
                f"{where}: each option needs an integer value and a string label",
            )
            options.append(Option(o["value"], o["label"]))
        _require(len({o.value for o in options}) == len(options), f"{where}: option values must be unique")
    targets = data.get("targets", [])
    if type_ == "lookup":
        _require(
            isinstance(targets, list) and bool(targets) and all(isinstance(t, str) for t in targets),
            f"{where}: a lookup needs a non-empty targets list",
        )
    else:
        _require(not targets, f"{where}: targets apply to lookups only")
    required = data.get("required", False)
    _require(isinstance(required, bool), f"{where}: required must be true or false")
    unknown = set(data) - {
        "logical_name",
        "type",
        "display_name",
        "required",
        "max_length",
        "options",
        "targets",
        "format",
        "min_value",
        "max_value",
        "formula",
        "cascade",
        "autonumber",
    }
    _require(not unknown, f"{where}: unknown keys {sorted(unknown)}")
    cascade = data.get("cascade", "clear")
    _require(
        cascade == "clear" or (type_ == "lookup" and cascade in CASCADES),
        f"{where}: cascade applies to lookups and is one of {', '.join(CASCADES)}",
    )
    autonumber = _autonumber_from_dict(data.get("autonumber"), type_, max_length, where)
    formula = _formula_from_dict(data.get("formula"), type_, where)
    bounds = [data.get("min_value"), data.get("max_value")]
    for bound in bounds:
        _require(
            bound is None or (type_ in ("integer", "decimal", "money") and _is_number(bound)),
            f"{where}: min_value and max_value are numbers and apply to integer, decimal and money only",
        )
    _require(
        None in bounds or bounds[0] <= bounds[1],
        f"{where}: min_value must not be greater than max_value",
    )
    format_ = data.get("format")
    _require(
        format_ is None or (type_ == "string" and format_ in STRING_FORMATS),
        f"{where}: format applies to string attributes and is one of {', '.join(STRING_FORMATS)}",
    )
    return Attribute(
        logical_name=name,
        type=type_,
        display_name=str(data.get("display_name") or name),
        required=required,
        max_length=max_length,
        options=tuple(options),
        targets=tuple(targets),
        format=format_,
        min_value=bounds[0],
        max_value=bounds[1],
        formula=formula,
        read_only=formula is not None or autonumber is not None,
        cascade=cascade,
        autonumber=autonumber,
    )


CASCADES = ("clear", "delete")


def _autonumber_from_dict(data: Any, type_: str, max_length: int | None, where: str) -> tuple[str, int] | None:
    """A numbered attribute's declaration (`{"prefix": "CAS-", "digits": 6}`)."""
    if data is None:
        return None
    _require(
        type_ == "string"
        and isinstance(data, dict)
        and set(data) == {"prefix", "digits"}
        and isinstance(data["prefix"], str)
        and isinstance(data["digits"], int)
        and not isinstance(data["digits"], bool)
        and 1 <= data["digits"] <= 18,
        f"{where}: autonumber applies to strings and is {{prefix, digits}} with digits from 1 to 18",
    )
    _require(
        max_length is not None and len(data["prefix"]) + data["digits"] <= max_length,
        f"{where}: an autonumber's prefix and digits must fit max_length",
    )
    return data["prefix"], data["digits"]


FORMULA_TYPES = {"join": ("string", "memo"), "product": ("integer", "decimal", "money")}


def _formula_from_dict(data: Any, type_: str, where: str) -> tuple[str, tuple[str, ...]] | None:
    """A derived attribute's formula from its JSON form (`{"op": "join", "of": [names]}`)."""
    if data is None:
        return None
    _require(
        isinstance(data, dict) and set(data) == {"op", "of"} and data["op"] in FORMULA_TYPES,
        f"{where}: formula is an object {{op, of}} with op one of {', '.join(FORMULA_TYPES)}",
    )
    _require(
        type_ in FORMULA_TYPES[data["op"]],
        f"{where}: a {data['op']} formula makes a {' or '.join(FORMULA_TYPES[data['op']])} value",
    )
    of = data["of"]
    _require(
        isinstance(of, list) and len(of) >= 2 and all(isinstance(n, str) for n in of),
        f"{where}: formula.of lists at least two attribute names",
    )
    return data["op"], tuple(of)


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < float("inf")


def entity_from_dict(data: Any, known_entities: set[str]) -> Entity:
    """Build a custom entity from its JSON definition (see examples/new_visitreport.json).

    Adds the primary id; checks names, types, lookup targets, views, form and offline
    commands, so that a bad file is refused whole with a message naming what is wrong.
    """
    _require(isinstance(data, dict), "the definition must be a JSON object")
    name = data.get("logical_name")
    _require(
        isinstance(name, str) and bool(re.match(r"^[a-z]+_[a-z0-9_]{1,40}$", name)),
        "logical_name must have a publisher prefix and only lower-case letters, digits and _ (e.g. new_visitreport)",
    )
    _require(name not in known_entities, f"an entity named '{name}' already exists")
    unknown = set(data) - {
        "logical_name",
        "display_name",
        "display_collection_name",
        "entity_set",
        "primary_name",
        "ownership",
        "attributes",
        "views",
        "form",
        "quick_find",
        "offline_commands",
    }
    _require(not unknown, f"unknown keys {sorted(unknown)}")
    raw_attrs = data.get("attributes")
    _require(isinstance(raw_attrs, list) and bool(raw_attrs), "attributes must be a non-empty list")
    attrs = [attribute_from_dict(a, f"attribute #{i + 1}") for i, a in enumerate(raw_attrs)]
    names = [a.logical_name for a in attrs]
    _require(len(set(names)) == len(names), "attribute names must be unique")
    primary_id = f"{name}id"
    reserved = {primary_id, "statecode", "statuscode", "organizationid", "owneridtype", *SYSTEM_ATTRIBUTES}
    clash = sorted(set(names) & reserved)
    _require(not clash, f"attribute names {clash} are reserved")
    for a in attrs:
        for t in a.targets:
            _require(t in known_entities or t == name, f"attribute '{a.logical_name}': unknown lookup target '{t}'")
    by_name = {a.logical_name: a for a in attrs}
    for a in attrs:
        if a.formula is None:
            continue
        op, sources = a.formula
        for source in sources:
            src = by_name.get(source)
            _require(
                src is not None and src.formula is None and src.type in FORMULA_TYPES[op],
                f"attribute '{a.logical_name}': formula source '{source}' must be another attribute of this entity,"
                f" not derived, of type {' or '.join(FORMULA_TYPES[op])}",
            )
    primary_name = data.get("primary_name")
    _require(primary_name in names, "primary_name must name one of the attributes")
    _require(
        next(a for a in attrs if a.logical_name == primary_name).type == "string",
        "primary_name must be a string attribute",
    )
    ownership = data.get("ownership", "user")
    _require(ownership in OWNERSHIPS, f"ownership must be one of {', '.join(OWNERSHIPS)}")
    entity_set = data.get("entity_set") or f"{name}s"
    _require(isinstance(entity_set, str) and bool(NAME_RE.match(entity_set)), "entity_set must be a simple name")
    commands = data.get("offline_commands", ["create", "read", "update", "delete"])
    _require(
        isinstance(commands, list) and set(commands) <= {"create", "read", "update", "delete"},
        "a custom entity's offline_commands are drawn from create, read, update, delete",
    )
    all_attrs = [
        Attribute(
            primary_id, "uniqueidentifier", display_name=f"{data.get('display_name') or name} Id", read_only=True
        ),
        *attrs,
    ]
    column_names = set(names) | {primary_id}
    views = []
    for i, v in enumerate(data.get("views") or []):
        _require(isinstance(v, dict) and isinstance(v.get("name"), str), f"view #{i + 1} needs a name")
        cols = v.get("columns", [primary_name])
        _require(
            isinstance(cols, list) and all(c in column_names for c in cols),
            f"view '{v['name']}': every column must be an attribute",
        )
        views.append(
            View(
                id=f"{name}-{i + 1}",
                name=v["name"],
                columns=tuple(cols),
                filter=str(v.get("filter", "")),
                orderby=str(v.get("orderby", f"{primary_name} asc")),
            )
        )
    if not views:
        views = [
            View(
                f"{name}-1",
                f"All {data.get('display_collection_name') or name}",
                (primary_name,),
                "",
                f"{primary_name} asc",
            ),
            View(
                f"{name}-2",
                f"Recent {data.get('display_collection_name') or name}",
                (primary_name,),
                "",
                "modifiedon desc",
            ),
        ]
    form: list[tuple[str, tuple[str, ...]]] = []
    for i, s in enumerate(data.get("form") or []):
        _require(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("fields"), list),
            f"form section #{i + 1} needs a name and a fields list",
        )
        bad = [f for f in s["fields"] if f not in names]
        _require(not bad, f"form section '{s['name']}': unknown fields {bad}")
        form.append((s["name"], tuple(s["fields"])))
    quick_find = data.get("quick_find") or [primary_name]
    _require(
        isinstance(quick_find, list) and all(q in names for q in quick_find),
        "quick_find must list attributes of the entity",
    )
    return Entity(
        logical_name=name,
        display_name=str(data.get("display_name") or name),
        display_collection_name=str(data.get("display_collection_name") or data.get("display_name") or name),
        entity_set=entity_set,
        primary_id=primary_id,
        primary_name=primary_name,
        ownership=ownership,
        attributes=tuple(all_attrs),
        views=tuple(views),
        form=tuple(form),
        quick_find=tuple(quick_find),
        offline_commands=tuple(commands),
        is_custom=True,
    )


def entity_to_definition(entity: Entity) -> dict[str, Any]:
    """The JSON definition of a custom entity, as stored (round-trips `entity_from_dict`)."""
    return {
        "logical_name": entity.logical_name,
        "display_name": entity.display_name,
        "display_collection_name": entity.display_collection_name,
        "entity_set": entity.entity_set,
        "primary_name": entity.primary_name,
        "ownership": entity.ownership,
        "attributes": [
            {
                k: v
                for k, v in {
                    "logical_name": a.logical_name,
                    "type": a.type,
                    "display_name": a.display_name,
                    "required": a.required,
                    "max_length": a.max_length,
                    "options": [{"value": o.value, "label": o.label} for o in a.options] or None,
                    "targets": list(a.targets) or None,
                    "format": a.format,
                    "min_value": a.min_value,
                    "max_value": a.max_value,
                    "formula": {"op": a.formula[0], "of": list(a.formula[1])} if a.formula else None,
                    "cascade": a.cascade if a.cascade != "clear" else None,
                    "autonumber": {"prefix": a.autonumber[0], "digits": a.autonumber[1]} if a.autonumber else None,
                }.items()
                if v is not None
            }
            for a in entity.attributes
            if a.logical_name != entity.primary_id
        ],
        "views": [
            {"name": v.name, "columns": list(v.columns), "filter": v.filter, "orderby": v.orderby} for v in entity.views
        ],
        "form": [{"name": n, "fields": list(f)} for n, f in entity.form],
        "quick_find": list(entity.quick_find),
        "offline_commands": list(entity.offline_commands),
    }
