"""The scope checksum on the server side against the shared case table (the device's side:
tests/e2e/test_scope_checksum_js.py runs the same table through webapp/static/js/scope.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webapp.sync import checksum

CASES = json.loads((Path(__file__).parent / "cases" / "scope_checksum.json").read_text())


@pytest.mark.parametrize("case", CASES["summaries"], ids=[c["name"] for c in CASES["summaries"]])
def test_a_set_of_ids_is_summarised_as_the_table_says(case: dict[str, Any]) -> None:
    assert checksum.summarise(case["ids"], case["depth"]) == case["summary"]


@pytest.mark.parametrize("case", CASES["depths"], ids=[str(c["count"]) for c in CASES["depths"]])
def test_the_bucket_depth_follows_the_count(case: dict[str, int]) -> None:
    assert checksum.depth_for(case["count"]) == case["depth"]


def test_the_digest_is_sha256_of_the_sorted_ids_joined_by_newlines() -> None:
    case = CASES["digest_of_a_and_b"]  # computed with `printf 'a\nb' | sha256sum`
    assert checksum.digest(case["ids"]) == case["digest"]


@pytest.mark.parametrize("case", CASES["answers"], ids=[c["name"] for c in CASES["answers"]])
def test_an_answer_in_the_table_is_what_the_server_checks_and_settles_the_device(case: dict[str, Any]) -> None:
    """Each `answers` case (the device's side: tests/e2e/test_scope_checksum_js.py): its check is
    what the server sends for `server_ids`, and the device that drops `drop` and sends `frames`
    ends up holding exactly `server_ids` once the server answers as docs/protocol.md says."""
    held = {entity: set(ids) for entity, ids in case["held"].items()}
    for entity, check in case["check"]["entities"].items():
        scope = case["server_ids"][entity]
        summary = checksum.summarise(scope, check["depth"])
        if check["complete"]:
            assert check["buckets"] == summary
        else:
            assert check["buckets"].items() <= summary.items()
    for entity, rid in case["drop"]:
        assert (
            case["check"]["entities"][entity]["buckets"].get(rid[: case["check"]["entities"][entity]["depth"]]) is None
        )
        held[entity].discard(rid)
    assert [f["done"] for f in case["frames"]] == [False] * (len(case["frames"]) - 1) + [True]
    for frame in case["frames"]:
        for entity, buckets in frame["held"].items():
            scope = set(case["server_ids"][entity])
            depth = case["check"]["entities"][entity]["depth"]
            for prefix, ids in buckets.items():
                assert set(ids) == {i for i in held[entity] if i[:depth] == prefix}, "a bucket is sent whole"
                held[entity] -= set(ids) - scope  # removes: only ids sent, out of scope
                held[entity] |= {i for i in scope if i[:depth] == prefix}  # upserts: what it lacks there
    for entity, check in case["check"]["entities"].items():
        if check["complete"]:
            assert held[entity] == set(case["server_ids"][entity]), entity
        else:
            listed = set(check["buckets"])
            mine = {i for i in held[entity] if i[: check["depth"]] in listed}
            assert mine == {i for i in case["server_ids"][entity] if i[: check["depth"]] in listed}, entity
