"""The device in a real headless Chromium: first download, search, cold start, replay, live push.

One run, one machine, one data set (N accounts loaded with `load_bulk`), so the ratios mean
something:
- first download of N records into IndexedDB (records/s) and a raw IndexedDB bulk put of the
  same records with one index in the same page (the physical limit here): ratio;
- categorized search (prefix, first 50) over the N records of one entity: p50 / p95;
- a system view (first 50 by name) from the device: p50 / p95;
- offline cold start: navigation to the first view rendered, server stopped, browser running;
- replay of M queued operations end to end (queued offline, server restarted, until acked);
- live push: a change on device A visible in device B's store, p50 / p95, with 48 more
  protocol-level devices connected (50 in all), whose receive times are reported too.

The `encrypted` dimension (DESIGN.md §6): the same download, search, view, cold start and
replay again on a fresh server whose organisation requires the app PIN (the store sealed with
AES-GCM, quick find on an index built in memory), reported with "(encrypted)" and as
encrypted / plain ratios (target: within 2x). Cold start then runs to the Unlock screen and,
after the PIN, on to the first view; PIN entry (typing it and deriving its key, PBKDF2) is left
out, as DESIGN.md §6 says, and reported on its own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Report, median_ms, p95_ms

CHROMIUM = os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

RAW_PUT = """async () => {
  const records = await window.Outpost.ctx.store.all('account'); // read in the page: no round trip to Python
  const name = 'bench-raw-' + Math.random();
  const db = await new Promise((res, rej) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () =>
      r.result.createObjectStore('records', { keyPath: ['entity', 'id'] }).createIndex('entity', 'entity');
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
  });
  const t0 = performance.now();
  await new Promise((res, rej) => {
    const tx = db.transaction('records', 'readwrite');
    const s = tx.objectStore('records');
    for (const rec of records) s.put({ entity: 'account', id: rec.accountid, server: rec, view: rec });
    tx.oncomplete = res; tx.onerror = () => rej(tx.error);
  });
  const ms = performance.now() - t0;
  db.close(); indexedDB.deleteDatabase(name);
  return [ms, records.length];
}"""

ARRIVAL = """(id) => new Promise((resolve) => {
  const store = window.Outpost.ctx.store;
  let stop = () => {};
  const check = async () => { if (await store.get('lead', id)) { stop(); resolve(true); } };
  stop = store.subscribe(check);
  check();
})"""

TIMED = """async ([what, arg, runs]) => {
  const ctx = window.Outpost.ctx;
  const samples = [];
  for (let i = 0; i < runs + 2; i++) {
    if (what === 'view-after-change') ctx.store.notify(['account']);  // as a write or a synced change does
    const t0 = performance.now();
    if (what === 'search') await ctx.store.search(['account'], arg[i % arg.length], 50);
    else await ctx.data.query('account', arg, 50);
    if (i >= 2) samples.push(performance.now() - t0);
  }
  return samples;
}"""


PIN = "246810"
DERIVE = """async () => {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const t0 = performance.now();
  const pin = new TextEncoder().encode("246810");
  const material = await crypto.subtle.importKey("raw", pin, "PBKDF2", false, ["deriveKey"]);
  await crypto.subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt, iterations: 600000 }, material,
    { name: "AES-GCM", length: 256 }, false, ["decrypt"]);
  return performance.now() - t0;
}"""
# Compared encrypted / plain: (metric, True when higher is better).
COMPARED = [
    ("first download", True),
    ("first search (builds the index when encrypted)", False),
    ("categorized search p50", False),
    ("categorized search p95", False),
    ("system view p50", False),
    ("system view p95", False),
    ("system view after a change p50", False),
    ("offline cold start p50", False),
    ("offline cold start p95", False),
    ("replay end to end", True),
]


LONG_TASKS = """() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
    .observe({ type: "longtask" });
}"""


def until(page: Any, expression: str, timeout_s: float = 600.0) -> None:
    """Poll a JavaScript expression until truthy (page.wait_for_function uses eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout_s:.0f} s: {expression}")
        page.wait_for_timeout(25)


def sign_in(page: Any, base: str, username: str, password: str, pin: str | None = None) -> None:
    """Sign in through the UI (setting the app PIN when given) and wait for the offline updates offer
    (the download is timed by the caller)."""
    page.goto(base + "/")
    page.get_by_label("Organisation").fill("contoso")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    if pin is not None:
        page.get_by_label("New PIN").fill(pin)
        page.get_by_label("Confirm PIN").fill(pin)
        page.get_by_role("button", name="Set PIN").click()
    page.get_by_role("dialog", name="Offline Updates Available").wait_for(timeout=60_000)


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
    figures: dict[tuple[bool, str], float] = {}
    for sealed in encrypted:

        def noted(name: str, value: float, unit: str, note: str = "", _sealed: bool = sealed) -> None:
            figures[(_sealed, name)] = value
            report(f"{name} (encrypted)" if _sealed else name, value, unit, note)

        _measure(records, noted, replay_ops, browser, device_profile, crowd, sealed)
    for name, higher_is_better in COMPARED:
        if (False, name) in figures and (True, name) in figures:
            plain, sealed_value = figures[(False, name)], figures[(True, name)]
            ratio = plain / sealed_value if higher_is_better else sealed_value / plain
            report(f"encrypted / plain: {name}", ratio, "x", "cost of encryption at rest; target <= 2 (DESIGN.md §6)")


