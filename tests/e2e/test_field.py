"""Field experience (issue 15): what a salesperson sees of the connection, the queue and sync errors.

- The top bar's indicator: Online, Offline (the server process really stopped), Syncing, with
  the number of pending changes in its accessible name; tapping it opens Offline Status.
- The entity marks say whether the records are on the device, in words that never read as the
  connection ("Available offline"); each entity shows its own sync time, whole.
- A change the server refused or resolved: a banner naming the record and the fields by their
  labels, linking to the record; Offline Status shows the same words as a card with Retry and
  Discard, no JSON and no internal names; a conflict offers the three values and keeping either.

Screenshots for a person to look at go to test-artifacts/ (412 x 915, the phone's size).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import REPO_ROOT, LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    call,
    come_online,
    get,
    go_offline,
    open_more,
    outpost,
    sign_in,
    update,
    user_id,
    wait_synced,
)

ARTIFACTS = REPO_ROOT / "test-artifacts"
PHONE_SIZE = {"width": 412, "height": 915}

# Every distinct name the indicator shows, in order (a MutationObserver sees even a brief one).
RECORD_NAMES = """() => {
    const button = document.getElementById("connection-button");
    window.__names = [button.textContent.trim()];
    new MutationObserver(() => {
        const name = button.hidden ? "(hidden)" : button.textContent.trim();
        if (window.__names[window.__names.length - 1] !== name) window.__names.push(name);
    }).observe(button, { subtree: true, childList: true, characterData: true, attributes: true });
}"""


# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


def shot(page: Page, name: str) -> None:
    """A screenshot of what the phone shows, for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"field-{name}.png"))


def owned(api: Any, entity_set: str, select: str, owner: str, top: int = 1) -> list[dict[str, Any]]:
    """The first `top` records of an entity set owned by a user."""
    query = f"$select={select}&$filter=_ownerid_value eq {owner}&$orderby={select.split(',')[0]}&$top={top}"
    rows = get(api, f"/api/data/{entity_set}?{query}")["value"]
    assert len(rows) == top, f"the demo has too few {entity_set} owned by {owner}"
    return rows  # type: ignore[no-any-return]


def indicator(page: Page) -> Any:
    """The top bar's connection indicator (a button named by its words)."""
    return page.get_by_role("banner").get_by_role("button", name=re.compile(r"^(Online|Offline|Syncing|Connecting)"))


# --- item 1: connection and queue at a glance ---------------------------------------------------


