"""Where an engine lacks a feature, the app falls back, and the fallback is tested in that engine.

Seen here: Chromium 156 has Background Sync, Web Locks, BroadcastChannel and
navigator.storage.persist; Firefox ESR 153 has no Background Sync; WebKitGTK 2.50 has neither
Background Sync nor navigator.storage.persist. So, in every engine:

- With no Background Sync to deliver it (Firefox, WebKit), the queue drains when the app starts,
  when the network returns (`online`) and when the app comes back to the foreground
  (`visibilitychange`). The loop is first put into a long back-off (30 s) so that only the
  event can explain a drain within 10 s. The events are dispatched in the page: WebDriver can
  neither cut a WebKit page's network nor hide it, and Playwright's Firefox has no offline mode.
- One tab syncs at a time: with Web Locks, and with the localStorage lease and storage-event
  channel (webapp/static/js/tabs.js) that take over where Web Locks and BroadcastChannel are
  missing. No engine here lacks those two, so the test removes them from both tabs' pages and
  restarts each tab's sync loop without them; the leader's tab closing hands the sync over.
- User Information says whether storage is persistent, and offers to ask for it only where the
  browser can (WebKitGTK cannot).
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import LiveServer
from tests.engines import journey as j
from tests.engines.drivers import Driver, poll

QUICK_MS = 10_000  # a drain caused by the event: well under the 15 s shortest back-off pause set up
LONG_BACKOFF = 20  # attempts: the next pause is 15-45 s (BACKOFF_MAX_MS 30 s, jittered)

FEATURES = """() => ({
  backgroundSync: typeof self.SyncManager === "function",
  webLocks: Boolean(navigator.locks?.request),
  broadcastChannel: typeof BroadcastChannel === "function",
  persist: typeof navigator.storage?.persist === "function",
})"""


def signed_in(tab: Driver) -> None:
    j.open_app(tab)
    j.sign_in(tab)
    j.take_offline_updates(tab)


def lead_name(api: Any, last: str) -> list[str]:
    resp = api.get(f"/api/data/leads?$select=lastname&$filter=lastname%20eq%20'{last}'")
    assert resp.status == 200, resp.json
    return [r["lastname"] for r in resp.json["value"]]


def queue_while_down(tab: Driver, server: LiveServer, last: str) -> None:
    """The server stops; a lead is created on the device; the loop fails and backs off for long."""
    server.stop()
    j.wait_status(tab, "s.connection !== 'online'")
    tab.evaluate(f"() => {{ {j.CTX}.sync.attempt = {LONG_BACKOFF}; }}")
    tab.evaluate(f"(last) => {j.CTX}.data.create('lead', {{subject: 'Fallback ' + last, lastname: last}})", last)
    # The create's kick ran a session, which failed: the loop now waits out its back-off.
    tab.wait_until(
        f"() => {j.CTX}.sync.wakeUp !== null && {j.CTX}.sync.status.phase === 'idle' && {j.CTX}.sync.status.error",
        what="the sync loop is backing off",
    )
    assert j.pending(tab) == 1


def test_without_background_sync_the_queue_drains_on_online_foreground_and_start(
    live_server: LiveServer, engine: Driver
) -> None:
    api = live_server.client(j.USER)
    tab = engine
    signed_in(tab)
    features = tab.evaluate(FEATURES)
    print(f"\n{engine.engine} {engine.version}: {features}")

    # The network returns: `online`.
    queue_while_down(tab, live_server, "Online")
    live_server.start()
    tab.evaluate("() => window.dispatchEvent(new Event('online'))")
    j.wait_synced(tab, QUICK_MS)
    assert lead_name(api, "Online") == ["Online"]

    # Back to the foreground: `visibilitychange` to visible.
    queue_while_down(tab, live_server, "Foreground")
    live_server.start()
    tab.evaluate(
        """() => {
          const set = (state) => {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            Object.defineProperty(document, "hidden", {value: state === "hidden", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
          };
          set("hidden");
          set("visible");
        }"""
    )
    j.wait_synced(tab, QUICK_MS)
    assert lead_name(api, "Foreground") == ["Foreground"]
    tab.evaluate("() => { delete document.visibilityState; delete document.hidden; }")

    # The app starts again (a reload) once the server is back.
    queue_while_down(tab, live_server, "Start")
    live_server.start()
    tab.reload()
    j.wait_synced(tab, QUICK_MS + 10_000)
    assert lead_name(api, "Start") == ["Start"]


WITHOUT = """async (features) => {
  // What an engine without Web Locks / BroadcastChannel looks like to the app: remove them, then
  // restart this tab's sync loop (the app's own Sync class) so it starts without them.
  if (features.includes("locks")) delete Navigator.prototype.locks;
  if (features.includes("BroadcastChannel")) delete window.BroadcastChannel;
  const ctx = window.Outpost.ctx;
  ctx.sync.stop();
  const app = document.querySelector('script[type=module][src*="js/app.js"]').src;
  const { Sync } = await import(new URL("./sync.js", app).href);
  ctx.sync = new Sync(ctx.store, {});
  ctx.data.sync = ctx.sync;
  await ctx.sync.start();
  return { locks: Boolean(navigator.locks), channel: typeof BroadcastChannel };
}"""


def leaders(*tabs: Driver) -> list[bool]:
    return [bool(t.evaluate(f"() => {j.CTX}.sync.status.leader")) for t in tabs]


def one_tab_syncs(api: Any, first: Driver, second: Driver, last: str) -> None:
    """Exactly one tab leads; a change made in the other reaches the server through it; the
    leader's tab closes and the other takes over."""
    both = poll(lambda: leaders(first, second), lambda ls: sum(ls) == 1, 30_000, "exactly one tab leads")
    assert poll(lambda: leaders(first, second), lambda ls: ls == both, 2_000, "stable") == both
    leader, follower = (first, second) if both[0] else (second, first)
    follower.evaluate(f"(last) => {j.CTX}.data.create('lead', {{subject: 'Tab ' + last, lastname: last}})", last)
    follower.wait_until(f"async () => (await {j.CTX}.store.pendingCount()) === 0", timeout=30_000, what="pushed")
    assert lead_name(api, last) == [last]
    assert leaders(first, second) == both  # the follower asked the leader; it did not sync itself
    leader.close()
    follower.wait_until(f"() => {j.CTX}.sync.status.leader", timeout=30_000, what="the other tab takes over")


def test_one_tab_syncs_at_a_time_with_web_locks_and_with_the_fallback(live_server: LiveServer, engine: Driver) -> None:
    api = live_server.client(j.USER)
    first = engine
    signed_in(first)
    second = first.new_tab()
    j.open_app(second)
    j.wait_status(second, "s.offlineReady")
    one_tab_syncs(api, first, second, "Locks")

    # Again with neither Web Locks nor BroadcastChannel: the lease and storage events.
    third = second.new_tab()
    j.open_app(third)
    j.wait_status(third, "s.offlineReady")
    for tab in (second, third):
        assert tab.evaluate(WITHOUT, ["locks", "BroadcastChannel"]) == {"locks": False, "channel": "undefined"}
    lease = "() => Object.keys(localStorage).filter((k) => k.startsWith('outpost:lease:'))"
    second.wait_until(lease, what="the sync lock is a lease in localStorage")
    one_tab_syncs(api, second, third, "Lease")


def test_user_information_says_whether_storage_is_persistent(live_server: LiveServer, engine: Driver) -> None:
    tab = engine
    signed_in(tab)
    j.menu(tab, "User Information")
    tab.wait_visible("heading", "User Information")
    can_ask = tab.evaluate("() => typeof navigator.storage?.persist === 'function'")
    persisted = tab.evaluate("() => navigator.storage?.persisted ? navigator.storage.persisted() : false")
    # Within the screen: right after the first download the app also asks, in a notice above it.
    buttons = tab.count("button", "Keep data on this device", within=("main", None))
    print(f"\n{engine.engine}: persist() {'available' if can_ask else 'missing'}, persisted={persisted}")
    if not can_ask or persisted:
        assert buttons == 0  # nothing to ask for: the screen says "No" (or "Yes") and offers no button
        assert persistent_says(tab) == ("Yes" if persisted else "No")
        return
    assert buttons == 1
    tab.click("button", "Keep data on this device", within=("main", None))
    # The screen never stays silent: the answer, or (Firefox, whose prompt nobody answers here)
    # that the browser has not answered yet.
    answers = ("Yes", "No (the browser declined)", "No (waiting for the browser's answer)")
    answer = poll(lambda: persistent_says(tab), lambda t: t != "No", 15_000, "an answer to persist()")
    assert answer in answers, answer
    print(f"{engine.engine}: persist() answered {answer!r}")


def persistent_says(tab: Driver) -> str:
    """What User Information shows for "Storage is persistent"."""
    return str(
        tab.evaluate(
            """() => {
              const dt = [...document.querySelectorAll("dt")].find((d) => d.textContent === "Storage is persistent");
              return dt?.nextElementSibling?.textContent ?? "";
            }"""
        )
    )