def _measure(
    records: int,
    report: Report,
    replay_ops: int | None,
    browser: Any,
    device_profile: dict[str, Any],
    crowd: int,
    encrypted: bool = False,
) -> None:
    """The measurements proper, with a running browser (the app PIN on when `encrypted`)."""

    from benchmarks.live import MANY, HttpSession, LiveServer
    from benchmarks.serving import Crowd
    from webapp import create_app
    from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo, load_bulk
    from webapp.services import services

    replay_ops = replay_ops or max(50, min(5000, records // 10))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'outpost.db'}"})
        svc = services(app)
        with svc.db.session(write=True) as dbs:
            build_demo(dbs, svc.registry, svc.hasher)
            load_bulk(dbs, svc.registry, DEMO_ORG, records, progress=False, mix=(("account", 1.0),))
            dbs.commit()
        svc.db.dispose()
        if encrypted:
            env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'outpost.db'}"}
            subprocess.run(
                [sys.executable, "-m", "webapp.cli", "set-offline", "--org", DEMO_ORG, "--pin", "on"],
                env=env,
                check=True,
                capture_output=True,
            )
        pin = PIN if encrypted else None
        server = LiveServer(folder, env=MANY).start()
        try:
            device = {k: v for k, v in device_profile.items() if k != "default_browser_type"}
            context = browser.new_context(**device)
            context.set_default_timeout(600_000)
            page = context.new_page()
            sign_in(page, server.base, "admin", DEMO_PASSWORD, pin)
            page.evaluate(LONG_TASKS)  # watch the main thread while the download runs
            t0 = time.perf_counter()
            page.get_by_role("button", name="Update").click()
            until(page, "window.Outpost.ctx.sync?.status.offlineReady === true")
            elapsed = time.perf_counter() - t0
            tasks = page.evaluate("window.__longTasks")
            report(
                "longest main-thread task during the download",
                max(tasks, default=0.0),
                "ms",
                f"{sum(t > 50 for t in tasks)} tasks over 50 ms; target: none (issue 8)",
            )
            held = page.evaluate(
                "async () => Object.values(await window.Outpost.ctx.store.counts()).reduce((a, b) => a + b, 0)"
            )
            rate = held / elapsed
            report("first download", rate, "rec/s", f"{held:,} records in {elapsed:.1f} s (admin holds all)")
            account_count = page.evaluate("async () => (await window.Outpost.ctx.store.counts()).account")
            if not encrypted:
                raw_ms, account_count = page.evaluate(RAW_PUT)
                raw_rate = account_count / (raw_ms / 1000)
                report(
                    "raw IndexedDB bulk put",
                    raw_rate,
                    "rec/s",
                    f"{account_count:,} records, one transaction, one index",
                )
                report("first download vs raw put", raw_rate / rate, "x", "target <= 1.5 (issue 8)")
            first = page.evaluate(
                """async () => { const t0 = performance.now();
                     await window.Outpost.ctx.store.search(['account'], 'a', 50); return performance.now() - t0; }"""
            )
            report(
                "first search (builds the index when encrypted)",
                first,
                "ms",
                "decrypt every account, tokens sorted in memory" if encrypted else "IndexedDB tokens index",
            )

            prefixes = ["a", "ca", "no", "st", "be", "ma", "gr", "li"]
            samples = page.evaluate(TIMED, ["search", prefixes, 30])
            report(
                "categorized search p50",
                statistics.median(samples),
                "ms",
                f"first 50 of {account_count:,} accounts",
            )
            report("categorized search p95", sorted(samples)[int(0.95 * (len(samples) - 1))], "ms", "target < 16 ms")
            samples = page.evaluate(
                TIMED, ["view", "$select=name,address1_city&$filter=statecode eq 0&$orderby=name asc", 15]
            )
            report("system view p50", statistics.median(samples), "ms", "first 50 by name, from the device")
            report("system view p95", sorted(samples)[int(0.95 * (len(samples) - 1))], "ms", "")
            samples = page.evaluate(
                TIMED, ["view-after-change", "$select=name,address1_city&$filter=statecode eq 0&$orderby=name asc", 9]
            )
            report("system view after a change p50", statistics.median(samples), "ms", "the entity changed: re-sorted")

            # Offline cold start: the browser is running; navigation to the first view rendered.
            server.stop()
            starts = []
            unlocks = []
            for _ in range(12):
                cold = context.new_page()
                t0 = time.perf_counter()
                cold.goto(server.base + "/")
                if encrypted:  # the Unlock screen, then (typing excluded) unlocking to the first view
                    cold.get_by_role("heading", name="Unlock").wait_for()
                    shown = time.perf_counter() - t0
                    cold.get_by_label("PIN", exact=True).fill(PIN)
                    t1 = time.perf_counter()
                    cold.get_by_role("button", name="Unlock").click()
                    cold.get_by_role("heading", name="Contoso").wait_for()
                    unlocks.append(time.perf_counter() - t1)
                    starts.append(shown + unlocks[-1])
                else:
                    cold.get_by_role("heading", name="Contoso").wait_for()
                    starts.append(time.perf_counter() - t0)
                cold.close()
            note = "server stopped"
            if encrypted:
                # PIN entry (DESIGN.md §6) = typing it and deriving its key; the rest of the unlock counts.
                derive = statistics.median(page.evaluate(DERIVE) / 1000 for _ in range(5))
                report("PIN key derivation p50", derive * 1000, "ms", "PBKDF2-SHA-256, 600,000 iterations")
                report("unlock p50", median_ms(unlocks[2:]), "ms", "press Unlock -> first view: derivation + open")
                report("offline cold start incl. unlock p50", median_ms(starts[2:]), "ms", "derivation included")
                warm = page.evaluate(
                    """async () => { const s = window.Outpost.ctx.store;
                         s.codec.opened?.clear(); s.records.cache.clear(); s.searchIndex.clear();
                         const t0 = performance.now(); await s.warm(); return performance.now() - t0; }"""
                )
                report(
                    "open the whole store after unlock",
                    warm,
                    "ms",
                    f"decrypt {held:,} records + quick-find index, in the background after unlocking",
                )
                starts = [s - derive for s in starts]
                note = "server stopped; to the Unlock screen, then unlocked to the first view, PIN entry excluded"
            report("offline cold start p50", median_ms(starts[2:]), "ms", f"{note}; target < 500 ms")
            report("offline cold start p95", p95_ms(starts[2:]), "ms", "")

            # Replay: queue M creates offline, restart, time until every op is acked.
            page.evaluate(
                """async (n) => { for (let i = 0; i < n; i++)
                     await window.Outpost.ctx.data.create('account', {name: 'Replay ' + i}); }""",
                replay_ops,
            )
            until(page, f"window.Outpost.ctx.sync.status.pending === {replay_ops}")
            server.start()
            t0 = time.perf_counter()
            page.evaluate("() => window.Outpost.ctx.sync.kick()")
            until(
                page,
                "((s) => s.connection === 'online' && s.pending === 0)(window.Outpost.ctx.sync.status)",
            )
            elapsed = time.perf_counter() - t0
            report("replay end to end", replay_ops / elapsed, "ops/s", f"{replay_ops:,} creates queued offline, acked")
            if encrypted:  # live push is the same over the wire, encrypted or not
                context.close()
                return

            # Live push between two devices, with `crowd` protocol-level devices connected too
            # (50 devices in all by default); those record when each change reaches them.
            other = browser.new_context(**device)
            other.set_default_timeout(600_000)
            page_b = other.new_page()
            sign_in(page_b, server.base, "admin", DEMO_PASSWORD)
            page_b.get_by_role("button", name="Skip for now").click()
            page_b.evaluate("() => window.Outpost.ctx.updateOffline()")
            until(page_b, "window.Outpost.ctx.sync?.status.offlineReady === true")
            cookie = HttpSession(server.base, "admin", DEMO_PASSWORD).cookie
            latencies = []
            crowd_latencies: list[float] = []
            with Crowd(server.base, cookie, crowd) as others:
                for i in range(20):
                    rid = page.evaluate(
                        "(i) => window.Outpost.ctx.data.create('lead', {subject: 'Push ' + i, lastname: 'P'})", i
                    )
                    t0 = time.perf_counter()
                    page_b.evaluate(ARRIVAL, rid)  # resolves when B's store has the record
                    latencies.append(time.perf_counter() - t0)
                    crowd_latencies.extend(t - t0 for t in others.arrivals(rid))
            everyone = f"2 browsers + {crowd} protocol devices connected"
            report("live push p50", median_ms(latencies), "ms", f"A writes, B's store has it ({everyone})")
            report("live push p95", p95_ms(latencies), "ms", "")
            report(f"live push to {crowd} protocol devices p50", median_ms(crowd_latencies), "ms", "same changes")
            report(f"live push to {crowd} protocol devices p95", p95_ms(crowd_latencies), "ms", "")
            other.close()
            context.close()
        finally:
            server.stop()
