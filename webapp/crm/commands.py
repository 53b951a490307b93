"""The business commands (PROTOCOL.md §4) on the server: qualify and disqualify a lead, convert
an activity to a case, close an opportunity as won or lost.

What each command checks and writes is data (webapp/crm/commanddata.py, published in the
metadata document), interpreted by webapp/crm/commandrules.py here and by
static/js/commandrules.js on the device. This module only runs that interpretation: it reads
the records the interpreter asks for and writes its effects through a `CommandIO` the caller
supplies (the security layer binds it to the signed-in user), so every record a command creates
or changes passes the same privilege checks as any other write, and the caller's transaction
makes the whole command all or nothing. New records take the ids the device minted (`new_ids`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.crm import commandrules
from webapp.crm.commanddata import COMMANDS, declaration
from webapp.crm.errors import NotAllowed

DECLARATION = declaration()
COMMAND_ENTITY = {name: decl["entity"] for name, decl in COMMANDS.items()}
# The keys of new_ids: the entities some command creates.
COMMAND_NEW_ENTITIES = tuple(dict.fromkeys(e for decl in COMMANDS.values() for e in commandrules.made_entities(decl)))


class CommandIO(Protocol):
    """How a command reads and writes: bound by the caller to a user and a transaction."""

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        """A readable record's columns (NotFound otherwise)."""

    def create(self, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Create a record from a Web API payload; returns its columns."""

    def update(self, entity: str, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Update a record from a Web API payload; returns its columns."""

    def metadata(self, entity: str) -> Mapping[str, Any]:
        """The entity's metadata as published in GET /api/metadata."""


@dataclass
class Outcome:
    """What a command created and updated, in order."""

    created: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updated: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """A stored value as the Web API writes it (what the device holds of it)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def neutral(meta: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the interpreter reads records: a lookup as `{entity, id}` (its type from
    `<attr>__type` when it may point at several entities), other values as JSON has them."""
    out: dict[str, Any] = {}
    for attr in meta["attributes"]:
        name = attr["logical_name"]
        if attr["type"] != "lookup":
            out[name] = _plain(row.get(name))
            continue
        targets = attr["targets"]
        target = row.get(f"{name}__type") if len(targets) > 1 else targets[0]
        out[name] = {"entity": target, "id": str(row[name])} if row.get(name) and target else None
    return out


def plan(
    io: CommandIO,
    name: str,
    args: Any,
    entity_commands: Mapping[str, tuple[str, ...]],
    today: str | None = None,
    mint: Callable[[], str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What a command will write (its effects, in order) and its arguments as sent, having
    read what it needs; refused where the entity's command set does not allow it. `today`
    (ISO, UTC by default) and `mint` (new ids) are the caller's to fix in tests."""
    decl = commandrules.command(DECLARATION, name)
    entity = decl["entity"]
    if name not in entity_commands.get(entity, ()):
        raise commandrules.refuse(DECLARATION["messages"]["not_available"], cls=NotAllowed, name=name, entity=entity)
    values = commandrules.check_args(DECLARATION, decl, args, io.metadata(entity))
    loaded: dict[str, Any] = {}
    while (need := commandrules.next_load(decl, values, loaded)) is not None:
        key, target, record_id = need
        loaded[key] = neutral(io.metadata(target), io.get(target, record_id))
    return commandrules.plan(
        decl,
        values,
        loaded,
        io.metadata,
        mint or (lambda: str(uuid.uuid4())),
        today or dt.datetime.now(dt.UTC).date().isoformat(),
        args,
    )


def run(io: CommandIO, name: str, args: Any, entity_commands: Mapping[str, tuple[str, ...]]) -> Outcome:
    """Run a command by name: plan it, then write its effects in order as the user."""
    effects, _ = plan(io, name, args, entity_commands)
    out = Outcome()
    for effect in effects:
        kind, target, record_id, changes = effect["kind"], effect["entity"], effect["id"], effect["changes"]
        if kind == "create":
            row = io.create(target, {**changes, io.metadata(target)["primary_id"]: record_id})
            out.created.append((target, row))
        else:
            out.updated.append((target, io.update(target, record_id, changes)))
    return out


def subject_id(name: str, args: Any) -> str | None:
    """The id of the record a command is about (its declared subject argument)."""
    value = args.get(COMMANDS[name]["subject"]) if isinstance(args, dict) else None
    return value if isinstance(value, str) else None
