"""Sync journeys in a real browser against the real server process (issue 5).

Each journey signs in through the app's own screens, works with the server process really
stopped, brings the same server back on the same port and database, and checks the outcome
both on the device (IndexedDB through the app) and on the server (over HTTP as admin, and
the change log). Measured figures (time to drain, live-push latency) are printed.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from tests.e2e.conftest import PHONE, REPO_ROOT, TIMEOUT_MS, LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    DRAIN_MS,
    call,
    change_log,
    come_online,
    create,
    device_record,
    expect_offline_status_pending,
    fill_sign_in,
    get,
    get_or_none,
    go_offline,
    last_change,
    open_app,
    open_more,
    outpost,
    pending,
    raw_store,
    remove,
    retrieve,
    revoke_sessions,
    sign_in,
    status,
    store_names,
    update,
    user_id,
    wait_for,
    wait_synced,
)
from tests.e2e.waits import wait_until


@pytest.fixture(scope="module", autouse=True)
def frozen_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Serve a snapshot of webapp/static taken when this module starts (`OUTPOST_STATIC_FOLDER`).

    The server hashes its static files once at start and the service worker checks every file it
    precaches against that hash; a file edited in the checkout while a test runs would fail the
    install, and with it every offline reload. Every server of this module serves one version.
    """
    dest = tmp_path_factory.mktemp("frozen") / "static"
    shutil.copytree(REPO_ROOT / "webapp" / "static", dest, ignore=shutil.ignore_patterns("__pycache__"))
    patch = pytest.MonkeyPatch()
    patch.setenv("OUTPOST_STATIC_FOLDER", str(dest))
    yield dest
    patch.undo()


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measured figure past pytest's capture, so it shows in a normal run."""
    with capsys.disabled():
        print(f"\n  [figure] {line}")


