"""The device against the rule case table (tests/cases/rules/*.json), in a real Chromium page:
webapp/static/js/data.js and rules.js (with ruledata.js) on the metadata the live server
publishes. The server runs the same table in tests/test_rule_cases.py; the values and messages
must be exactly those written there, so the phone and the server agree word for word.

The table's custom entity is added to the running server with `outpost add-entity`, as an
administrator would: its rules reach the device from its declared attributes, with no code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import Page

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

CASES = Path(__file__).parent.parent / "cases" / "rules"
VALUES = json.loads((CASES / "values.json").read_text())
STATES = json.loads((CASES / "states.json").read_text())
DERIVED = json.loads((CASES / "derived.json").read_text())
MONEY = json.loads((CASES / "money.json").read_text())
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

RUN_VALUES = """
async ({cases, doc, entity}) => {
  const {Data, DataError} = await import('/static/js/data.js');
  const rules = await import('/static/js/rules.js');
  const entities = Object.fromEntries(doc.entities.map((e) => [e.logical_name, e]));
  const bySet = Object.fromEntries(doc.entities.map((e) => [e.entity_set, e]));
  const store = {entities, bySet, customizations: doc, parseBind(bind) { return rules.parseBind(this, bind); }};
  const data = new Data(store, {status: {offlineReady: true}});
  return cases.map((c) => {
    try {
      const out = data.validate(entities[entity], c.payload, c.creating);
      return {values: Object.fromEntries(Object.entries(out).filter(([k]) => !k.includes('@')))};
    } catch (e) {
      if (!(e instanceof DataError)) return {thrown: String(e)};
      const errors = e.details ?? {[e.field]: [e.message]};
      return {errors, field: e.field, message: e.message};
    }
  });
}
"""

RUN_STATES = """
async ({cases, doc}) => {
  const {checkState, DataError} = await import('/static/js/data.js');
  const {applyEffect} = await import('/static/js/rules.js');
  const entities = Object.fromEntries(doc.entities.map((e) => [e.logical_name, e]));
  const bySet = Object.fromEntries(doc.entities.map((e) => [e.entity_set, e]));
  const schema = {entities, bySet, user: {id: '3f2504e0-4f89-41d3-9a0c-0305e82c3301'}};
  const id = '1221b5a2-2155-441c-aff7-c0fcbbe8f88d';
  return cases.map((c) => {
    const meta = entities[c.entity];
    try {
      checkState(meta, c.current ? c.current.statecode : null, c.current ?? {}, c.given);
    } catch (e) {
      if (!(e instanceof DataError)) return {thrown: String(e)};
      return {errors: e.details, field: e.field, message: e.message};
    }
    const effect = {kind: c.current ? 'update' : 'create', entity: c.entity, id, changes: c.given};
    const view = applyEffect(schema, c.current ? {...c.current} : null, effect, {});
    return {result: {statecode: view.statecode, statuscode: view.statuscode}};
  });
}
"""


RUN_DERIVED = """
async ({cases, doc, entity}) => {
  const {derive} = await import('/static/js/ruledata.js');
  const entities = Object.fromEntries(doc.entities.map((e) => [e.logical_name, e]));
  return cases.map((c) => {
    const meta = entities[c.entity ?? entity];
    const v = {...c.record};
    derive(meta, v);
    return Object.fromEntries(Object.keys(c.derived).map((k) => [k, v[k] ?? null]));
  });
}
"""

RUN_MONEY = """
async ({table, doc}) => {
  const {formatMoney, ruleOf, showsAmount} = await import('/static/js/ruledata.js');
  const [entity, name] = table.rule_of;
  const meta = doc.entities.find((e) => e.logical_name === entity);
  const rule = ruleOf(meta.attributes.find((a) => a.logical_name === name), 'places');
  // What it shows; and whether the table's text is taken as still showing the value (a list
  // trusts a formatted value only then), but not for another amount.
  return table.cases.map((c) => [
    formatMoney(c.value, c.symbol, rule),
    showsAmount(c.shown, c.value, rule),
    showsAmount(c.shown, Number(c.value) + 1, rule),
  ]);
}
"""


def published(live_server: LiveServer) -> dict[str, Any]:
    """The customizations document the device downloads, with the tables' custom entities added
    to the running server by `outpost add-entity`."""
    env = {**os.environ, "DATABASE_URL": live_server.database_url}
    for table in (VALUES, DERIVED):
        definition = live_server.workdir / f"{table['entity']['logical_name']}.json"
        definition.write_text(json.dumps(table["entity"]))
        added = subprocess.run(
            [sys.executable, "-m", "webapp.cli", "add-entity", "--org", "contoso", str(definition)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
    resp = live_server.client("admin").get("/api/metadata")
    assert resp.status == 200, resp.json
    return resp.json  # type: ignore[no-any-return]


def refusal(got: dict[str, Any]) -> dict[str, Any]:
    """A refusal as the case table writes it, once its leading field and message are checked."""
    if "errors" not in got:
        return got
    errors = got["errors"]
    assert got["field"] == min(errors), got
    assert got["message"].endswith(errors[got["field"]][0]), got
    return {"errors": errors}


def test_the_device_validates_and_moves_states_exactly_as_the_case_tables_say(
    live_server: LiveServer, phone_page: Page
) -> None:
    doc = published(live_server)
    entity = VALUES["entity"]["logical_name"]
    assert any(e["logical_name"] == entity for e in doc["entities"]), "the custom entity is not published"
    phone_page.goto("/")

    got = phone_page.evaluate(RUN_VALUES, {"cases": VALUES["cases"], "doc": doc, "entity": entity})
    wrong = []
    for case, answer in zip(VALUES["cases"], got, strict=True):
        expected = {k: case[k] for k in ("values", "errors") if k in case}
        if refusal(answer) != expected:
            wrong.append((case["name"], answer, expected))
    got = phone_page.evaluate(RUN_STATES, {"cases": STATES["cases"], "doc": doc})
    for case, answer in zip(STATES["cases"], got, strict=True):
        expected = {k: case[k] for k in ("result", "errors") if k in case}
        if refusal(answer) != expected:
            wrong.append((case["name"], answer, expected))
    derived = DERIVED["entity"]["logical_name"]
    got = phone_page.evaluate(RUN_DERIVED, {"cases": DERIVED["cases"], "doc": doc, "entity": derived})
    for case, answer in zip(DERIVED["cases"], got, strict=True):
        if answer != case["derived"]:
            wrong.append((case["name"], answer, case["derived"]))
    got = phone_page.evaluate(RUN_MONEY, {"table": MONEY, "doc": doc})
    for case, (answer, shows, shows_another) in zip(MONEY["cases"], got, strict=True):
        if answer != case["shown"]:
            wrong.append((case["name"], answer, case["shown"]))
        if (shows, shows_another) != (True, False):
            wrong.append((case["name"], f"showsAmount {shows}/{shows_another}", "True/False"))
    assert not wrong, "\n".join(f"{name}: device {answer} != table {expected}" for name, answer, expected in wrong)
