"""The business commands' declaration (webapp/crm/commanddata.py, published as the metadata
document's `commands`) interpreted for the server; webapp/static/js/commandrules.js is the
same interpreter on the phone, function for function, so both refuse with the same words and
plan the same effects (tests/cases/rules/commands.json holds the cases both must pass).

Pure: records arrive already read, in one neutral form (a plain value as JSON has it; a lookup
as `{"entity", "id"}`), and entity metadata as published. The caller reads what `next_load`
asks for, until it asks for nothing, then writes the effects `plan` returns. Nothing here names
an entity, a field or a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from webapp.crm.errors import BadRequest, CrmError, ValidationFailed

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

Meta = Callable[[str], Mapping[str, Any]]  # an entity's published metadata, by logical name
Ref = dict[str, str]  # a record: {"entity", "id"}


def fill(template: str, **args: Any) -> str:
    """`template` with each `{name}` replaced by args[name] (the phone fills the same way)."""
    out = template
    for key, value in args.items():
        out = out.replace("{" + key + "}", str(value))
    return out


def refuse(
    spec: Mapping[str, Any], field: str | None = None, cls: type[CrmError] = ValidationFailed, **args: Any
) -> CrmError:
    """The refusal a declared `{message, detail?}` gives, blaming `field`."""
    message = fill(spec["message"], **args)
    details = {field: [fill(spec["detail"], **args)]} if field is not None and "detail" in spec else None
    return cls(message, field=field, details=details)


def command(doc: Mapping[str, Any], name: Any) -> Mapping[str, Any]:
    """The declaration of the command `name` (the document's objects travel with sorted keys,
    so the commands are listed sorted)."""
    commands = doc["commands"]
    if not isinstance(name, str) or name not in commands:
        raise refuse(doc["messages"]["unknown_command"], cls=BadRequest, name=name, names=", ".join(sorted(commands)))
    return commands[name]  # type: ignore[no-any-return]


def holds(condition: Mapping[str, Any] | None, values: Mapping[str, Any]) -> bool:
    """`{"arg": k}`: the argument is true; `{"arg": k, "is": v}`: it equals v; none: always."""
    if condition is None:
        return True
    value = values.get(condition["arg"])
    return value is True if "is" not in condition else bool(value == condition["is"])


def made_entities(decl: Mapping[str, Any]) -> list[str]:
    """The entities a command may create: the keys its `new_ids` may carry."""
    return [r["entity"] for r in decl.get("records", [])]


def _statuses(meta: Mapping[str, Any], state: int) -> list[Mapping[str, Any]]:
    status = next(a for a in meta["attributes"] if a["logical_name"] == "statuscode")
    return [o for o in status["options"] if o.get("state") == state]


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


def _argument(
    doc: Mapping[str, Any],
    decl: Mapping[str, Any],
    key: str,
    spec: Mapping[str, Any],
    raw: Any,
    meta: Mapping[str, Any],
) -> Any:
    """One argument's value as the command uses it, or its refusal."""
    messages, kind = doc["messages"], spec["type"]
    if kind == "id":
        if raw is None and not spec.get("required"):
            return None
        if not _is_id(raw):
            raise refuse(messages["id"], key, key=key)
        return raw
    if kind == "boolean":
        if raw is None:
            return False
        if not isinstance(raw, bool):
            raise refuse(messages["boolean"], key, key=key)
        return raw
    if kind == "choice":
        if not isinstance(raw, str) or raw not in spec["values"]:
            raise refuse(spec, key)
        return raw
    if kind == "status":
        options = _statuses(meta, spec["state"])
        value = spec.get("default") if raw is None else raw
        if isinstance(value, str) and spec.get("labels"):
            value = next((o["value"] for o in options if o["label"].lower() == value.lower()), value)
        number = None  # 4.0 is 4, as on the phone; true is no status
        if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
            number = int(value)
        if number is None or number not in [o["value"] for o in options]:
            choices = spec["join"].join(fill(spec["choice"], value=o["value"], label=o["label"]) for o in options)
            raise refuse(spec, key, choices=choices)
        return number
    if kind == "new_ids":
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise refuse(messages["new_ids"], key)
        ids = {}
        for entity in made_entities(decl):
            if raw.get(entity) is None:
                continue
            if not _is_id(raw[entity]):
                raise refuse(messages["new_id"], key, key=entity)
            ids[entity] = raw[entity]
        return ids
    if kind == "value":
        return raw
    raise ValueError(f"unknown argument type {kind!r}")