@pytest.fixture
def second_phone(live_server: LiveServer, chromium: Browser, pw: Playwright) -> Iterator[BrowserContext]:
    """Another phone (its own storage), pointed at the same live server."""
    device = {k: v for k, v in pw.devices[PHONE].items() if k != "default_browser_type"}
    context = chromium.new_context(**device, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    yield context
    context.close()


def owned_by(api: Any, entity_set: str, select: str, owner: str, top: int = 1) -> list[dict[str, Any]]:
    """The first `top` records of an entity set owned by a user, by their first selected column."""
    query = f"$select={select}&$filter=_ownerid_value eq {owner}&$orderby={select.split(',')[0]}&$top={top}"
    page = get(api, f"/api/data/{entity_set}?{query}")
    assert len(page["value"]) == top, f"the demo has too few {entity_set} owned by {owner}"
    return page["value"]  # type: ignore[no-any-return]


# --- 1. the reference scenario ----------------------------------------------------------------


def test_offline_creates_updates_and_deletes_survive_a_reload_and_reach_the_server_in_order(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven offline operations across entities, a reload offline, then the queue drains in order."""
    page = phone_page
    me = sign_in(page, "east1")["user"]
    admin = live_server.client("admin")
    existing_account = owned_by(admin, "accounts", "name,accountid,telephone1", me["id"])[0]
    # A contact of east1's that is not the existing account's contact, so its delete touches nothing else.
    contacts = owned_by(admin, "contacts", "fullname,contactid,_parentcustomerid_value", me["id"], top=5)
    doomed = next(c for c in contacts if c["_parentcustomerid_value"] != existing_account["accountid"])
    assert device_record(page, "contact", doomed["contactid"]) is not None

    baseline = last_change(live_server)
    go_offline(live_server, phone_context)
    account_id = create(page, "account", {"name": "Offline Harbour Ltd", "address1_city": "Dover"})
    contact_id = create(
        page,
        "contact",
        {
            "firstname": "Ada",
            "lastname": "Offline",
            "parentcustomerid_account@odata.bind": f"/accounts({account_id})",
        },
    )
    lead_id = create(page, "lead", {"subject": "Met at the quay", "lastname": "Quayside", "companyname": "Quay Co"})
    update(page, "account", existing_account["accountid"], {"telephone1": "+44 20 7946 0000"})
    update(page, "contact", contact_id, {"jobtitle": "Harbour Master"})
    remove(page, "contact", doomed["contactid"])
    task_id = create(
        page,
        "task",
        {"subject": "Send the offline quote", "regardingobjectid_account@odata.bind": f"/accounts({account_id})"},
    )
    assert pending(page) == 7
    # The new contact already shows its new account as parent on the device.
    assert device_record(page, "contact", contact_id)["_parentcustomerid_value"] == account_id  # type: ignore[index]

    # The app opens from the device with the server stopped, and the queue survived.
    page.reload()
    wait_until(page, "Boolean(window.Outpost?.ctx.store && window.Outpost.ctx.sync)")
    expect_offline_status_pending(page, 7)
    assert status(page)["pending"] == 7
    assert status(page)["connection"] != "online"
    assert device_record(page, "contact", doomed["contactid"]) is None

    restarting = time.monotonic()
    live_server.start()
    restarted = time.monotonic() - restarting
    assert pending(page) == 7  # the phone is still cut off
    started = time.monotonic()
    come_online(live_server, phone_context)
    wait_synced(page, DRAIN_MS)
    drained = time.monotonic() - started
    report(capsys, f"server restart {restarted:.2f} s; 7 offline operations drained {drained:.2f} s after reconnecting")
    expect_offline_status_pending(page, 0)

    account = get(admin, f"/api/data/accounts({account_id})")
    assert (account["name"], account["address1_city"], account["_ownerid_value"]) == (
        "Offline Harbour Ltd",
        "Dover",
        me["id"],
    )
    contact = get(admin, f"/api/data/contacts({contact_id})")
    assert (contact["fullname"], contact["jobtitle"], contact["_parentcustomerid_value"]) == (
        "Ada Offline",
        "Harbour Master",
        account_id,
    )
    lead = get(admin, f"/api/data/leads({lead_id})")
    assert (lead["subject"], lead["fullname"], lead["companyname"]) == ("Met at the quay", "Quayside", "Quay Co")
    assert get(admin, f"/api/data/accounts({existing_account['accountid']})")["telephone1"] == "+44 20 7946 0000"
    assert get_or_none(admin, f"/api/data/contacts({doomed['contactid']})") is None
    task = get(admin, f"/api/data/tasks({task_id})")
    assert (task["subject"], task["_regardingobjectid_value"]) == ("Send the offline quote", account_id)

    # Applied once each, in the order they were made (the contact's create after its account's). The
    # delete also clears lookups to the contact on other records (server-side cascades), left out here.
    ids = {account_id, contact_id, lead_id, existing_account["accountid"], doomed["contactid"], task_id}
    assert [change for change in change_log(live_server, baseline) if change[1] in ids] == [
        ("account", account_id, "create"),
        ("contact", contact_id, "create"),
        ("lead", lead_id, "create"),
        ("account", existing_account["accountid"], "update"),
        ("contact", contact_id, "update"),
        ("contact", doomed["contactid"], "delete"),
        ("task", task_id, "create"),
    ]
    # Every record the device holds now is the server's confirmed state.
    assert device_record(page, "contact", contact_id)["versionnumber"] == contact["versionnumber"]  # type: ignore[index]


# --- 2. conflicts under both settings ---------------------------------------------------------


@pytest.mark.parametrize("detection", ["off", "on"])
def test_a_conflicting_offline_edit_follows_the_administrators_conflict_setting(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page, detection: str
) -> None:
    """Off: the device's values win, no sync error. On: the server keeps the field it changed, the rest applies."""
    said = outpost(live_server, "set-offline", "--org", "contoso", "--conflict-detection", detection)
    assert f"conflict detection {detection}" in said
    page = phone_page
    me = sign_in(page, "east1")["user"]
    assert page.evaluate(f"{CTX}.store.customizations.conflict_detection") is (detection == "on")
    admin = live_server.client("admin")
    record = owned_by(admin, "accounts", "name,accountid,telephone1,websiteurl", me["id"])[0]
    account_id = record["accountid"]

    go_offline(live_server, phone_context)
    update(page, "account", account_id, {"telephone1": "+1 555 0100 (device)", "websiteurl": "https://device.example"})
    live_server.start()  # the server is back, the phone is still cut off: the office edits X meanwhile
    assert admin.patch(f"/api/data/accounts({account_id})", {"telephone1": "+1 555 0199 (office)"}).status == 200
    come_online(live_server, phone_context)
    wait_synced(page)

    server = get(admin, f"/api/data/accounts({account_id})")
    device = device_record(page, "account", account_id)
    assert device is not None
    errors = call(page, f"() => {CTX}.store.errors()")
    open_more(page, "Offline Status")
    if detection == "off":
        assert (server["telephone1"], server["websiteurl"]) == ("+1 555 0100 (device)", "https://device.example")
        assert errors == []
        expect(page.get_by_text("No sync errors.")).to_be_visible()
    else:
        assert (server["telephone1"], server["websiteurl"]) == ("+1 555 0199 (office)", "https://device.example")
        assert [(e["label"], e["status"], e["sent"]["id"]) for e in errors] == [
            ("Automatically resolved", "conflict", account_id)
        ]
        assert "telephone1" in errors[0]["reason"]["message"]
        item = page.get_by_role("listitem").filter(has_text="Automatically resolved")
        expect(item).to_have_count(1)
        expect(item).to_contain_text(f"Account “{record['name']}”")  # the record by name, the field by label
        expect(item).to_contain_text("Main Phone: the server's value was kept.")
    # Either way the device now shows exactly what the server holds.
    assert (device["telephone1"], device["websiteurl"], device["versionnumber"]) == (
        server["telephone1"],
        server["websiteurl"],
        server["versionnumber"],
    )


# --- 3. live push between two devices ---------------------------------------------------------

WATCH = """([entity, id, field, value]) => {
    window.__seenAt = null;
    const ctx = window.Outpost.ctx;
    const check = async () => {
        const record = await ctx.store.get(entity, id);
        if (window.__seenAt === null && record && record[field] === value) window.__seenAt = Date.now();
    };
    window.__unwatch?.();
    window.__unwatch = ctx.store.subscribe(() => { check(); });
}"""

TIMED = """async ([kind, entity, idOrData, data]) => {
    const started = Date.now();
    if (kind === "create") await window.Outpost.ctx.data.create(entity, idOrData);
    else await window.Outpost.ctx.data.update(entity, idOrData, data);
    return started;
}"""


def test_a_change_on_one_device_appears_on_another_device_of_the_business_unit_without_any_action(
    live_server: LiveServer,
    phone_context: BrowserContext,
    phone_page: Page,
    second_phone: BrowserContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """east1 creates then updates an account; east2's device shows each change by itself, quickly."""
    a, b = phone_page, second_phone.new_page()
    sign_in(a, "east1")
    sign_in(b, "east2")
    account_id = str(uuid.uuid4())

    b.evaluate(WATCH, ["account", account_id, "name", "Live Push Ltd"])
    started = call(a, TIMED, ["create", "account", {"accountid": account_id, "name": "Live Push Ltd"}, None])
    wait_for(b, "() => window.__seenAt !== null", 5_000, "east2's device shows east1's new account")
    create_latency = b.evaluate("window.__seenAt") - started

    b.evaluate(WATCH, ["account", account_id, "telephone1", "+44 1632 960000"])
    started = call(a, TIMED, ["update", "account", account_id, {"telephone1": "+44 1632 960000"}])
    wait_for(b, "() => window.__seenAt !== null", 5_000, "east2's device shows east1's update")
    update_latency = b.evaluate("window.__seenAt") - started

    report(capsys, f"live push device A -> device B: create {create_latency} ms, update {update_latency} ms")
    seen = device_record(b, "account", account_id)
    assert seen is not None and seen["name"] == "Live Push Ltd" and seen["telephone1"] == "+44 1632 960000"
    assert retrieve(b, "account", account_id)["name"] == "Live Push Ltd"
    assert pending(b) == 0  # B did nothing: no operation of its own


# --- 4. a reassigned record leaves the device that lost it -------------------------------------


def test_a_record_assigned_to_another_business_unit_disappears_from_the_device(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    """Admin assigns an account of east1's to west1 over HTTP; east1's device drops it by itself."""
    page = phone_page
    me = sign_in(page, "east1")["user"]
    admin = live_server.client("admin")
    account = owned_by(admin, "accounts", "name,accountid", me["id"])[0]
    assert device_record(page, "account", account["accountid"]) is not None
    west1 = user_id(admin, "west1")

    started = time.monotonic()
    resp = admin.post(
        f"/api/data/accounts({account['accountid']})/assign", {"ownerid@odata.bind": f"/systemusers({west1})"}
    )
    assert resp.status == 200, resp.json
    assert resp.json["_ownerid_value"] == west1
    wait_for(
        page,
        f"async () => (await {CTX}.store.get('account', '{account['accountid']}')) === null",
        10_000,
        "the reassigned account leaves east1's device",
    )
    report(capsys, f"reassigned record removed from the device {time.monotonic() - started:.2f} s after the assign")
    assert device_record(page, "account", account["accountid"]) is None
    found = call(
        page, f"(o) => {CTX}.data.query('account', o)", f"$select=name&$filter=accountid eq {account['accountid']}"
    )
    assert found["entities"] == []
    assert pending(page) == 0
    # east1 can no longer read it on the server either: the device agrees with the server.
    assert live_server.client("east1").get(f"/api/data/accounts({account['accountid']})").status == 404


# --- 5. Reconfigure with two organisations ----------------------------------------------------

FABRIKAM_PASSWORD = "Fabrikam-2026!"


def test_reconfigure_warns_of_unsynced_changes_and_removes_only_that_organisations_store(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """contoso and fabrikam on one phone: Reconfigure on fabrikam empties fabrikam's store and keeps contoso's."""
    outpost(live_server, "create-org", "fabrikam")
    outpost(
        live_server,
        "create-user",
        "--org",
        "fabrikam",
        "--username",
        "ana",
        "--password",
        FABRIKAM_PASSWORD,
        "--business-unit",
        "Fabrikam",
        "--role",
        "Salesperson",
    )
    page = phone_page
    contoso = sign_in(page, "east1")
    contoso_db = f"outpost:contoso:{contoso['user']['id']}"
    go_offline(live_server, phone_context)
    kept_id = create(page, "account", {"name": "Contoso Kept Offline"})
    assert pending(page) == 1
    come_online(live_server, phone_context)
    wait_synced(page)
    assert get(live_server.client("admin"), f"/api/data/accounts({kept_id})")["name"] == "Contoso Kept Offline"

    # Sign out without clearing; the contoso store stays on the phone.
    open_more(page, "User Information")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_label("Organisation")).to_be_visible()
    assert contoso_db in store_names(page)

    fabrikam = sign_in(page, "ana", org="fabrikam", password=FABRIKAM_PASSWORD)
    fabrikam_db = f"outpost:fabrikam:{fabrikam['user']['id']}"
    old_device = call(page, f"() => {CTX}.sync.deviceId()")
    go_offline(live_server, phone_context)
    lost_id = create(page, "account", {"name": "Fabrikam Never Synced"})
    assert pending(page) == 1

    open_more(page, "User Information")
    page.get_by_role("button", name="Reconfigure").click()
    dialog = page.get_by_role("dialog", name="Reconfigure")
    expect(dialog).to_contain_text("1 change has not been synced yet and will be lost.")
    dialog.get_by_role("button", name="Reconfigure").click()
    expect(dialog).to_be_hidden()
    wait_for(
        page,
        f"async () => {CTX}.store && (await {CTX}.sync.deviceId()) !== {old_device!r}",
        what="a fresh fabrikam store with a new device id",
    )

    assert store_names(page) == sorted([contoso_db, fabrikam_db])
    fresh = raw_store(page, fabrikam_db)
    assert fresh is not None
    assert (fresh["records"], fresh["queue"]) == ([], [])  # the old store and its queue are gone
    assert "downloaded_version" not in fresh["meta"]
    kept = raw_store(page, contoso_db)
    assert kept is not None and kept["queue"] == []
    assert kept["meta"]["downloaded_version"]
    by_id = {(r["entity"], r["id"]): r for r in kept["records"]}
    assert len(by_id) > 50  # the whole contoso download is still there
    assert by_id[("account", kept_id)]["server"]["name"] == "Contoso Kept Offline"

    # Back online, the discarded change never reaches the server.
    come_online(live_server, phone_context)
    wait_until(page, f"{CTX}.sync.status.connection === 'online'")
    ana = live_server.client(None)
    ana.login("ana", FABRIKAM_PASSWORD, org="fabrikam")
    assert ana.get(f"/api/data/accounts({lost_id})").status == 404
    assert get(ana, "/api/data/accounts?$select=name")["value"] == []


# --- 6. two tabs ------------------------------------------------------------------------------

QUIET_MS = 300
QUIET = """async ([quietMs, timeout]) => {
    const channel = new BroadcastChannel(`outpost-sync:${window.Outpost.ctx.store.name}`);
    let last = Date.now();
    let count = 0;
    channel.onmessage = () => {
        last = Date.now();
        count += 1;
    };
    const end = Date.now() + timeout;
    try {
        while (Date.now() < end) {
            if (Date.now() - last >= quietMs) return { quiet: true, count };
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return { quiet: false, count };
    } finally {
        channel.close();
    }
}"""
LISTEN = """() => {
    window.__notified = [];
    window.Outpost.ctx.store.subscribe(({ entities }) => window.__notified.push(...entities));
}"""


def test_two_tabs_share_one_sync_loop_and_see_each_others_changes(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """One tab holds the lock; the other's change is pushed by it; both see every change."""
    first = phone_page
    sign_in(first, "east1")
    second = phone_context.new_page()
    open_app(second)
    wait_until(second, f"Boolean({CTX}.sync) && {CTX}.sync.status.offlineReady")
    leaders = [p.evaluate(f"{CTX}.sync.status.leader") for p in (first, second)]
    assert leaders == [True, False]
    leader, follower = first, second
    leader.evaluate(LISTEN)
    follower.evaluate(LISTEN)

    # A change made in the tab without the lock: the leader pushes it.
    account_id = create(follower, "account", {"name": "Second Tab Traders"})
    wait_for(follower, f"async () => (await {CTX}.store.pendingCount()) === 0", DRAIN_MS, "the leader pushed it")
    admin = live_server.client("admin")
    assert get(admin, f"/api/data/accounts({account_id})")["name"] == "Second Tab Traders"
    wait_for(leader, "() => window.__notified.includes('account')", what="the leader's store hears of it")
    # Telling the other tab is one message per change, not an echo between the tabs.
    quiet = call(leader, QUIET, [QUIET_MS, 5_000], timeout=8_000)
    assert quiet["quiet"], f"the tabs' channel never fell quiet: {quiet['count']} messages in 5 s after one change"
    assert retrieve(leader, "account", account_id)["name"] == "Second Tab Traders"

    # A change from the server reaches the leader's socket; the other tab hears of it too.
    follower.evaluate("window.__notified = []")
    assert admin.patch(f"/api/data/accounts({account_id})", {"telephone1": "+1 202 555 0143"}).status == 200
    wait_for(follower, "() => window.__notified.includes('account')", what="the other tab's store notifies")
    wait_for(
        follower,
        f"async () => (await {CTX}.data.retrieve('account', '{account_id}')).telephone1 === '+1 202 555 0143'",
        what="the other tab reads the server's change",
    )
    assert follower.evaluate(f"{CTX}.sync.status.leader") is False

    # When the leader closes, the other tab takes over the loop.
    leader.close()
    wait_until(follower, f"{CTX}.sync.status.leader === true")
    wait_synced(follower)


# --- 7. session expiry while offline ----------------------------------------------------------

STAYS_SIGNED_OUT_MS = 2_000  # the slowest back-off is 30 s: nothing should stir in this window
RELAPSE = """(ms) => new Promise((resolve) => {
    let done = false;
    let off = null;
    const finish = (value) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        off?.();
        resolve(value);
    };
    const timer = setTimeout(() => finish(false), ms);
    off = window.Outpost.ctx.sync.subscribe((s) => { if (s.connection !== "signed-out") finish(true); });
    if (done) off();
})"""
RECORD_CONNECTION = """() => {
    window.__connections = [];
    window.Outpost.ctx.sync.subscribe((s) => window.__connections.push(s.connection));
}"""


def test_a_session_ended_while_offline_signs_the_app_out_but_keeps_the_queue_for_the_same_user(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    """The queue waits on the device through a revoked session and drains after signing in again."""
    page = phone_page
    me = sign_in(page, "east1")["user"]
    admin = live_server.client("admin")
    account = owned_by(admin, "accounts", "name,accountid,telephone1", me["id"])[0]
    store_db = f"outpost:contoso:{me['id']}"

    go_offline(live_server, phone_context)
    contact_id = create(page, "contact", {"firstname": "Queued", "lastname": "Throughout"})
    update(page, "account", account["accountid"], {"telephone1": "+61 2 5550 1234"})
    assert pending(page) == 2
    revoke_sessions(live_server, me["id"])  # the session ends on the server while the phone is away

    page.evaluate(RECORD_CONNECTION)
    come_online(live_server, phone_context)
    wait_until(page, f"{CTX}.sync.status.connection === 'signed-out'")
    assert pending(page) == 2
    open_more(page, "Offline Status")
    # Signed out, the app waits for a sign-in (retrying at its slowest back-off): it must not
    # hammer the server with sessions it knows are over, nor flicker between states.
    relapsed = call(page, RELAPSE, STAYS_SIGNED_OUT_MS)
    history = page.evaluate("window.__connections")
    assert not relapsed, f"left 'signed-out' within {STAYS_SIGNED_OUT_MS} ms: {history[-12:]}"
    expect(page.get_by_text("Signed out (changes wait on the device)")).to_be_visible()
    assert admin.get(f"/api/data/contacts({contact_id})").status == 404

    # Opened again, the app asks for a sign-in; the queue is still in the device store.
    page.reload()
    expect(page.get_by_label("Organisation")).to_be_visible()
    assert page.evaluate(f"{CTX}.identity") is None
    queued = raw_store(page, store_db)
    assert queued is not None
    assert [(op["kind"], op["entity"]) for op in queued["queue"]] == [("create", "contact"), ("update", "account")]

    started = time.monotonic()
    fill_sign_in(page, "east1")
    wait_synced(page)
    report(capsys, f"queue of 2 drained {time.monotonic() - started:.2f} s after signing in again")
    assert get(admin, f"/api/data/contacts({contact_id})")["fullname"] == "Queued Throughout"
    assert get(admin, f"/api/data/accounts({account['accountid']})")["telephone1"] == "+61 2 5550 1234"
