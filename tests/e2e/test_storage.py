"""Storage you can trust (#15 item 6): the app notices that the browser deleted its store and says
what unsynced work was lost; it warns when storage that is not persistent is nearly full; and it
asks for persistent storage right after the first download, saying why.

Eviction is simulated the way it looks to the app: the IndexedDB database is deleted between two
loads (with the server really stopped, the reload comes from the service worker). The quota and
the browser's answers are simulated by an init script over navigator.storage.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from playwright.sync_api import Locator, Page, expect

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

DELETE_STORE = """async () => {
  const name = window.Outpost.ctx.store.name;
  window.Outpost.ctx.sync.stop();
  await new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);  // the app's own connection closes on versionchange
    req.onsuccess = resolve;
    req.onerror = () => reject(req.error);
  });
  return (await indexedDB.databases()).some((d) => d.name === name);
}"""

STORAGE = """
(() => {
  const storage = navigator.storage;
  storage.persisted = async () => localStorage.getItem("test:persisted") === "yes";
  storage.persist = async () => {
    localStorage.setItem("test:persist-calls", String(Number(localStorage.getItem("test:persist-calls") || 0) + 1));
    localStorage.setItem("test:persisted", "yes");
    return true;
  };
  if (window.__nearlyFull) storage.estimate = async () => ({ usage: 950_000_000, quota: 1_000_000_000 });
})();
"""


def sign_in_and_update(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Update").click()
    wait_until(
        page,
        "() => { const s = window.Outpost.ctx.sync?.status;"
        " return s?.offlineReady && !s.download && s.phase === 'idle'; }",
        timeout=60_000,
    )
    wait_until(page, "navigator.serviceWorker.controller !== null")


def notices(page: Page) -> Locator:
    return page.get_by_role("region", name="Storage")


def queue_a_change_offline(page: Page, live_server: LiveServer) -> None:
    live_server.stop()
    page.evaluate("Xrm.WebApi.offline.createRecord('contact', {firstname: 'Never', lastname: 'Synced'})")
    wait_until(page, "() => window.Outpost.ctx.sync.status.pending === 1")
    wait_until(
        page,
        "() => JSON.parse(localStorage.getItem('outpost:held') || '{}')[window.Outpost.ctx.store.name]?.pending === 1",
    )


def test_a_store_the_browser_deleted_is_reported_with_the_changes_that_were_lost(
    live_server: LiveServer, phone_page: Page
) -> None:
    page = phone_page
    sign_in_and_update(page)
    expect(notices(page).get_by_role("heading", name="Data on this device was deleted")).to_have_count(0)
    queue_a_change_offline(page, live_server)
    assert page.evaluate(DELETE_STORE) is False
    page.reload()  # from the service worker: the server is stopped
    alert = page.get_by_role("alert").filter(has=page.get_by_role("heading", name="Data on this device was deleted"))
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(r"1 change made on this device since .+ had not been synced: it is lost"))
    expect(alert.get_by_role("button", name="Keep data on this device")).to_be_visible()
    # Said once: the next start has nothing to report.
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_have_count(0)
    page.reload()
    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    wait_until(page, "() => Boolean(window.Outpost.ctx.store)")
    expect(page.get_by_role("heading", name="Data on this device was deleted")).to_have_count(0)


def test_an_eviction_that_also_took_local_storage_is_found_through_the_cookie(
    live_server: LiveServer, phone_page: Page
) -> None:
    """Everything had synced: the notice says nothing was lost, and the download is offered again."""
    page = phone_page
    sign_in_and_update(page)
    assert page.evaluate(DELETE_STORE) is False
    page.evaluate("localStorage.clear()")
    page.reload()
    notice = notices(page).get_by_role("alert")
    expect(notice.get_by_role("heading", name="Data on this device was deleted")).to_be_visible()
    expect(notice).to_contain_text("No unsynced change was lost: everything had reached the server.")
    expect(page.get_by_role("dialog", name="Offline Updates Available")).to_be_visible()


def test_deleting_the_store_on_purpose_is_not_taken_for_an_eviction(live_server: LiveServer, phone_page: Page) -> None:
    page = phone_page
    sign_in_and_update(page)
    page.goto("/#/user")
    page.get_by_role("button", name="Reconfigure").click()
    page.get_by_role("dialog", name="Reconfigure").get_by_role("button", name="Reconfigure").click()
    expect(page.get_by_text("This organisation's data was removed from the device.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("dialog", name="Offline Updates Available")).to_be_visible()
    expect(page.get_by_role("heading", name="Data on this device was deleted")).to_have_count(0)


def test_persistent_storage_is_asked_for_right_after_the_first_download(
    live_server: LiveServer, phone_page: Page
) -> None:
    page = phone_page
    page.add_init_script(STORAGE)
    page.goto("/")
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    dialog = page.get_by_role("dialog", name="Offline Updates Available")
    expect(dialog).to_be_visible()
    ask = notices(page).get_by_role("heading", name="Keep your offline data on this device?")
    expect(ask).to_have_count(0)  # not before there is anything to keep
    dialog.get_by_role("button", name="Update").click()
    expect(ask).to_be_visible()
    notice = (
        notices(page)
        .locator(".storage-notice")
        .filter(has=page.get_by_role("heading", name="Keep your offline data on this device?"))
    )
    expect(notice).to_contain_text("Unless you allow it, the browser may delete this data when space runs low.")
    notice.get_by_role("button", name="Keep data on this device").click()
    expect(notice.get_by_role("status")).to_have_text("The browser will keep Outpost's data on this device.")
    assert page.evaluate("localStorage.getItem('test:persist-calls')") == "1"
    page.reload()
    wait_until(page, "() => window.Outpost.ctx.sync?.status.offlineReady")
    expect(ask).to_have_count(0)


def test_nearly_full_storage_that_is_not_persistent_says_what_would_be_lost(
    live_server: LiveServer, phone_page: Page
) -> None:
    page = phone_page
    page.add_init_script("window.__nearlyFull = true;" + STORAGE)
    sign_in_and_update(page)
    full = notices(page).get_by_role("status").filter(has=page.get_by_role("heading", name="Storage is nearly full"))
    expect(full).to_be_visible()
    expect(full).to_contain_text("(95%)")
    expect(full).to_contain_text("Every change has reached the server")
    queue_a_change_offline(page, live_server)
    page.reload()
    expect(full).to_contain_text("1 change made on this device has not been synced yet and would be lost.")
    # Persistent storage granted: no warning.
    full.get_by_role("button", name="Keep data on this device").click()
    page.reload()
    wait_until(page, "() => window.Outpost.ctx.sync?.status.pending === 1")
    expect(page.get_by_role("heading", name="Storage is nearly full")).to_have_count(0)


def test_a_notice_arriving_while_a_list_is_read_waits_for_the_next_screen_and_moves_no_row(
    live_server: LiveServer, phone_page: Page
) -> None:
    page = phone_page
    page.add_init_script(STORAGE)
    sign_in_and_update(page)
    ask = page.get_by_role("heading", name="Keep your offline data on this device?")
    page.locator(".storage-notice").filter(has=ask).get_by_role("button", name="Not now").click()
    expect(ask).to_have_count(0)
    page.evaluate("() => { location.hash = '#/list/contact'; }")
    row = page.locator(".grid tbody tr").first
    expect(row).to_be_visible()
    before = row.bounding_box()
    # The first download's ask, made while the list is on screen (as when a download ends there),
    # through the module the app itself loaded.
    page.evaluate(
        """async () => {
            const src = document.querySelector("script[src*='js/app.js']").src;
            const storage = await import(src.replace("js/app.js", "js/storage.js"));
            localStorage.clear();
            await storage.offerPersistence(window.Outpost.ctx.store.name);
        }"""
    )
    expect(ask).to_have_count(0)
    assert row.bounding_box() == before, "the list moved under the finger"
    page.evaluate("() => { location.hash = '#/'; }")
    expect(ask).to_be_visible()
