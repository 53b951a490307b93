"""The device benchmark runs end to end at a tiny size (a smoke test: no figure is asserted)."""

from __future__ import annotations

from benchmarks import device


def test_the_device_benchmark_reports_every_figure() -> None:
    rows: list[tuple[str, float, str]] = []
    device.run(300, lambda name, value, unit, note="": rows.append((name, value, unit)), replay_ops=20)
    names = [name for name, _, _ in rows]
    for wanted in (
        "first download",
        "raw IndexedDB bulk put",
        "first download vs raw put",
        "categorized search p50",
        "system view p50",
        "offline cold start p50",
        "replay end to end",
        "live push p95",
    ):
        assert wanted in names
    assert all(value > 0 for _, value, _ in rows)
