"""The scope checksum on the device side: webapp/static/js/scope.js in a real Chromium page
against the same case table as the server (tests/cases/scope_checksum.json; the server's side
is tests/test_scope_checksum.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import Page

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

CASES = json.loads((Path(__file__).parent.parent / "cases" / "scope_checksum.json").read_text())

RUN_CASES = """
async (cases) => {
  const scope = await import('/static/js/scope.js');
  const summaries = [];
  for (const c of cases.summaries) summaries.push(await scope.summarise(c.ids, c.depth));
  const depths = cases.depths.map((c) => scope.depthFor(c.count));
  const digest = await scope.digest(cases.digest_of_a_and_b.ids);
  return {summaries, depths, digest};
}
"""


def test_the_device_summarises_ids_exactly_as_the_case_table_says(live_server: LiveServer, phone_page: Page) -> None:
    phone_page.goto("/")
    got: dict[str, Any] = phone_page.evaluate(RUN_CASES, CASES)
    for case, summary in zip(CASES["summaries"], got["summaries"], strict=True):
        assert summary == case["summary"], case["name"]
    assert got["depths"] == [c["depth"] for c in CASES["depths"]]
    assert got["digest"] == CASES["digest_of_a_and_b"]["digest"]
