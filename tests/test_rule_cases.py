"""The server against the rule case table (tests/cases/rules/*.json): validation of declared
attributes, state moves and derived values. The device runs the same table in Chromium
(tests/e2e/test_rule_cases_js.py); both must give exactly the values and messages written there."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from pathlib import Path
from typing import Any

import pytest

from webapp.crm import records, ruledata
from webapp.crm.entities import SYSTEM_ENTITIES, SYSTEM_ENTITY_NAMES
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Entity, entity_from_dict
from webapp.crm.validation import parse_payload

CASES = Path(__file__).parent / "cases" / "rules"
VALUES = json.loads((CASES / "values.json").read_text())
STATES = json.loads((CASES / "states.json").read_text())
DERIVED = json.loads((CASES / "derived.json").read_text())
MONEY = json.loads((CASES / "money.json").read_text())
SYSTEM = {e.logical_name: e for e in SYSTEM_ENTITIES}
BY_SET = {e.entity_set: e for e in SYSTEM_ENTITIES}


def entity_for_set(name: str) -> Entity:
    """A system entity by its set name (what a bind names), as the API resolves it."""
    return BY_SET[name]


def as_json(value: Any) -> Any:
    """A parsed value as the Web API writes it back (numbers, ISO dates, UTC datetimes)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def outcome(error: ValidationFailed) -> dict[str, Any]:
    """A refusal as the case table writes it; the leading field is the first bad one by name."""
    assert error.details is not None and error.field == min(error.details), error.to_dict()
    assert error.message.endswith(error.details[error.field][0])
    return {"errors": error.details}


@pytest.mark.parametrize("case", VALUES["cases"], ids=[c["name"] for c in VALUES["cases"]])
def test_the_server_validates_a_declared_entity_exactly_as_the_case_table_says(case: dict[str, Any]) -> None:
    entity = entity_from_dict(VALUES["entity"], set(SYSTEM_ENTITY_NAMES))
    try:
        values, _, _ = parse_payload(entity, case["payload"], entity_for_set, case["creating"])
    except ValidationFailed as exc:
        got = outcome(exc)
    else:
        got = {"values": {k: as_json(v) for k, v in values.items()}}
    expected = {k: case[k] for k in ("values", "errors") if k in case}
    assert got == expected


@pytest.mark.parametrize("case", STATES["cases"], ids=[c["name"] for c in STATES["cases"]])
def test_the_server_moves_states_exactly_as_the_case_table_says(case: dict[str, Any]) -> None:
    entity = SYSTEM[case["entity"]]
    current, given = case["current"], case["given"]
    actor = records.Actor("org", None, None)
    try:
        records.check_state_move(entity, None if current is None else current["statecode"], given)
        if current is None:
            merged = records.new_values(actor, entity, given)[0]
        else:
            merged = {**current, **records.changed_values(entity, current, given)[0]}
    except ValidationFailed as exc:
        got = outcome(exc)
    else:
        got = {"result": {k: merged[k] for k in ("statecode", "statuscode")}}
    expected = {k: case[k] for k in ("result", "errors") if k in case}
    assert got == expected


@pytest.mark.parametrize("case", DERIVED["cases"], ids=[c["name"] for c in DERIVED["cases"]])
def test_the_server_derives_values_exactly_as_the_case_table_says(case: dict[str, Any]) -> None:
    if "entity" in case:
        entity = SYSTEM[case["entity"]]
    else:
        entity = entity_from_dict(DERIVED["entity"], set(SYSTEM_ENTITY_NAMES))
    # Numbers reach the rules as the Web API parses them: decimals.
    record = {k: decimal.Decimal(str(v)) if isinstance(v, int | float) else v for k, v in case["record"].items()}
    got = {k: as_json(v) for k, v in ruledata.derive(entity.attributes, record).items()}
    assert got == case["derived"]


@pytest.mark.parametrize("case", MONEY["cases"], ids=[c["name"] for c in MONEY["cases"]])
def test_the_server_shows_money_exactly_as_the_case_table_says(case: dict[str, Any]) -> None:
    entity, name = MONEY["rule_of"]
    published = SYSTEM[entity].attribute_map[name].to_dict()["rules"]
    rule = next(r for r in published if r["check"] == "places")
    assert ruledata.format_money(case["value"], case["symbol"], rule) == case["shown"]


def test_a_formula_is_refused_unless_its_sources_are_attributes_of_the_entity_it_can_compute_from() -> None:
    from webapp.crm.metadata import MetadataError

    def definition(**formula: Any) -> dict[str, Any]:
        attrs = [dict(a) for a in DERIVED["entity"]["attributes"]]
        next(a for a in attrs if a["logical_name"] == "new_cost")["formula"] = formula
        return {**DERIVED["entity"], "attributes": attrs}

    for formula, says in [
        ({"op": "product", "of": ["new_hours", "nosuch"]}, "formula source 'nosuch'"),
        ({"op": "product", "of": ["new_hours", "new_given"]}, "formula source 'new_given'"),
        ({"op": "product", "of": ["new_hours", "new_pieces"]}, "formula source 'new_pieces'"),
        ({"op": "sum", "of": ["new_hours", "new_rate"]}, "op one of join, product"),
        ({"op": "join", "of": ["new_given", "new_family"]}, "a join formula makes a string or memo value"),
        ({"op": "product", "of": ["new_hours"]}, "at least two attribute names"),
    ]:
        with pytest.raises(MetadataError, match=re.escape(says)):
            entity_from_dict(definition(**formula), set(SYSTEM_ENTITY_NAMES))