def test_the_top_bar_shows_online_offline_syncing_and_pending_changes_and_opens_offline_status(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Online; the server stopped: Offline, then "Offline · 2 pending"; back: Syncing, then Online."""
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    me = sign_in(page, "east1")["user"]
    api = live_server.client("admin")
    account = owned(api, "accounts", "name,accountid", me["id"])[0]
    expect(page.get_by_role("button", name="Online", exact=True)).to_be_visible()
    page.evaluate(RECORD_NAMES)

    live_server.stop()  # the honest offline: nothing answers
    expect(page.get_by_role("button", name="Offline", exact=True)).to_be_visible()
    update(page, "account", account["accountid"], {"telephone1": "+1 555 0101"})
    update(page, "account", account["accountid"], {"websiteurl": "https://offline.example"})
    expect(page.get_by_role("button", name="Offline · 2 pending", exact=True)).to_be_visible()
    expect(indicator(page)).to_have_count(1)
    shot(page, "topbar-offline-pending")

    live_server.start()
    indicator(page).click()  # tapping it opens Offline Status, and tries the server again now
    expect(page.get_by_role("heading", name="Offline Status", level=1)).to_be_visible()
    wait_synced(page)
    expect(page.get_by_role("button", name="Online", exact=True)).to_be_visible()
    names = page.evaluate("window.__names")
    assert names[0] == "Online" and names.index("Offline") < names.index("Offline · 1 pending"), names
    assert "Offline · 1 pending" in names and "Offline · 2 pending" in names, names
    # The way back: the queue syncs (still counted), then Online with nothing pending.
    back = names[names.index("Offline · 2 pending") + 1 :]
    assert back[0] == "Syncing · 2 pending", names  # straight from Offline to Syncing
    assert not any(n.startswith("Online ·") for n in names), names  # never "Online" while changes wait to go
    assert names[-1] == "Online", names
    assert all("Available" not in n for n in names)
    on_server = get(api, f"/api/data/accounts({account['accountid']})?$select=telephone1,websiteurl")
    assert (on_server["telephone1"], on_server["websiteurl"]) == ("+1 555 0101", "https://offline.example")


def test_the_entity_marks_say_available_offline_and_each_entity_shows_its_own_whole_sync_time(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Home and Offline Status: "Available offline" (never "Offline"), and Accounts' own later sync time."""
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    me = sign_in(page, "east1")["user"]
    api = live_server.client("admin")
    account = owned(api, "accounts", "name,accountid", me["id"])[0]

    open_more(page, "Home")
    entities = page.get_by_role("list", name="Entities")
    expect(entities.get_by_role("link", name=re.compile(r"^Accounts"))).to_contain_text("Available offline")
    # No mark anywhere reads like the connection state.
    marks = entities.locator(".badge").all_inner_texts()
    assert marks and all(m in ("Available offline", "Not available offline", "Online only") for m in marks), marks
    shot(page, "home-marks")

    times_before = call(page, f"() => {CTX}.store.getMeta('entity_sync_times', null)")
    assert {"account", "contact", "lead"} <= set(times_before), times_before
    # An hour passes for the contacts (their download time moved back), and an account changes.
    call(
        page,
        f"""async () => {{
            const times = await {CTX}.store.getMeta('entity_sync_times', null);
            times.contact = new Date(Date.now() - 3600_000).toISOString();
            await {CTX}.store.setMeta('entity_sync_times', times);
        }}""",
    )
    update(page, "account", account["accountid"], {"telephone1": "+1 555 0102"})
    wait_synced(page)
    times = call(page, f"() => {CTX}.store.getMeta('entity_sync_times', null)")
    assert times["account"] > times_before["account"]  # the ack brought the account back: its own time
    assert times["lead"] == times_before["lead"]  # nothing of the leads moved

    page.get_by_role("button", name="Online", exact=True).click()
    expect(page.get_by_role("heading", name="Offline Status", level=1)).to_be_visible()
    shown = call(
        page,
        """(times) => Object.fromEntries(Object.entries(times).map(([e, iso]) =>
            [e, new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })]))""",
        times,
    )
    rows = page.get_by_role("list", name="Entities").get_by_role("listitem")
    accounts = rows.filter(has=page.get_by_text("Accounts", exact=True))
    contacts = rows.filter(has=page.get_by_text("Contacts", exact=True))
    expect(accounts).to_contain_text(f"Sync time {shown['account']}")
    expect(contacts).to_contain_text(f"Sync time {shown['contact']}")
    assert shown["account"] != shown["contact"]
    expect(accounts).to_contain_text("Available offline")
    # Whole: no line of any row is cut off (nothing wider than its box, nothing outside the screen).
    cut = page.evaluate(
        """() => [...document.querySelectorAll('.status-entity__line, .status-entity .badge')]
            .filter((el) => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > innerWidth)
            .map((el) => el.textContent)"""
    )
    assert cut == []
    shot(page, "status-entities")


# --- item 2: errors a person can act on -----------------------------------------------------------


def no_json_or_internal_names(text: str) -> None:
    """What a person reads: no JSON, no logical names of fields or entities."""
    for internal in ("{", "}", "telephone1", "websiteurl", "accountid", "account ", "validation_failed", "forbidden"):
        assert internal not in text, f"{internal!r} in {text!r}"


def test_a_conflict_is_named_by_record_and_label_with_three_values_and_keeping_mine_makes_a_new_change(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Server wins Main Phone: a banner says so and opens the record; the card shows base, mine, server."""
    outpost(live_server, "set-offline", "--org", "contoso", "--conflict-detection", "on")
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    me = sign_in(page, "east1")["user"]
    api = live_server.client("admin")
    account = owned(api, "accounts", "name,accountid,telephone1", me["id"])[0]
    account_id, name, base = account["accountid"], account["name"], account["telephone1"]
    open_more(page, "Home")

    go_offline(live_server, phone_context)
    update(page, "account", account_id, {"telephone1": "+1 555 0100 (mine)", "websiteurl": "https://mine.example"})
    live_server.start()  # the office changes the phone number meanwhile
    assert api.patch(f"/api/data/accounts({account_id})", {"telephone1": "+1 555 0199 (office)"}).status == 200
    come_online(live_server, phone_context)
    wait_synced(page)

    banner = page.get_by_role("alert").filter(has_text=f"Account “{name}”")
    expect(banner).to_contain_text("Automatically resolved")
    expect(banner).to_contain_text("Main Phone: the server's value was kept.")
    expect(banner).to_contain_text("Your other changes were saved: Website.")
    no_json_or_internal_names(banner.inner_text())
    shot(page, "conflict-banner")
    banner.get_by_role("link", name=f"Open Account “{name}”").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(banner).to_have_count(0)  # followed: it has done its work

    open_more(page, "Offline Status")
    card = page.get_by_role("listitem", name=re.compile(f"Account “{re.escape(name)}”"))
    expect(card).to_contain_text("Main Phone: the server's value was kept.")
    no_json_or_internal_names(card.inner_text())
    three = card.get_by_role("group", name="Main Phone: the three values")
    expect(three).to_contain_text(f"When you changed it{base}")
    expect(three).to_contain_text("Yours+1 555 0100 (mine)")
    expect(three).to_contain_text("On the server (kept)+1 555 0199 (office)")
    expect(card.get_by_role("link", name="Open record")).to_have_attribute("href", f"#/record/account/{account_id}")
    card.scroll_into_view_if_needed()
    shot(page, "conflict-card")

    card.get_by_role("button", name="Keep mine").click()  # a new change, made now: it applies
    expect(page.get_by_text("No sync errors.")).to_be_visible()
    wait_synced(page)
    on_server = get(api, f"/api/data/accounts({account_id})?$select=telephone1,websiteurl")
    assert (on_server["telephone1"], on_server["websiteurl"]) == ("+1 555 0100 (mine)", "https://mine.example")
    assert call(page, f"() => {CTX}.store.errors()") == []


def test_a_refused_change_names_the_record_and_the_card_offers_retry_and_discard_in_words(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """A colleague's account edited offline: refused (no write privilege), undone, said plainly; Discard clears it."""
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    sign_in(page, "east1")
    api = live_server.client("admin")
    colleague = user_id(api, "east2")
    theirs = owned(api, "accounts", "name,accountid,telephone1", colleague)[0]
    east1 = live_server.client("east1")
    assert east1.get(f"/api/data/accounts({theirs['accountid']})").status == 200  # readable to east1 …
    refused = east1.patch(f"/api/data/accounts({theirs['accountid']})", {"telephone1": "x"})
    assert refused.status == 403, refused.json  # … but not writable
    open_more(page, "Home")

    go_offline(live_server, phone_context)
    update(page, "account", theirs["accountid"], {"telephone1": "+1 555 0142"})
    come_online(live_server, phone_context)
    wait_synced(page)

    banner = page.get_by_role("alert").filter(has_text=f"Account “{theirs['name']}”")
    expect(banner).to_contain_text(f"Not saved: Account “{theirs['name']}”")
    expect(banner).to_contain_text("You do not have permission to change this record.")
    expect(banner).to_contain_text("The server's values were restored on this device.")
    no_json_or_internal_names(banner.inner_text())
    device = call(page, f"([i]) => {CTX}.store.get('account', i)", [theirs["accountid"]])
    assert device["telephone1"] == theirs["telephone1"]  # undone on the device too
    shot(page, "refused-banner")

    banner.get_by_role("link", name="Sync errors").click()
    expect(page.get_by_role("heading", name="Offline Status", level=1)).to_be_visible()
    card = page.get_by_role("listitem", name=re.compile(f"Account “{re.escape(theirs['name'])}”"))
    expect(card).to_contain_text("Not saved")
    expect(card).to_contain_text("You do not have permission to change this record.")
    no_json_or_internal_names(card.inner_text())
    expect(card.get_by_role("button", name="Retry")).to_be_visible()
    expect(card.get_by_role("group")).to_have_count(0)  # no three-way for a refusal
    card.get_by_role("button", name="Discard").click()
    expect(page.get_by_text("No sync errors.")).to_be_visible()
    assert call(page, f"() => {CTX}.store.errors()") == []


# What the server's acks say (docs/protocol.md §5), stored the way the app's ack stores them (with
# the record's name as the device knew it), then read on Offline Status: each card in words.
RECORD_ERRORS = """async ([accountId, leadId]) => {
    const ctx = window.Outpost.ctx;
    const account = await ctx.store.get('account', accountId);
    const lead = await ctx.store.get('lead', leadId);
    const idb = await import('/static/js/idb.js');
    const queue = await import('/static/js/queue.js');
    const op = (seq, kind, entity, id, changes, extra = {}) =>
        ({ op_id: `probe-${seq}`, seq: 90000 + seq, kind, entity, id, base_version: 1, changes, ...extra });
    const cases = [
        [op(1, 'update', 'account', accountId, { name: 'x'.repeat(161), telephone1: '1' }),
         { status: 'rejected', reason: { code: 'validation_failed', message: 'name: Longer than 160 characters.',
           field: 'name', details: { name: ['Longer than 160 characters.'], new_secret: ['Unknown.'] } },
           records: [{ entity: 'account', record: account }] }, account.name],
        [op(2, 'delete', 'account', accountId, {}),
         { status: 'conflict', reason: { code: 'conflict', message: 'Automatically resolved' },
           records: [{ entity: 'account', record: account }] }, account.name],
        [op(3, 'command', 'lead', leadId, {}, { command: 'qualify_lead', args: { leadid: leadId } }),
         { status: 'rejected', reason: { code: 'not_found', message: `There is no lead with id ${leadId}.` },
           removed: [{ entity: 'lead', id: leadId }] }, lead.subject],
    ];
    await idb.transact(ctx.store.db, [idb.ERRORS], 'readwrite', async (tx) => {
        const at = new Date().toISOString();
        for (const [o, result, name] of cases) await queue.recordError(tx, ctx.store.codec, o, result, at, name);
    });
    ctx.store.notify(['account']);
}"""


def test_every_kind_of_sync_error_reads_in_words_with_labels_and_the_actions_that_apply(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Refused values (per field, by label), a delete kept by the server, a command refused."""
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    me = sign_in(page, "east1")["user"]
    api = live_server.client("admin")
    account = owned(api, "accounts", "name,accountid", me["id"])[0]
    lead = owned(api, "leads", "subject,leadid", me["id"])[0]
    call(page, RECORD_ERRORS, [account["accountid"], lead["leadid"]])
    page.get_by_role("button", name="Online", exact=True).click()

    errors = page.get_by_role("list", name="Sync errors").get_by_role("listitem")
    expect(errors).to_have_count(3)
    expect(errors.first).to_contain_text("Qualify:")  # newest first
    values = errors.filter(has_text="The server refused the values.")
    delete = errors.filter(has_text="so it was not deleted")
    qualify = errors.filter(has_text="Qualify:")
    expect(values).to_contain_text(f"Not saved Account “{account['name']}”")
    expect(values).to_contain_text("The server refused the values.")
    expect(values).to_contain_text("Account Name: Longer than 160 characters.")
    expect(values).to_contain_text("A field: Unknown.")  # a field the metadata does not name: never its internal name
    expect(values).to_contain_text("The server's values were restored on this device.")
    expect(values.get_by_role("button", name="Retry")).to_be_visible()
    expect(values.get_by_role("button", name="Discard")).to_be_visible()

    expect(delete).to_contain_text("Automatically resolved")
    expect(delete).to_contain_text("It changed on the server meanwhile, so it was not deleted")
    expect(delete.get_by_role("button", name="Delete anyway")).to_be_visible()
    expect(delete.get_by_role("button", name="Keep the server's")).to_be_visible()

    expect(qualify).to_contain_text(f"Not done Lead “{lead['subject']}”")
    expect(qualify).to_contain_text("Qualify: the record no longer exists on the server, or you may no longer see it.")
    expect(qualify.get_by_role("button", name="Retry")).to_have_count(0)  # a command is not re-run blindly
    for card in (values, delete, qualify):
        no_json_or_internal_names(card.inner_text())
        assert "new_secret" not in card.inner_text() and "qualify_lead" not in card.inner_text()
    shot(page, "error-cards")

    delete.get_by_role("button", name="Keep the server's").click()
    expect(errors).to_have_count(2)
    values.get_by_role("button", name="Discard").click()
    expect(errors).to_have_count(1)


def test_the_indicator_fits_a_360_px_phone_in_the_dark_theme_beside_the_title_and_more(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """Offline with a two-digit queue on the narrowest phone: nothing overlaps, nothing leaves the screen."""
    page = phone_page
    page.set_viewport_size({"width": 360, "height": 800})
    page.emulate_media(color_scheme="dark")
    me = sign_in(page, "east1")["user"]
    api = live_server.client("admin")
    accounts = owned(api, "accounts", "name,accountid", me["id"], top=4)
    live_server.stop()
    for n in range(12):
        update(page, "account", accounts[n % 4]["accountid"], {"telephone1": f"+1 555 01{n:02d}"})
    button = page.get_by_role("button", name="Offline · 12 pending", exact=True)
    expect(button).to_be_visible()
    boxes = page.evaluate(
        """() => Object.fromEntries(['.topbar__title', '#connection-button', '#more-button'].map((s) => {
            const r = document.querySelector(s).getBoundingClientRect();
            return [s, { left: r.left, right: r.right, height: r.height }];
        }))"""
    )
    title, box, more = boxes[".topbar__title"], boxes["#connection-button"], boxes["#more-button"]
    assert title["right"] <= box["left"] and box["right"] <= more["left"] <= more["right"] <= 360, boxes
    assert box["height"] >= 44, boxes  # a thumb's target
    facts = page.locator("dt", has_text="Pending operations").locator("xpath=following-sibling::dd[1]")
    expect(facts).to_have_text("12")  # Offline Status agrees (it re-renders a moment later)
    shot(page, "topbar-360-dark-offline")


# Acks for operations queued under older metadata (docs/protocol.md §5): the server's own words.
STALE_ERRORS = """async ([accountId, goneId]) => {
    const ctx = window.Outpost.ctx;
    const account = await ctx.store.get('account', accountId);
    const idb = await import('/static/js/idb.js');
    const queue = await import('/static/js/queue.js');
    const removed = 'Main Phone was removed by your administrator, so your value for it was not saved.';
    const gone = 'Visit Reports were removed by your administrator, so this new visit report could not be saved.';
    const cases = [
        [{ op_id: 'stale-1', seq: 91001, kind: 'update', entity: 'account', id: accountId, base_version: 1,
           changes: { name: `${account.name} (renamed)`, telephone1: '555-0100' } },
         { status: 'conflict', records: [{ entity: 'account', record: account }],
           reason: { code: 'attribute_removed', message: removed, field: 'telephone1', fields: ['telephone1'],
                     details: { telephone1: [removed] } } }, account.name],
        [{ op_id: 'stale-2', seq: 91002, kind: 'create', entity: 'new_visitreport', id: goneId, base_version: null,
           changes: { new_subject: 'Site visit' } },
         { status: 'rejected', records: [], removed: [], reason: { code: 'entity_removed', message: gone } }, null],
    ];
    await idb.transact(ctx.store.db, [idb.ERRORS], 'readwrite', async (tx) => {
        const at = new Date().toISOString();
        for (const [o, result, name] of cases) await queue.recordError(tx, ctx.store.codec, o, result, at, name);
    });
    ctx.store.notify(['account']);
}"""


def test_a_change_refused_under_older_metadata_reads_as_the_server_says_it(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """A removed field's value: the server's message, the other changes saved, no "Keep mine" for
    a field that is gone; a removed entity: the server's message naming it."""
    page = phone_page
    page.set_viewport_size(PHONE_SIZE)
    me = sign_in(page, "east1")["user"]
    account = owned(live_server.client("admin"), "accounts", "name,accountid", me["id"])[0]
    call(page, STALE_ERRORS, [account["accountid"], "0b7c6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b"])
    page.get_by_role("button", name="Online", exact=True).click()

    errors = page.get_by_role("list", name="Sync errors").get_by_role("listitem")
    expect(errors).to_have_count(2)
    field = errors.filter(has_text="Main Phone was removed")
    expect(field).to_contain_text(f"Automatically resolved Account “{account['name']}”")
    expect(field).to_contain_text("Main Phone was removed by your administrator, so your value for it was not saved.")
    expect(field).to_contain_text("Your other changes were saved: Account Name.")
    expect(field).not_to_contain_text("the server's value was kept")
    expect(field.get_by_role("button", name="Keep mine")).to_have_count(0)
    entity = errors.filter(has_text="Visit Reports were removed")
    expect(entity).to_contain_text(
        "Visit Reports were removed by your administrator, so this new visit report could not be saved."
    )
    expect(entity).to_contain_text("It was removed from this device.")
    expect(entity.get_by_role("button", name="Retry")).to_have_count(0)  # it would be refused again
    expect(entity.get_by_role("button", name="Discard")).to_be_visible()
