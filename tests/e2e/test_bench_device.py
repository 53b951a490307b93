"""The device benchmark runs end to end at a tiny size (a smoke test: no figure is asserted)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, Playwright

from benchmarks import device


def test_the_device_benchmark_reports_every_figure(chromium: Browser, pw: Playwright) -> None:
    rows: list[tuple[str, float, str]] = []

    def report(name: str, value: float, unit: str, note: Any = "") -> None:
        rows.append((name, value, unit))

    device.run(300, report, replay_ops=20, browser=chromium, phone=pw.devices["Pixel 7"], crowd=4)
    names = [name for name, _, _ in rows]
    for wanted in (
        "first download",
        "raw IndexedDB bulk put",
        "first download vs raw put",
        "download bytes a record: records as JSON",
        "download bytes a record: on the wire",
        "download bytes a record: in IndexedDB",
        "longest main-thread task during the download",
        "categorized search p50",
        "system view p50",
        "system view after a change p50",
        "offline cold start p50",
        "offline cold start (network hanging) p50",
        "categorized search on screen p50",
        "system view on screen p50",
        "replay end to end",
        "live push p95",
        "first download (encrypted)",
        "offline cold start p50 (encrypted)",
        "offline cold start (network hanging) p50 (encrypted)",
        "live push to 4 protocol devices p50",
        "encrypted / plain: system view p50",
    ):
        assert wanted in names
    # An in-memory search over 300 records can take less than the timer's resolution: 0 ms; and
    # a download with no task over 50 ms reports a longest long task of 0.
    assert all(value > 0 for name, value, _ in rows if "search" not in name and "main-thread" not in name), rows
    assert all(value >= 0 for _, value, _ in rows), rows
