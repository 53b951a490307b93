"""The device benchmark's replay, on its own: M ops queued offline in a real Chromium, then replayed.

The same steps as "replay end to end" in `benchmarks/device/measure.py` (sign in as admin, first
download, the server really stopped, M account creates queued through the app's data layer, the
server started again, timed from the wake-up until every op is acked and the loop is online with
an empty queue), without the download, search, view, cold-start and live-push figures around it,
so the replay alone can be measured at 5,000 ops in a few minutes:

    .venv/bin/python -m benchmarks.device_replay --ops 5000 [--records 1000] [--runs 1]

`OUTPOST_STATIC_FOLDER=<folder>` serves another build of the app (e.g. an older commit's
`webapp/static`), so two versions compare under the same conditions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.device import ARGS, CHROMIUM, sign_in, until

TARGET = 3000.0  # ops/s (issue 14 item 5)


def replay(ops: int, records: int, browser: Any, device: dict[str, Any]) -> float:
    """One run on a fresh server and database: ops/s end to end."""
    from benchmarks.live import LiveServer
    from webapp import create_app
    from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo, load_bulk
    from webapp.services import services

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'outpost.db'}"})
        svc = services(app)
        with svc.db.session(write=True) as dbs:
            build_demo(dbs, svc.registry, svc.hasher)
            load_bulk(dbs, svc.registry, DEMO_ORG, records, progress=False, mix=(("account", 1.0),))
            dbs.commit()
        svc.db.dispose()
        server = LiveServer(folder).start()
        context = browser.new_context(**device)
        context.set_default_timeout(600_000)
        try:
            page = context.new_page()
            sign_in(page, server.base, "admin", DEMO_PASSWORD)
            page.get_by_role("button", name="Update").click()
            until(page, "window.Outpost.ctx.sync?.status.offlineReady === true")
            server.stop()
            page.evaluate(
                """async (n) => { for (let i = 0; i < n; i++)
                     await window.Outpost.ctx.data.create('account', {name: 'Replay ' + i}); }""",
                ops,
            )
            until(page, f"window.Outpost.ctx.sync.status.pending === {ops}")
            server.start()
            t0 = time.perf_counter()
            page.evaluate("() => window.Outpost.ctx.sync.kick()")
            until(page, "((s) => s.connection === 'online' && s.pending === 0)(window.Outpost.ctx.sync.status)")
            return ops / (time.perf_counter() - t0)
        finally:
            context.close()
            server.stop()


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=5000)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        device = {k: v for k, v in pw.devices["Pixel 7"].items() if k != "default_browser_type"}
        try:
            for run in range(args.runs):
                rate = replay(args.ops, args.records, browser, device)
                print(
                    f"replay end to end (run {run + 1}): {rate:,.0f} ops/s for {args.ops:,} creates queued offline;"
                    f" target >= {TARGET:,.0f} ops/s",
                    flush=True,
                )
        finally:
            browser.close()


if __name__ == "__main__":
    main()
