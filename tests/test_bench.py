"""`outpost bench` runs end to end at a tiny size (a smoke test: no figure is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def bench(tmp_path: Path, *args: str) -> dict[str, float]:
    """Run `outpost bench` at a tiny size; the figures it wrote, by name."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--records", "200", "--json", str(out), *args])
    assert result.exit_code == 0, result.output
    return {r["name"]: r["value"] for r in json.loads(out.read_text())["rows"]}


def test_the_connections_benchmark_holds_idle_sockets_on_outpost_serve_and_reports_memory(tmp_path: Path) -> None:
    rows = bench(tmp_path, "--only", "connections", "--connections", "25")
    assert rows["idle sockets held, one process"] == 25
    assert rows["memory per connection"] > 0
    assert rows["GET /healthz with all open p50"] > 0


def test_the_replay_benchmark_reports_socket_and_http_rates_per_database(tmp_path: Path) -> None:
    rows = bench(tmp_path, "--only", "replay")
    for way in ("socket, batches of 100", "socket, one op a frame", "HTTP, one op a request"):
        assert rows[f"replay sqlite, {way}"] > 0
    assert rows["replay sqlite, socket batches vs HTTP"] > 0
    for what in ("creates", "updates"):
        assert rows[f"replay sqlite, server side, {what}"] > 0
        assert 0 < rows[f"replay sqlite, SQL statements per op, {what}"] < 1  # frames of 100: a few per frame
    # PostgreSQL's rows are there when a server answers (CI provides one); the suite skips them otherwise.
    assert {k for k in rows if "postgresql" in k} in (
        set(),
        {k.replace("sqlite", "postgresql") for k in rows if "sqlite" in k},
    )


def test_the_push_benchmark_reaches_49_devices(tmp_path: Path) -> None:
    rows = bench(tmp_path, "--only", "push")
    assert rows["live push to 49 devices p50"] > 0
    assert rows["live push to 49 devices p95"] >= rows["live push to 49 devices p50"]


def test_an_unknown_benchmark_is_refused() -> None:
    result = CliRunner().invoke(main, ["bench", "--only", "nosuch"])
    assert result.exit_code == 2
    assert "unknown benchmark" in result.output


def signin_rows(tmp_path: Path, seconds: str) -> dict[str, float]:
    out = tmp_path / "bench.json"
    args = ["bench", "--records", "200", "--json", str(out), "--only", "signin", "--seconds", seconds]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "target p90 <= 100 ms" in result.output  # each flood's figure is printed beside its target
    return {r["name"]: r["value"] for r in json.loads(out.read_text())["rows"]}


def test_the_signin_benchmark_measures_writers_with_and_without_a_flood_of_valid_sign_ins(tmp_path: Path) -> None:
    rows = signin_rows(tmp_path, "2")
    for label in ("no sign-ins", "8 threads signing in", "8 threads signing in, limits off"):
        assert rows[f"writes, {label}, p50"] > 0
        assert rows[f"writes, {label}, max"] >= rows[f"writes, {label}, p90"] >= rows[f"writes, {label}, p50"]
    assert rows["sign-ins, 8 threads signing in, limits off, accepted"] > 0  # the flood really signed in
    assert rows["writes, 8 threads signing in, failed"] == 0


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="full length: select it with -m slow")
def test_the_signin_benchmark_at_full_length(tmp_path: Path) -> None:
    """60 s a phase, as the README's figures were measured (`-m slow`)."""
    rows = signin_rows(tmp_path, "60")
    assert rows["writes, 8 threads signing in, p50"] > 0
    assert rows["writes, 8 threads signing in, failed"] == 0  # before issue 17, writes failed: database is locked


def test_the_storm_benchmark_restarts_the_server_under_its_devices_and_times_their_return(tmp_path: Path) -> None:
    rows = bench(tmp_path, "--only", "storm", "--connections", "20")
    assert rows["devices, each its own salesperson"] == 20
    for mode in ("at once", "phone's jitter"):
        assert rows[f"storm {mode}: closed with 1012"] == 20  # SIGTERM tells every phone to come back later
        assert rows[f"storm {mode}: until the last is caught up"] > 0
        assert rows[f"storm {mode}: GET /healthz p95"] >= rows[f"storm {mode}: GET /healthz p50"] > 0