def check_args(doc: Mapping[str, Any], decl: Mapping[str, Any], args: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments' values (defaults in, labels read as values), refusing the first bad one;
    `meta` is the subject entity's metadata."""
    if not isinstance(args, dict):
        raise refuse(doc["messages"]["not_an_object"])
    unknown = sorted(set(args) - {spec["name"] for spec in decl["args"]})
    if unknown:
        spec = doc["messages"]["unknown_argument"]
        error = refuse(spec, unknown[0], key=unknown[0])
        error.details = {k: [spec["detail"]] for k in unknown}
        raise error
    values: dict[str, Any] = {}
    for spec in decl["args"]:
        key = spec["name"]
        if holds(spec.get("when"), values):
            values[key] = _argument(doc, decl, key, spec, args.get(key), meta)
    return values


def _via(find: Mapping[str, Any]) -> str:
    return f"{find['as']}:via"


def next_load(
    decl: Mapping[str, Any], values: Mapping[str, Any], loaded: Mapping[str, Any]
) -> tuple[str, str, str] | None:
    """The next record to read, as (key in `loaded`, entity, id), or None when all are read;
    refuses as soon as a record read breaks what the command requires."""
    if "subject" not in loaded:
        return "subject", decl["entity"], values[decl["subject"]]
    subject = loaded["subject"]
    require = decl.get("require")
    if require is not None and subject.get(require["field"]) != require["is"]:
        raise ValidationFailed(
            require["message"], field=require["field"], details={require["field"]: [require["message"]]}
        )
    for record in decl.get("records", []):
        existing = record.get("existing")
        if existing and values.get(existing) and record["as"] not in loaded:
            return record["as"], record["entity"], values[existing]
    find = decl.get("find")
    if find is not None:
        target = subject.get(find["from"])
        if target is not None and target["entity"] in find.get("refuse", {}):
            raise refuse(find["refuse"][target["entity"]], find["from"])
        if target is not None and target["entity"] in find.get("through", {}) and _via(find) not in loaded:
            return _via(find), target["entity"], target["id"]
    return None


def _found(find: Mapping[str, Any], subject: Mapping[str, Any], loaded: Mapping[str, Any]) -> Ref:
    """The record a lookup of the subject leads to: itself when accepted, else one hop on."""
    target = subject.get(find["from"])
    found = None
    if target is not None and target["entity"] in find["accept"]:
        found = target
    elif target is not None and target["entity"] in find.get("through", {}):
        found = loaded[_via(find)].get(find["through"][target["entity"]])
    if found is None:
        raise refuse(find["missing"], find["from"])
    return found  # type: ignore[no-any-return]


def evaluate(
    expr: Mapping[str, Any], values: Mapping[str, Any], subject: Mapping[str, Any], refs: Mapping[str, Any], today: str
) -> Any:
    """An expression's value (commanddata.py lists the forms)."""
    if "value" in expr:
        return expr["value"]
    if "arg" in expr:
        return values.get(expr["arg"])
    if "field" in expr:
        return subject.get(expr["field"])
    if "ref" in expr:
        return refs.get(expr["ref"])
    if "today" in expr:
        return today
    if "first" in expr:
        found = [evaluate(e, values, subject, refs, today) for e in expr["first"]]
        return next((v for v in found if v is not None and v != ""), found[-1])
    raise ValueError(f"unknown expression {dict(expr)!r}")


def _write(meta: Meta, entity: str, name: str, value: Any, skip_null: bool, changes: dict[str, Any]) -> None:
    """Set `name` of a record of `entity` to `value` in a Web API payload (a lookup as a bind)."""
    attr = next((a for a in meta(entity)["attributes"] if a["logical_name"] == name), None)
    if attr is None:
        raise ValueError(f"the command declaration sets '{name}', which {entity} does not have")
    if attr["type"] != "lookup":
        if value is not None or not skip_null:
            changes[name] = value
        return
    if value is None:
        return
    targets = attr["targets"]
    ref = {"entity": targets[0], "id": value} if isinstance(value, str) and len(targets) == 1 else value
    if not isinstance(ref, dict) or ref.get("entity") not in targets:
        raise ValueError(f"the command declaration sets lookup '{name}' of {entity} to {value!r}")
    key = f"{name}_{ref['entity']}@odata.bind" if len(targets) > 1 else f"{name}@odata.bind"
    changes[key] = f"/{meta(ref['entity'])['entity_set']}({ref['id']})"


def _changes(meta: Meta, entity: str, sets: Mapping[str, Any], scope: tuple[Any, ...], changes: dict[str, Any]) -> None:
    for name, expr in sets.items():
        _write(meta, entity, name, evaluate(expr, *scope), bool(expr.get("skip_null")), changes)


def plan(
    decl: Mapping[str, Any],
    values: Mapping[str, Any],
    loaded: Mapping[str, Any],
    meta: Meta,
    mint: Callable[[], str],
    today: str,
    args: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The command's effects, in order (`{kind, entity, id, changes}`), and the arguments to
    send (statuses given by label as their values, the ids minted for new records added)."""
    subject = loaded["subject"]
    refs: dict[str, Any] = {"subject": {"entity": decl["entity"], "id": values[decl["subject"]]}}
    if "find" in decl:
        refs[decl["find"]["as"]] = _found(decl["find"], subject, loaded)
    scope = (values, subject, refs, today)
    effects: list[dict[str, Any]] = []
    new_ids = dict(args.get("new_ids") or {})
    for record in decl.get("records", []):
        existing = record.get("existing")
        if existing and values.get(existing):
            refs[record["as"]] = {"entity": record["entity"], "id": values[existing]}
            continue
        if not holds(record.get("when"), values):
            refs[record["as"]] = None
            continue
        record_id = (values.get("new_ids") or {}).get(record["entity"]) or mint()
        new_ids[record["entity"]] = record_id
        changes: dict[str, Any] = {}
        _changes(meta, record["entity"], record["set"], scope, changes)
        effects.append({"kind": "create", "entity": record["entity"], "id": record_id, "changes": changes})
        refs[record["as"]] = {"entity": record["entity"], "id": record_id}
    update: dict[str, Any] = {}
    for part in decl["update"]:
        if holds(part.get("when"), values):
            _changes(meta, decl["entity"], part["set"], scope, update)
    effects.append({"kind": "update", "entity": decl["entity"], "id": refs["subject"]["id"], "changes": update})
    sent = dict(args)
    for spec in decl["args"]:
        if spec["type"] == "status" and spec.get("labels") and args.get(spec["name"]) is not None:
            sent[spec["name"]] = values[spec["name"]]
    if new_ids:
        sent["new_ids"] = new_ids
    return effects, sent
