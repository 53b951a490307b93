"""The device against the command case table (tests/cases/rules/commands.json), in a real
Chromium page: webapp/static/js/commands.js `plan` with commandrules.js, on the metadata
document the live server publishes (its `commands` declaration and its entities), over the
table's records held as the device store holds them. The server runs the same table in
tests/test_command_cases.py; both must give exactly what is written there."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from playwright.sync_api import Page

from tests.test_command_cases import TABLE, as_table, expected

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

RUN = """
async ({cases, doc, records, today}) => {
  const {plan} = await import('/static/js/commands.js');
  const {DataError} = await import('/static/js/data.js');
  const entities = Object.fromEntries(doc.entities.map((e) => [e.logical_name, e]));
  const store = {
    customizations: doc,
    entity(name) { return entities[name]; },
    async get(entity, id) {
      const key = entities[entity].primary_id;
      return (records[entity] || []).find((r) => r[key] === id) ?? null;
    },
  };
  const out = [];
  for (const c of cases) {
    try {
      const {effects, args} = await plan(store, c.command, structuredClone(c.args), today);
      out.push({effects, sent: args});
    } catch (e) {
      if (!(e instanceof DataError)) { out.push({thrown: String(e)}); continue; }
      const error = {code: e.errorCode, message: e.message};
      if (e.field !== undefined) error.field = e.field;
      if (e.details !== undefined) error.details = e.details;
      out.push({error});
    }
  }
  return out;
}
"""


def test_the_device_runs_each_command_exactly_as_the_case_table_says(live_server: LiveServer, phone_page: Page) -> None:
    resp = live_server.client("admin").get("/api/metadata")
    assert resp.status == 200, resp.json
    doc: dict[str, Any] = resp.json
    assert "commands" in doc, "the metadata document does not declare the commands"
    phone_page.goto("/")
    answers = phone_page.evaluate(
        RUN, {"cases": TABLE["cases"], "doc": doc, "records": copy.deepcopy(TABLE["records"]), "today": TABLE["today"]}
    )
    wrong = []
    for case, answer in zip(TABLE["cases"], answers, strict=True):
        got = answer if "thrown" in answer else as_table(case, answer)
        if got != expected(case):
            wrong.append((case["name"], got, expected(case)))
    assert not wrong, "\n".join(f"{name}: device {got} != table {want}" for name, got, want in wrong)
