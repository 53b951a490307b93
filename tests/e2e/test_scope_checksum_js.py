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


RUN_ANSWERS = """
async (cases) => {
  const scope = await import('/static/js/scope.js');
  const out = [];
  for (const c of cases) {
    const drop = [];
    const frames = [];
    await scope.answer(c.check, async (entity) => scope.heldFrom(c.held[entity] || []), {
      drop: (items) => { for (const i of items) drop.push([i.entity, i.id]); },
      send: (frame) => { frames.push(frame); },
    });
    drop.sort((a, b) => (a.join('|') < b.join('|') ? -1 : 1));
    out.push({drop, frames});
  }
  return out;
}
"""


def test_the_device_answers_each_check_exactly_as_the_case_table_says(
    live_server: LiveServer, phone_page: Page
) -> None:
    """The drops and `reconcile` frames of scope.js for each `answers` case (the server side of the
    same table: tests/test_scope_checksum.py)."""
    phone_page.goto("/")
    got: list[dict[str, Any]] = phone_page.evaluate(RUN_ANSWERS, CASES["answers"])
    for case, answer in zip(CASES["answers"], got, strict=True):
        assert answer["drop"] == case["drop"], case["name"]
        assert answer["frames"] == case["frames"], case["name"]


SPLIT = """
async () => {
  const scope = await import('/static/js/scope.js');
  const held = Array.from({length: 12000}, () => crypto.randomUUID());
  const inScope = held.slice(0, 11000);
  const check = {type: 'scope', check: 'big', cursor: 1, entities: {
    lead: {depth: 1, complete: true, refresh: true, buckets: await scope.summarise(inScope, 1)}}};
  const frames = [];
  await scope.answer(check, async () => scope.heldFrom(held), {drop: () => {}, send: (f) => { frames.push(f); }});
  const sizes = frames.map((f) => Object.values(f.held.lead || {}).reduce((n, ids) => n + ids.length, 0));
  const sent = frames.flatMap((f) => Object.values(f.held.lead || {}).flat());
  const seen = new Set(sent);
  return {sizes, done: frames.map((f) => f.done), sent: sent.length, distinct: seen.size,
          all: held.every((id) => seen.has(id))};
}
"""


def test_a_large_answer_is_split_into_frames_of_at_most_five_thousand_ids(
    live_server: LiveServer, phone_page: Page
) -> None:
    phone_page.goto("/")
    got = phone_page.evaluate(SPLIT)
    assert len(got["sizes"]) >= 3, got["sizes"]  # 12,000 ids: at least three frames
    assert max(got["sizes"]) <= 5000
    assert got["done"] == [False] * (len(got["sizes"]) - 1) + [True]
    assert got["sent"] == got["distinct"] == 12000 and got["all"]
