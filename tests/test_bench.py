"""`outpost bench` runs end to end at a tiny size (a smoke test: no figure is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from webapp.cli import main


def test_outpost_bench_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--records", "200", "--json", str(out), "--only", "security"])
    assert result.exit_code == 0, result.output
    assert "first 50 by name, salesperson p50" in result.output
    doc = json.loads(out.read_text())
    assert doc["records"] == 200
    names = {r["name"] for r in doc["rows"]}
    assert {"load accounts", "first 50 by name, scope cost", "quick find 'ca', administrator p50"} <= names
    assert all(r["value"] > 0 for r in doc["rows"])
