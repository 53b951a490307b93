"""The benchmark suite behind `outpost bench`: figures and ratios, measured in one run.

Each benchmark module exposes `run(records, report)`; `report(name, value, unit, note)` adds
a row to the printed table (and the JSON file). Benchmarks build their own throw-away
databases under a temporary folder, so they never touch real data.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Report = Callable[[str, float, str, str], None]


@dataclass
class Row:
    """One measured figure."""

    benchmark: str
    name: str
    value: float
    unit: str
    note: str


def median_ms(samples: list[float]) -> float:
    """Median of samples given in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    """95th percentile of samples given in seconds, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


SUITES = ("security", "connections", "storm", "replay", "push", "device", "scope", "signin")


def run_suite(
    records: int,
    json_path: Path | None,
    only: list[str] | None = None,
    connections: int | None = None,
    seconds: float | None = None,
) -> list[Row]:
    """Run every benchmark (or those named in `only`), print the table, write JSON if asked.

    `connections`: idle sockets for the `connections` suite, devices for `storm` (default: from
    `records`);
    `seconds`: the length of each phase of the `signin` suite (default 60)."""
    from functools import partial

    from benchmarks import connections as conns
    from benchmarks import device, push, replay, scope, security, signin, storm

    suites: dict[str, Callable[[int, Report], None]] = {
        "security": security.run,
        "connections": partial(conns.run, connections=connections),
        "storm": partial(storm.run, devices=connections),
        "replay": replay.run,
        "push": push.run,
        "device": device.run,
        "scope": scope.run,
        "signin": partial(signin.run, seconds=seconds),
    }
    rows: list[Row] = []
    for name, fn in suites.items():
        if only and name not in only:
            continue
        print(f"[{name}] running with {records:,} records…", file=sys.stderr, flush=True)

        def report(metric: str, value: float, unit: str, note: str = "", _bench: str = name) -> None:
            rows.append(Row(_bench, metric, value, unit, note))
            print(f"  {metric}: {value:,.2f} {unit} {note}", file=sys.stderr, flush=True)

        fn(records, report)
    width = max((len(r.name) for r in rows), default=10)
    print(f"\n{'benchmark':<11} {'metric':<{width}} {'value':>12}  unit   note")
    for r in rows:
        print(f"{r.benchmark:<11} {r.name:<{width}} {r.value:>12,.2f}  {r.unit:<6} {r.note}")
    if json_path is not None:
        doc = {"machine": machine(), "records": records, "rows": [asdict(r) for r in rows]}
        json_path.write_text(json.dumps(doc, indent=2))
    return rows
