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
