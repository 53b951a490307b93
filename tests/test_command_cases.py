"""The server against the command case table (tests/cases/rules/commands.json): the business
commands' declaration as webapp/crm/commands.py runs it (reads, refusals and the effects it
plans, before any write). The device runs the same table in Chromium
(tests/e2e/test_command_cases_js.py); both must give exactly what is written there.

The table's records are held as the Web API writes them; `TableIO` turns them into stored rows
(a lookup's id under its name and its type under `<name>__type`, money as Decimal), as the
database gives them to a command."""

from __future__ import annotations

import copy
import decimal
import json
import re
from pathlib import Path
from typing import Any

import pytest

from webapp.crm import commands
from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.errors import CrmError, NotFound

TABLE = json.loads((Path(__file__).parent / "cases" / "rules" / "commands.json").read_text())
SYSTEM = {e.logical_name: e for e in SYSTEM_ENTITIES}
OFFERED = {e.logical_name: e.offline_commands for e in SYSTEM_ENTITIES}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOOKUP = re.compile(r"^_(\w+)_value(@Microsoft\.Dynamics\.CRM\.lookuplogicalname)?$")


class TableIO:
    """The table's records as a command reads them on the server; it never writes."""

    def __init__(self, records: dict[str, list[dict[str, Any]]]) -> None:
        self.records = records

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        key = SYSTEM[entity].primary_id
        found = next((r for r in self.records.get(entity, []) if r[key] == record_id), None)
        if found is None:
            raise NotFound(f"No {entity} {record_id} in the table.")
        row: dict[str, Any] = {}
        for name, value in found.items():
            lookup = LOOKUP.match(name)
            if lookup:
                row[lookup.group(1) + ("__type" if lookup.group(2) else "")] = value
            elif (attr := SYSTEM[entity].attribute(name)) is not None and attr.type in ("money", "decimal"):
                row[name] = None if value is None else decimal.Decimal(str(value))
            else:
                row[name] = value
        return row

    def metadata(self, entity: str) -> dict[str, Any]:
        return SYSTEM[entity].to_dict()

    def create(self, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("planning writes nothing")

    def update(self, entity: str, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("planning writes nothing")


def as_table(case: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """An answer as the case table writes it: each minted id as new:<entity>; a failed read by
    its code only; `sent` where the case gives it."""
    if "error" in got:
        error = got["error"]
        return {"error": {"code": error["code"]} if set(case["error"]) == {"code"} else error}
    given = (case["args"].get("new_ids") or {}) if isinstance(case["args"], dict) else {}
    text = json.dumps({"effects": got["effects"], "sent": got["sent"]})
    for effect in got["effects"]:
        if effect["kind"] == "create" and effect["id"] not in given.values():
            assert UUID.match(effect["id"]), effect
            text = text.replace(effect["id"], f"new:{effect['entity']}")
    out = json.loads(text)
    if "sent" not in case:
        del out["sent"]
    return out  # type: ignore[no-any-return]


def expected(case: dict[str, Any]) -> dict[str, Any]:
    return {k: case[k] for k in ("effects", "sent", "error") if k in case}


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_the_server_runs_each_command_exactly_as_the_case_table_says(case: dict[str, Any]) -> None:
    io = TableIO(copy.deepcopy(TABLE["records"]))
    args = copy.deepcopy(case["args"])
    try:
        effects, sent = commands.plan(io, case["command"], args, OFFERED, today=TABLE["today"])
    except CrmError as exc:
        got: dict[str, Any] = {"error": exc.to_dict()}
    else:
        got = {"effects": effects, "sent": sent}
    assert as_table(case, got) == expected(case)


def test_the_table_has_a_case_for_every_message_the_declaration_gives() -> None:
    """Every refusal declared (common and per command) is met by some case, word for word up
    to its filled-in parts."""
    from webapp.crm.commanddata import declaration

    doc = declaration()
    said = [c["error"].get("message", "") for c in TABLE["cases"] if "error" in c]
    templates = [m["message"] for m in doc["messages"].values() if m is not doc["messages"]["not_available"]]
    for decl in doc["commands"].values():
        templates += [s["message"] for s in decl["args"] if "message" in s]
        templates += [decl["require"]["message"]] if "require" in decl else []
        find = decl.get("find", {})
        templates += [r["message"] for r in find.get("refuse", {}).values()]
        templates += [find["missing"]["message"]] if "missing" in find else []
    for template in templates:
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{\w+\\\}", ".+", pattern)
        assert any(re.fullmatch(pattern, m) for m in said), f"no case says {template!r}"
    assert {c["command"] for c in TABLE["cases"]} >= set(doc["commands"]), "a command has no case"
