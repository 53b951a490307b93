"""The device benchmark's browser side: Chromium's flags, waits under the app's CSP, sign-in, and
the JavaScript each measurement runs in the page (read in the page: no round trip to Python)."""

from __future__ import annotations

import os
import time
from typing import Any

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

# The physical limit: the same rows the download stores (with their search tokens, computed
# before the clock starts) put into a database with the same key and the same two indexes.
RAW_PUT = """async () => {
  const store = window.Outpost.ctx.store;
  const records = await store.all('account');
  const rows = records.map((rec) => ({
    entity: 'account', id: rec.accountid, server: rec, view: rec, pending: 0, tokens: store.tokens('account', rec),
  }));
  const name = 'bench-raw-' + Math.random();
  const db = await new Promise((res, rej) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => {
      const s = r.result.createObjectStore('records', { keyPath: ['entity', 'id'] });
      s.createIndex('entity', 'entity');
      s.createIndex('tokens', 'tokens', { multiEntry: true });
    };
    r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
  });
  const t0 = performance.now();
  await new Promise((res, rej) => {
    const tx = db.transaction('records', 'readwrite');
    const s = tx.objectStore('records');
    for (const row of rows) s.put(row);
    tx.oncomplete = res; tx.onerror = () => rej(tx.error);
  });
  const ms = performance.now() - t0;
  db.close(); indexedDB.deleteDatabase(name);
  return [ms, rows.length];
}"""

# What IndexedDB holds for this origin (Chromium splits it out; elsewhere the whole usage).
IDB_BYTES = """async () => {
  const e = await navigator.storage.estimate();
  return (e.usageDetails && e.usageDetails.indexedDB) || e.usage || 0;
}"""

ARRIVAL = """(id) => new Promise((resolve) => {
  const store = window.Outpost.ctx.store;
  let stop = () => {};
  const check = async () => { if (await store.get('account', id)) { stop(); resolve(true); } };
  stop = store.subscribe(check);
  check();
})"""

# Through the store: the call the screens make, timed alone.
TIMED = """async ([what, arg, runs]) => {
  const ctx = window.Outpost.ctx;
  const samples = [];
  // After a change: one account arrives changed from the server (renamed, so it moves in the
  // view's order), as a synced change does; then the view is read again.
  const held = what === 'view-after-change' ? await ctx.store.all('account') : [];
  for (let i = 0; i < runs + 2; i++) {
    if (what === 'view-after-change') {
      const r = held[(i * 7919) % held.length];
      const record = {...r, name: `${r.name} ${i}`, versionnumber: (r.versionnumber || 0) + 1000 + i};
      await ctx.store.applyServer([{entity: 'account', record}]);
    }
    const t0 = performance.now();
    if (what === 'search') await ctx.store.search(['account'], arg[i % arg.length], 50);
    else await ctx.data.query('account', arg, 50);
    if (i >= 2) samples.push(performance.now() - t0);
  }
  return samples;
}"""

# Through the screen: from the hash change to the rows drawn and the next frame painted, each run
# coming from home (so no row of the previous run is on screen). `hashes` are used in turn.
ON_SCREEN = """async ([hashes, rows, runs]) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const until = async (test, what) => {
    const end = performance.now() + 60000;
    while (!test()) {
      if (performance.now() > end) throw new Error('not shown within 60 s: ' + what);
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
  };
  const samples = [];
  for (let i = 0; i < runs + 2; i++) {
    location.hash = '#/';
    await until(() => !document.querySelector(rows) && document.querySelector('#view h1'), 'home');
    await frame();
    const t0 = performance.now();
    location.hash = hashes[i % hashes.length];
    await until(() => document.querySelector(rows), rows);
    await frame();  // painted: the frame after the rows were put in the page
    if (i >= 2) samples.push(performance.now() - t0);
  }
  location.hash = '#/';
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
