"""Background Sync: changes queued offline reach the server after the tab is closed.

The server process is really stopped while the user works; the tab is closed; the server comes
back; the browser's sync event (dispatched through the DevTools protocol, as the browser would
on reconnecting) lets the service worker deliver the queue over HTTP with no page open. When
the app opens again, the re-sent operations get their first results and the queue empties.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from playwright.sync_api import BrowserContext

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_PASSWORD

T = TypeVar("T")

# Records every Background Sync registration the app makes (a fired tag leaves getTags(), so
# asking the browser afterwards would race the sync event).
RECORD_REGISTRATIONS = """
if (self.SyncManager) {
  const register = SyncManager.prototype.register;
  SyncManager.prototype.register = function (tag) {
    (window.__syncRegistered = window.__syncRegistered || []).push(tag);
    return register.call(this, tag);
  };
}
"""


def eventually(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """Poll `fetch` until `done` holds (a condition with a time limit, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)  # polling a condition, bounded by the deadline


def test_a_queue_reaches_the_server_after_the_tab_is_closed(live_server: Any, phone_context: BrowserContext) -> None:
    phone_context.add_init_script(RECORD_REGISTRATIONS)
    page = phone_context.new_page()
    page.goto("/")
    page.get_by_label("Organisation").fill("contoso")
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Update").click()
    wait_until(page, "() => window.Outpost.ctx.sync?.status.offlineReady === true")
    wait_until(page, "() => navigator.serviceWorker.controller !== null")

    live_server.stop()
    lead = page.evaluate(
        "() => window.Outpost.ctx.data.create('lead', {subject: 'Written before closing', lastname: 'Bye'})"
    )
    wait_until(page, "() => window.Outpost.ctx.sync.status.pending === 1")
    wait_until(page, "() => (window.__syncRegistered || []).includes('outpost-queue')")

    cdp_host = phone_context.new_page()  # a non-app page: DevTools access to the worker, no app window
    cdp_host.goto("about:blank")
    page.close()  # the tab is closed with the queue still on the device
    live_server.start()

    cdp = phone_context.new_cdp_session(cdp_host)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")

    def our_registrations() -> list[dict[str, Any]]:
        cdp_host.evaluate("0")  # the sync API delivers DevTools events only during a Playwright call
        return [r for r in registrations if r["scopeURL"].startswith(live_server.url) and not r["isDeleted"]]

    ours = eventually(our_registrations, bool, timeout=10)
    assert ours, registrations
    cdp.send(
        "ServiceWorker.dispatchSyncEvent",
        {
            "origin": live_server.url,
            "registrationId": ours[0]["registrationId"],
            "tag": "outpost-queue",
            "lastChance": False,
        },
    )
    api = live_server.client("east1")
    delivered = eventually(lambda: api.get(f"/api/data/leads({lead})"), lambda r: r.status == 200, timeout=40)
    assert delivered.status == 200, f"the worker did not deliver the queue:\n{live_server.log_tail()}"
    assert delivered.json["subject"] == "Written before closing"
    version = delivered.json["versionnumber"]

    # The app opens again: the re-sent operation gets its first result; the queue empties.
    again = phone_context.new_page()
    again.goto("/")
    wait_until(again, "() => window.Outpost?.ctx?.sync?.status.connection === 'online'")
    wait_until(again, "() => window.Outpost.ctx.sync.status.pending === 0")
    assert again.evaluate("() => window.Outpost.ctx.store.errors()") == []  # the re-sent create was not refused
    assert api.get(f"/api/data/leads({lead})").json["versionnumber"] == version  # applied once, not twice
