"""The device in a real headless Chromium: first download, search, views, cold start, replay, live push.

One run, one machine, one data set (N accounts loaded with `load_bulk`, owned by the demo's
users), so the ratios mean something. Every device is a salesperson's (the server applies their
scope), never a shared administrator session:
- first download of what east1's device holds into IndexedDB (records/s) and a raw IndexedDB
  bulk put of the same accounts with one index in the same page (the physical limit): ratio;
- categorized search (prefix, first 50) and a system view (first 50 by name), each timed through
  the store call and through the screen (from the hash change to the rows painted): p50 / p95;
- offline cold start, navigation to the first view with the browser running, the network
  refused (server stopped) and hanging (accepts, never answers): benchmarks/device/coldstart.py;
- replay of M queued operations end to end (queued offline, server restarted, until acked);
- live push: a change on device A in device B's store, from before A's write, with 48 more
  salespeople's protocol-level devices connected: benchmarks/device/livepush.py.
Each figure is printed beside its target (issue 8).

The `encrypted` dimension (DESIGN.md §6): the same download, search, view, cold start and replay
again on a fresh server whose organisation requires the app PIN, reported with "(encrypted)" and
as encrypted / plain ratios (target: within 2x).

    .venv/bin/python -m benchmarks.device --records 20000 [--replay-ops 500] [--crowd 48] [--plain-only]
"""

from __future__ import annotations

from typing import Any

from benchmarks import Report
from benchmarks.device.browser import ARGS, CHROMIUM, sign_in, until

__all__ = ["ARGS", "CHROMIUM", "run", "sign_in", "until"]

# Compared encrypted / plain: (metric, True when higher is better).
COMPARED = [
    ("first download", True),
    ("first search (builds the index when encrypted)", False),
    ("categorized search p50", False),
    ("categorized search p95", False),
    ("categorized search on screen p50", False),
    ("system view p50", False),
    ("system view p95", False),
    ("system view on screen p50", False),
    ("system view after a change p50", False),
    ("offline cold start p50", False),
    ("offline cold start p95", False),
    ("offline cold start (network hanging) p50", False),
    ("replay end to end", True),
]


def run(
    records: int,
    report: Report,
    replay_ops: int | None = None,
    browser: Any = None,
    phone: dict[str, Any] | None = None,
    crowd: int = 48,
    encrypted: tuple[bool, ...] = (False, True),
) -> None:
    """Load `records` accounts, then measure the device against them: plain, then encrypted.

    `browser` and `phone`: a Chromium already running and a device descriptor (the test suite's
    Playwright, which must not be started twice in one process); else both are made here.
    `encrypted`: the variants to run (both by default, then their ratios are reported).
    """
    from playwright.sync_api import sync_playwright

    if browser is None:
        with sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                _variants(records, report, replay_ops, launched, pw.devices["Pixel 7"], crowd, encrypted)
            finally:
                launched.close()
    else:
        _variants(records, report, replay_ops, browser, phone or {}, crowd, encrypted)


def _variants(
    records: int,
    report: Report,
    replay_ops: int | None,
    browser: Any,
    device_profile: dict[str, Any],
    crowd: int,
    encrypted: tuple[bool, ...],
) -> None:
    """Each variant on its own server and data set, then encrypted / plain for each compared figure."""
    from benchmarks.device.measure import measure

    figures: dict[tuple[bool, str], float] = {}
    for sealed in encrypted:

        def noted(name: str, value: float, unit: str, note: str = "", _sealed: bool = sealed) -> None:
            figures[(_sealed, name)] = value
            report(f"{name} (encrypted)" if _sealed else name, value, unit, note)

        measure(records, noted, replay_ops, browser, device_profile, crowd, sealed)
    for name, higher_is_better in COMPARED:
        if (False, name) in figures and (True, name) in figures:
            plain, sealed_value = figures[(False, name)], figures[(True, name)]
            ratio = plain / sealed_value if higher_is_better else sealed_value / plain
            verdict = "met" if ratio <= 2 else "MISSED"
            report(f"encrypted / plain: {name}", ratio, "x", f"cost of encryption at rest; target <= 2: {verdict}")
