"""The administrator's console driving real phones (issue 7), against the real server process.

An administrator, on a desktop browser, changes the offline profile, checks the dry run and
attaches a form script; the phone, at its next sync, offers "Offline Updates Available", and
after Update holds exactly what the dry run counted. Revoke and wipe: at its
next connection the phone deletes the organisation's store and signs out. (A non-admin's 403
on every page is checked over HTTP in tests/test_admin.py.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT_MS, LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    accept_updates,
    call,
    get,
    open_app,
    outpost,
    raw_store,
    sign_in,
    store_names,
    wait_for,
    wait_synced,
)
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

ONLOAD = b"""export default async function (executionContext) {
  const form = executionContext.getFormContext();
  const rows = await Xrm.WebApi.offline.retrieveMultipleRecords("competitor", "?$select=name");
  const name = form.getAttribute("name").getValue();
  const text = `Script ran for ${name}: ${rows.entities.length} competitors on this device`;
  form.ui.setFormNotification(text, "INFO", "n");
}
"""
ONSAVE = b"export function onSave() { throw new Error('boom'); }\n"


# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


@pytest.fixture
def desktop(live_server: LiveServer, chromium: Browser) -> Iterator[BrowserContext]:
    """A desktop browser for the administrator (its own storage), on the live server."""
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    violations: list[str] = []  # the console's pages, too, live under the strict policy
    context.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield context
    context.close()
    assert not violations, f"an admin page broke its Content-Security-Policy: {violations}"


def admin_sign_in(page: Page, path: str) -> None:
    """Open a console page; it asks for a sign-in first, then shows the page asked for."""
    page.goto(path)
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def device_counts(page: Page) -> dict[str, int]:
    """Records per entity in the phone's store, read from IndexedDB without the app."""
    names = store_names(page)
    assert len(names) == 1, names
    store = raw_store(page, names[0])
    assert store is not None
    return dict(Counter(r["entity"] for r in store["records"]))


def test_an_entity_turned_on_offline_reaches_the_device_after_update_with_the_dry_run_s_counts(
    live_server: LiveServer, desktop: BrowserContext, phone_context: BrowserContext, phone_page: Page
) -> None:
    outpost(live_server, "set-offline", "--org", DEMO_ORG, "--entity", "competitor", "--disable")
    phone = phone_page
    sign_in(phone, "east1")
    assert "competitor" not in device_counts(phone)

    admin = desktop.new_page()
    admin_sign_in(admin, "/admin/offline/")
    expect(admin.get_by_role("heading", name="Mobile offline profile")).to_be_visible()
    offline = admin.get_by_label("Competitors offline", exact=True)
    expect(offline).not_to_be_checked()
    offline.check()
    admin.get_by_role("button", name="Save and publish").click()
    expect(admin.get_by_role("status")).to_contain_text("Offline profile saved")
    expect(admin.get_by_label("Competitors offline", exact=True)).to_be_checked()

    # Form scripts on the competitor form: one that uses the offline API, one that throws.
    admin.get_by_role("link", name="Client scripts").click()
    for event, source in (("On load", ONLOAD), ("On save", ONSAVE)):
        admin.get_by_label("Entity form").select_option(label="Competitor")
        admin.get_by_label("Event").select_option(label=event)
        admin.get_by_label("JavaScript file").set_input_files(
            files=[{"name": "competitor.js", "mimeType": "text/javascript", "buffer": source}]
        )
        admin.get_by_role("button", name="Upload").click()
        expect(admin.get_by_role("status")).to_contain_text("Script saved")

    # The dry run for the phone's user, before the phone updates.
    admin.get_by_role("link", name="Dry run").click()
    admin.get_by_label("User").select_option(label="Nancy Anderson")
    admin.get_by_role("button", name="Run").click()
    rows = admin.locator("tr[data-entity]")
    expect(rows.first).to_be_visible()
    counted = {
        entity: int(n)
        for entity, n in rows.evaluate_all("rows => rows.map(r => [r.dataset.entity, r.cells[2].textContent])")
    }
    assert counted["competitor"] > 0

    # The phone, still connected, syncs again (as when it comes back to the foreground): the
    # update is offered, and after it the device holds exactly what the dry run counted.
    call(phone, f"() => {CTX}.sync.kick()")
    accept_updates(phone)
    # The dialog closes before the new download starts: wait until the device holds this version.
    wait_for(phone, f"() => {CTX}.sync.status.updatesAvailable === false && {CTX}.sync.status.download === null")
    wait_synced(phone)
    assert device_counts(phone) == {e: n for e, n in counted.items() if n}
    wait_for(
        phone, "async () => (await (await caches.open('outpost-scripts')).keys()).length === 2", what="scripts cached"
    )

    # The form runs the on-load script (answered from the device), and a throwing on-save script
    # is reported without stopping the save.
    admin_api = live_server.client("admin")
    competitor = get(admin_api, "/api/data/competitors?$select=competitorid,name&$orderby=name&$top=1")["value"][0]
    phone.goto(f"/#/record/competitor/{competitor['competitorid']}")
    expect(
        phone.get_by_text(f"Script ran for {competitor['name']}: {counted['competitor']} competitors")
    ).to_be_visible()
    phone.get_by_label("Website").fill("https://renamed.example")
    phone.get_by_role("button", name="Save").click()
    failed = "The on save script of this form failed: boom"  # on the form, and as a message that outlives it
    expect(phone.locator("#banners").get_by_role("alert").filter(has_text=failed)).to_be_visible()
    expect(phone.get_by_role("status").filter(has_text="Competitor saved.")).to_be_visible()
    wait_synced(phone)
    saved = get(admin_api, f"/api/data/competitors({competitor['competitorid']})?$select=websiteurl")
    assert saved["websiteurl"] == "https://renamed.example"


def test_a_revoked_device_wipes_itself_and_signs_out_at_its_next_connection(
    live_server: LiveServer, desktop: BrowserContext, phone_context: BrowserContext, phone_page: Page
) -> None:
    phone = phone_page
    sign_in(phone, "east2")
    device_id = call(phone, f"() => {CTX}.sync.deviceId()")
    assert device_counts(phone)

    admin = desktop.new_page()
    admin_sign_in(admin, "/admin/devices/")
    row = admin.get_by_role("row").filter(has=admin.get_by_role("link", name=f"Device {device_id[:8]}"))
    expect(row).to_contain_text("Kevin Patel")
    row.get_by_role("link", name=f"Device {device_id[:8]}").click()
    admin.get_by_role("button", name="Revoke and wipe").click()
    expect(admin.get_by_role("status")).to_contain_text("Device revoked")

    phone.reload()
    expect(phone.get_by_label("Organisation")).to_be_visible()  # signed out: the sign-in screen
    wait_for(
        phone,
        "async () => (await indexedDB.databases()).every((d) => !d.name.startsWith('outpost:'))",
        what="the organisation's store is deleted",
    )
    assert store_names(phone) == []
    assert phone.evaluate("localStorage.getItem('outpost:identity')") is None
    wait_for(phone, "async () => (await fetch('/api/auth/me')).status === 401", what="the session has ended")
    audit = admin.goto("/admin/audit/")
    assert audit is not None
    expect(admin.get_by_role("cell", name="device.revoke")).to_be_visible()
    # Signing in again makes a new device (a new store, a new id), which is not revoked.
    open_app(phone)
    sign_in(phone, "east2")
    assert call(phone, f"() => {CTX}.sync.deviceId()") != device_id
