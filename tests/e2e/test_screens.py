"""The screens on a phone: lists, record forms, the lookup picker and search — online, then
from the device with the server process really stopped.

A salesperson (east1 of the demo organisation) signs in on a Pixel-class phone, takes the
"Offline Updates Available", and works through the day: system views of accounts and contacts
(a linked column, sorting, switching views), a record edited with the lookup picker, the
categorized search on a list, the global search (dates too), a contact created and another
deleted, the activities view. Then the server stops, the page reloads from the service worker
and the same journey runs again from the device: what was visible is unchanged, the offline
edits show, and once the server is back they reach it.

Also: every main screen passes axe-core with no serious or critical violation, in the light and
the dark theme (axe-core is installed with npm into .tools/ on first use, pinned in
benchmarks/screenshots.py; the test is skipped with the reason when npm is missing); a lookup whose
target entity is not offline keeps its name and says why it cannot be changed; before the
offline data is downloaded ("Skip for now") the same screens work against the Web API; and a
datetime is edited in the phone's time zone and saved in UTC. Screenshots of the main screens
go to test-artifacts/screen-*.png (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, WebSocketRoute, expect

from benchmarks import screenshots
from tests.e2e.waits import wait_until
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

if TYPE_CHECKING:  # the fixtures' classes (tests/e2e is not a package: conftest is not imported here)
    from tests.e2e.conftest import ApiClient, LiveServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DOWNLOAD_TIMEOUT_MS = 60_000
SYNC_TIMEOUT_MS = 30_000
USER = "east1"

# --- helpers: the app -----------------------------------------------------------------------------


def shoot(page: Page, name: str) -> None:
    """A screenshot of what the phone shows, for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"screen-{name}.png"))


def sign_in(page: Page, username: str = USER) -> None:
    """Sign in on the sign-in screen."""
    expect(page.get_by_role("heading", name="Sign in to Outpost")).to_be_visible()
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def take_offline_updates(
    context: BrowserContext, username: str = USER, on_prompt: Callable[[Page], None] | None = None
) -> Page:
    """Sign in; "Offline Updates Available" → Update; the download shows its progress; "Available".

    The first sign-in runs in a tab whose sync socket is relayed by Playwright, which holds the
    download's third page until the progress bar has been seen (a download of the demo data is
    over in about a second). That tab closes once the device is offline-ready; the returned tab
    talks to the server directly, and its socket is the app's own.
    """
    held: list[str | bytes] = []
    relay: dict[str, Any] = {"pages": 0, "route": None, "released": False}

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        relay["route"] = ws

        def to_page(message: str | bytes) -> None:
            if not relay["released"] and isinstance(message, str) and json.loads(message).get("type") == "page":
                relay["pages"] += 1
                if relay["pages"] >= 3:
                    held.append(message)
                    return
            ws.send(message)

        server.on_message(to_page)

    first = context.new_page()
    first.route_web_socket("**/api/sync", route)
    first.goto("/")
    sign_in(first, username)
    dialog = first.get_by_role("dialog", name="Offline Updates Available")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Skip for now")).to_be_visible()
    if on_prompt is not None:
        on_prompt(first)
    dialog.get_by_role("button", name="Update").click()
    expect(first.get_by_role("heading", name="Offline Status")).to_be_visible()
    expect(first.get_by_role("progressbar")).to_be_visible()
    expect(first.get_by_text(re.compile(r"^Downloading "))).to_be_visible()
    shoot(first, "offline-status-downloading")
    relay["released"] = True
    for message in held:
        relay["route"].send(message)
    wait_status(first, "s.offlineReady && !s.download", DOWNLOAD_TIMEOUT_MS)
    first.close()
    page = context.new_page()
    page.goto("/")
    expect(page.get_by_role("link", name=entity_link("Contacts"))).to_be_visible()
    wait_status(page, "s.offlineReady && s.connection === 'online'")
    return page


def wait_status(page: Page, condition: str, timeout: float = SYNC_TIMEOUT_MS) -> None:
    """Wait for a condition on the sync status `s`."""
    wait_until(
        page,
        f"(() => {{ const s = window.Outpost.ctx.sync?.status; return Boolean(s && ({condition})); }})()",
        timeout=timeout,
    )


def wait_synced(page: Page, timeout: float = SYNC_TIMEOUT_MS) -> None:
    """Wait until every queued operation has been acknowledged by the server (the queue is empty)."""
    page.evaluate(
        """async (ms) => {
          const deadline = Date.now() + ms;
          while ((await window.Outpost.ctx.store.pendingCount()) > 0) {
            if (Date.now() > deadline) throw new Error(`operations still queued after ${ms} ms`);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }""",
        timeout,
    )


def menu(page: Page, item: str) -> None:
    """Open the "…" menu and choose an item."""
    page.get_by_role("button", name="More", exact=True).click()
    page.get_by_role("menuitem", name=item).click()


def entity_link(collection: str) -> re.Pattern[str]:
    """The accessible name of an entity's link on the home screen ("Contacts", then its count and mark)."""
    return re.compile(rf"^{re.escape(collection)}(?![A-Za-z])")


def open_entity(page: Page, collection: str) -> None:
    """From anywhere: home, then an entity's list."""
    menu(page, "Home")
    page.get_by_role("link", name=entity_link(collection)).click()
    expect(page.get_by_role("heading", name=collection, exact=True)).to_be_visible()


def choose_view(page: Page, name: str) -> None:
    """Switch the list to another system view."""
    page.get_by_label("View", exact=True).select_option(label=name)
    expect(page.get_by_role("region", name=re.compile(rf"^{re.escape(name)}:"))).to_be_visible()


def grid(page: Page) -> list[dict[str, str]]:
    """The list's rows as {column header: text}."""
    region = page.get_by_role("region", name=re.compile(r": \d+"))
    expect(region).to_be_visible()
    return region.evaluate(
        """(region) => {
          const heads = [...region.querySelectorAll("thead th")].map(
            (th) => th.querySelector("button")?.firstChild?.textContent ?? th.textContent,
          );
          return [...region.querySelectorAll("tbody tr")].map((tr) => {
            const cells = [...tr.children].slice(1);
            const text = (c) => c.querySelector("a")?.textContent ?? c.textContent.trim();
            return Object.fromEntries(cells.map((c, i) => [heads[i].trim(), text(c)]));
          });
        }"""
    )


def row_of(page: Page, name: str) -> Locator:
    """The list row whose record link is `name`."""
    return page.locator("tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))


def pick(page: Page, label: str, text: str, option: str) -> None:
    """Choose a lookup value with the picker, by keyboard: type, ArrowDown to the option, Enter."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(text)
    listbox = page.get_by_role("listbox", name=f"{label} results")
    expect(listbox.get_by_role("option", name=re.compile(re.escape(option)))).to_be_visible()
    box.press("ArrowDown")
    for _ in range(20):
        active = box.get_attribute("aria-activedescendant")
        if active and option in page.locator(f"#{active}").inner_text():
            break
        box.press("ArrowDown")
    box.press("Enter")
    expect(box).to_have_value(option)
    expect(listbox).to_be_hidden()


def open_record(page: Page, name: str) -> None:
    """Open a record from the list."""
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def save(page: Page, heading: str) -> None:
    """Save the form and wait for the saved record's screen (a new form replaces the one saved)."""
    form = page.get_by_role("form").element_handle()
    page.get_by_role("button", name="Save").click()
    wait_until(page, "(form) => !form.isConnected", arg=form)
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()


def delete(page: Page, name: str) -> None:
    """Delete the open record, confirming in the dialog."""
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete {name}?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)


def global_search(page: Page, text: str) -> Locator:
    """Search every entity; the results list."""
    menu(page, "Search")
    box = page.get_by_role("searchbox", name="Search all records")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_role("status").filter(has_text=f"for “{text}”")).to_be_visible()
    return page.get_by_role("list", name="Search results")


# --- helpers: the server ----------------------------------------------------------------------------


def entity_set(entity: str) -> str:
    """The entity-set name of an entity used here."""
    return {"account": "accounts", "contact": "contacts", "opportunity": "opportunities", "task": "tasks"}[entity]


def find_one(api: ApiClient, entity: str, field: str, value: str) -> dict[str, Any]:
    """The one record whose `field` equals `value` (over HTTP)."""
    query = quote(f"{field} eq '{value}'")
    resp = api.get(f"/api/data/{entity_set(entity)}?$filter={query}")
    assert resp.status == 200, resp.json
    assert len(resp.json["value"]) == 1, (entity, field, value, resp.json["value"])
    return resp.json["value"][0]  # type: ignore[no-any-return]


def prepare(api: ApiClient) -> dict[str, Any]:
    """Data the journey needs beyond the demo: an account whose city differs from its contacts',
    and records with dates far from the demo's (so a date search has a known answer)."""
    orchard = find_one(api, "account", "name", "Orchard Capital")
    assert api.patch(f"/api/data/accounts({orchard['accountid']})", {"address1_city": "Yonkers"}).status == 200
    opportunity = api.post(
        "/api/data/opportunities",
        {
            "name": "Fjord Expansion",
            "estimatedclosedate": "2031-03-14",
            "customerid_account@odata.bind": f"/accounts({orchard['accountid']})",
        },
    )
    assert opportunity.status == 201, opportunity.json
    task = api.post("/api/data/tasks", {"subject": "Plan the fjord visit", "scheduledstart": "2031-03-15T09:00:00Z"})
    assert task.status == 201, task.json
    return {"orchard": orchard}


def active_contact_names(api: ApiClient) -> list[str]:
    """The names "My Active Contacts" shows, in the server's order (fullname ascending)."""
    mine = "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"
    resp = api.get(
        f"/api/data/contacts?$select=fullname&$filter=statecode%20eq%200%20and%20{mine}&$orderby=fullname%20asc"
    )
    return [r["fullname"] for r in resp.json["value"]]


# --- axe-core -----------------------------------------------------------------------------------------


def axe_script() -> str:
    """axe.min.js (pinned in benchmarks/screenshots.py), installed with npm into .tools/ on first use."""
    try:
        return screenshots.axe_script()
    except screenshots.AxeUnavailable as why:
        pytest.skip(str(why))


def axe(page: Page, screen: str, results: dict[str, str]) -> None:
    """Run axe-core on the page; no serious or critical violation may be found (in light and dark)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Through DevTools, not a <script> tag: the app's CSP refuses inline script (and axe's eval is fine there).
        page.evaluate(axe_script() + "\n;undefined")
    found = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        report = page.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then((r) => r.violations.map((v) => "
            "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)})))"
        )
        found += [{**v, "scheme": scheme} for v in report]
    page.emulate_media(color_scheme="light")
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    minor = sorted({f"{v['id']} ({v['impact']})" for v in found if v not in bad})
    results[screen] = "no serious or critical violations" + (f"; minor: {', '.join(minor)}" if minor else "")
    assert not bad, f"axe on {screen}:\n{json.dumps(bad, indent=1)}"


# --- the journey -------------------------------------------------------------------------------------


def work_through_the_day(page: Page, names: dict[str, str], online: bool) -> None:
    """The part of the journey that runs online and again from the device."""
    tag = "online" if online else "offline"
    # Accounts: a system view, then another.
    open_entity(page, "Accounts")
    expect(page.get_by_label("View", exact=True)).to_have_value("account-1")
    choose_view(page, "Active Accounts")
    expect(page.get_by_role("columnheader", name="Account Number")).to_be_visible()
    orchard = next(r for r in grid(page) if r["Account Name"] == "Orchard Capital")
    assert orchard["City"] == "Yonkers"
    shoot(page, f"list-accounts-{tag}")

    # Contacts: the linked city column, sorting by a header, switching views.
    open_entity(page, "Contacts")
    # A phone shows the view as cards: a column that does not sort (a linked one) has no header
    # button, and its label is on every card.
    ben = row_of(page, "Ben Schmidt").get_by_role("cell", name="Yonkers", exact=True)
    expect(ben).to_be_visible()
    assert ben.evaluate("(td) => getComputedStyle(td, '::before').content").startswith('"City (Company Name)')
    rows = {r["Full Name"]: r for r in grid(page)}
    assert rows["Ben Schmidt"]["Company Name"] == "Orchard Capital"
    assert rows["Ben Schmidt"]["City (Company Name)"] == "Yonkers"  # the account's city, not the contact's
    shoot(page, f"list-contacts-{tag}")
    header = page.get_by_role("columnheader", name="Full Name")
    expect(header).to_have_attribute("aria-sort", "ascending")
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    names_desc = [r["Full Name"] for r in grid(page)]
    assert names_desc == sorted(names_desc, key=str.lower, reverse=True)
    email = page.get_by_role("columnheader", name="Email")
    email.get_by_role("button").click()
    expect(email).to_have_attribute("aria-sort", "ascending")
    expect(header).not_to_have_attribute("aria-sort", re.compile("."))
    emails = [r["Email"] for r in grid(page) if r["Email"]]
    assert emails == sorted(emails, key=str.lower)
    choose_view(page, "Active Contacts")
    expect(page.get_by_role("columnheader", name="Job Title")).to_be_visible()
    choose_view(page, "My Active Contacts")

    # Selecting rows (for commands such as Qualify on a list).
    row_of(page, "Ben Schmidt").get_by_role("checkbox").check()
    row_of(page, names["edit"]).get_by_role("checkbox").check()
    expect(page.get_by_role("status").filter(has_text="Selected: 2")).to_be_visible()
    page.get_by_role("button", name="Clear selection").click()
    expect(page.get_by_role("status").filter(has_text="Selected: 0")).to_be_visible()

    # A record edited with the lookup picker.
    open_record(page, names["edit"])
    page.get_by_label("Job Title").fill(f"Field lead ({tag})")
    pick(page, "Company Name", names["company_prefix"], names["company"])
    if online:
        shoot(page, "record-form")
    save(page, names["edit"])
    expect(page.get_by_role("combobox", name="Company Name", exact=True)).to_have_value(names["company"])
    expect(page.get_by_label("Job Title")).to_have_value(f"Field lead ({tag})")
    if not online:
        expect(page.get_by_text("Not synced")).to_be_visible()

    # The categorized search on the list.
    page.get_by_role("link", name="Back to Contacts").click()
    search = page.get_by_role("searchbox", name="Search Contacts")
    search.fill("wils")
    expect(page.get_by_role("region", name=re.compile("Search results for “wils”"))).to_be_visible()
    found = [r["Full Name"] for r in grid(page)]
    assert found and all("wilson" in n.lower() for n in found), found
    search.fill("")
    expect(page.get_by_role("region", name=re.compile("^My Active Contacts:"))).to_be_visible()

    # A new contact (with a validation message first) and another one deleted.
    page.get_by_role("button", name="New").click()
    expect(page.get_by_role("heading", name="New Contact")).to_be_visible()
    page.get_by_label("First Name").fill(names["new_first"])
    page.get_by_role("button", name="Save").click()
    last = page.get_by_label("Last Name")
    expect(last).to_have_attribute("aria-invalid", "true")
    error_id = page.locator("#f-lastname-error")
    expect(error_id).to_have_text("Missing data for required field.")
    assert "f-lastname-error" in (last.get_attribute("aria-describedby") or "")
    if online:
        shoot(page, "record-new-invalid")
    last.fill(names["new_last"])
    pick(page, "Company Name", "orch", "Orchard Capital")
    save(page, f"{names['new_first']} {names['new_last']}")
    page.get_by_role("link", name="Back to Contacts").click()
    expect(row_of(page, f"{names['new_first']} {names['new_last']}")).to_be_visible()
    open_record(page, names["delete"])
    delete(page, names["delete"])
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()

    # The global search: names and dates, across entities.
    results = global_search(page, "2031-03-1")
    expect(results.get_by_role("link", name=re.compile(r"^Fjord Expansion.*Opportunity"))).to_be_visible()
    expect(results.get_by_role("link", name=re.compile(r"^Plan the fjord visit.*Task"))).to_be_visible()
    expect(results.get_by_text("Est. Close Date: 2031-03-14")).to_be_visible()
    shoot(page, f"search-{tag}")
    results = global_search(page, "orchard")
    expect(results.get_by_role("link", name=re.compile(r"^Orchard Capital.*Account"))).to_be_visible()

    # An activities view: every activity type, each with its type.
    open_entity(page, "Activities")
    choose_view(page, "All Activities")
    types = {r["Activity Type"] for r in grid(page)}
    assert {"Appointment", "Task", "Phone Call", "Email"} <= types, types
    page.get_by_role("link", name="Plan the fjord visit", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Plan the fjord visit")).to_be_visible()
    expect(page.get_by_label("Activity Type")).to_have_value("Task")
    expect(page.get_by_label("Activity Type")).not_to_be_editable()


def test_a_salesperson_works_online_then_from_the_device_with_the_server_stopped(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """The issue's journey, then the same from the device; offline edits reach the server later."""
    api = live_server.client(USER)
    prepare(api)
    page = take_offline_updates(phone_context)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    menu(page, "Offline Status")
    expect(page.get_by_text("Sync time", exact=True)).to_be_visible()
    shoot(page, "offline-status")
    menu(page, "Home")
    expect(page.get_by_role("link", name=entity_link("Contacts"))).to_be_visible()
    shoot(page, "home")

    online = {
        "edit": "Alex Lambert",
        "company_prefix": "harb",
        "company": "Harbor Machine Works Inc.",
        "new_first": "Nia",
        "new_last": "Okafor",
        "delete": "Carmen Dubois",
    }
    work_through_the_day(page, online, online=True)
    wait_synced(page)

    # Everything reached the server.
    alex = find_one(api, "contact", "fullname", "Alex Lambert")
    assert alex["jobtitle"] == "Field lead (online)"
    assert alex["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Harbor Machine Works Inc."
    nia = find_one(api, "contact", "fullname", "Nia Okafor")
    assert nia["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Orchard Capital"
    assert "Carmen Dubois" not in active_contact_names(api)

    # What the phone shows now, to compare with what it shows from the device.
    open_entity(page, "Contacts")
    before = grid(page)
    assert [r["Full Name"] for r in before] == active_contact_names(api)[: len(before)]
    wait_until(page, "navigator.serviceWorker.controller !== null")

    # The server stops; the app reloads from the service worker and works from the device.
    live_server.stop()
    page.reload()
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()
    assert grid(page) == before
    menu(page, "Offline Status")
    expect(page.get_by_text("Available", exact=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Offline", exact=True)).to_be_visible()  # the top bar says so

    offline = {
        "edit": "Noah Wilson",
        "company_prefix": "sunr",
        "company": "Sunrise Retail",
        "new_first": "Omar",
        "new_last": "Reyes",
        "delete": "Elena Wilson",
    }
    work_through_the_day(page, offline, online=False)
    open_entity(page, "Contacts")
    expect(row_of(page, "Noah Wilson").get_by_text("Not synced")).to_be_visible()
    expect(row_of(page, "Omar Reyes").get_by_text("Not synced")).to_be_visible()
    assert page.evaluate("window.Outpost.ctx.store.pendingCount()") >= 3

    # Back online: the next change wakes the sync loop, and the queue reaches the server.
    live_server.start()
    open_record(page, "Omar Reyes")
    page.get_by_label("Business Phone").fill("+1 555 0100")
    save(page, "Omar Reyes")
    wait_status(page, "s.connection === 'online'", 60_000)
    wait_synced(page)
    assert page.evaluate("window.Outpost.ctx.store.errors()") == []
    noah = find_one(api, "contact", "fullname", "Noah Wilson")
    assert noah["jobtitle"] == "Field lead (offline)"
    assert noah["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Sunrise Retail"
    assert find_one(api, "contact", "fullname", "Omar Reyes")["telephone1"] == "+1 555 0100"
    assert "Elena Wilson" not in active_contact_names(api)
    assert errors == []


def test_every_main_screen_has_no_serious_or_critical_accessibility_violation(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """axe-core on each main screen, in the light and the dark theme."""
    axe_script()  # installs, or skips with the reason, before anything else runs
    results: dict[str, str] = {}
    page = phone_context.new_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in to Outpost")).to_be_visible()
    axe(page, "sign-in", results)
    page.close()
    page = take_offline_updates(phone_context, on_prompt=lambda p: axe(p, "offline-updates-dialog", results))
    menu(page, "Offline Status")
    expect(page.get_by_text("Sync time", exact=True)).to_be_visible()
    axe(page, "offline-status", results)
    menu(page, "Home")
    expect(page.get_by_role("link", name=entity_link("Accounts"))).to_be_visible()
    axe(page, "home", results)
    page.get_by_role("button", name="More", exact=True).click()
    expect(page.get_by_role("menu", name="More")).to_be_visible()
    axe(page, "more-menu", results)
    page.get_by_role("menuitem", name="User Information").click()
    expect(page.get_by_role("heading", name="User Information")).to_be_visible()
    axe(page, "user-information", results)
    shoot(page, "user-information")

    open_entity(page, "Contacts")
    row_of(page, "Ben Schmidt").get_by_role("checkbox").check()
    axe(page, "list-contacts", results)
    open_entity(page, "Activities")
    axe(page, "list-activities", results)
    open_entity(page, "Contacts")
    open_record(page, "Ben Schmidt")
    axe(page, "record-form", results)
    box = page.get_by_role("combobox", name="Company Name", exact=True)
    box.click()
    box.fill("gran")
    expect(page.get_by_role("option", name=re.compile("Granite Consulting"))).to_have_count(2)
    box.press("ArrowDown")
    shoot(page, "lookup-picker")
    axe(page, "lookup-picker-open", results)
    box.press("Escape")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("dialog", name="Delete Ben Schmidt?")).to_be_visible()
    axe(page, "delete-dialog", results)
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    page.get_by_role("link", name="Back to Contacts").click()
    page.get_by_role("button", name="New").click()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Last Name")).to_have_attribute("aria-invalid", "true")
    axe(page, "new-record-with-errors", results)
    global_search(page, "thom")
    axe(page, "search-results", results)
    version = page.evaluate("window.axe.version")
    print(f"\naxe-core {version}:\n" + "\n".join(f"  {k}: {v}" for k, v in results.items()))


def test_a_lookup_to_an_entity_that_is_not_offline_keeps_its_name_and_says_why(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """With currencies taken out of the offline profile, a contact's Currency shows its stored name."""
    env = {**os.environ, "DATABASE_URL": live_server.database_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "webapp.cli",
            "set-offline",
            "--org",
            DEMO_ORG,
            "--entity",
            "transactioncurrency",
            "--disable",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = take_offline_updates(phone_context)
    open_entity(page, "Contacts")
    open_record(page, "Ben Schmidt")
    currency = page.get_by_label("Currency", exact=True)
    expect(currency).to_have_value(re.compile(r"\S"))  # the stored name, e.g. "US Dollar"
    expect(currency).not_to_be_editable()
    expect(page.get_by_role("combobox", name="Currency")).to_have_count(0)
    expect(currency).to_have_accessible_description(re.compile("Currency is not available offline"))
    # The other lookups still work.
    expect(page.get_by_role("combobox", name="Company Name", exact=True)).to_be_editable()
    menu(page, "Home")
    page.goto(f"{live_server.url}/#/list/transactioncurrency")
    expect(page.get_by_text("Currencies are not available offline")).to_be_visible()


def test_before_the_offline_data_is_downloaded_the_screens_work_online_only(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """ "Skip for now": lists, search, lookups and saves go to the Web API; no New where it cannot write."""
    api = live_server.client(USER)
    prepare(api)
    page = phone_context.new_page()
    page.goto("/")
    sign_in(page)
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Skip for now").click()
    expect(page.get_by_role("link", name=entity_link("Contacts"))).to_be_visible()
    assert page.evaluate("window.Outpost.ctx.data.local") is False
    # The offline client APIs answer from the device only: not yet.
    wait_until(page, "Boolean(window.Xrm?.Mobile?.offline)")
    refused = page.evaluate("Xrm.Mobile.offline.retrieveMultipleRecords('account', '$top=1').catch((e) => e)")
    assert (refused["errorCode"], refused["code"]) == (-2147220970, "not_offline_ready"), refused  # 0x80040216
    assert page.evaluate("Xrm.Mobile.offline.isOfflineEnabled('account')") is True

    open_entity(page, "Contacts")
    rows = {r["Full Name"]: r for r in grid(page)}
    assert rows["Ben Schmidt"]["City (Company Name)"] == "Yonkers"  # $expand on the server
    page.get_by_role("searchbox", name="Search Contacts").fill("wils")
    expect(page.get_by_role("region", name=re.compile("Search results for “wils”"))).to_be_visible()
    assert sorted(r["Full Name"] for r in grid(page)) == ["Elena Wilson", "Jack Wilson", "Noah Wilson", "Raj Wilson"]
    expect(page.get_by_role("button", name="New", exact=True)).to_be_visible()
    page.get_by_role("searchbox", name="Search Contacts").fill("")

    open_record(page, "Alex Lambert")
    page.get_by_label("Job Title").fill("Online only")
    pick(page, "Company Name", "sunr", "Sunrise Retail")
    save(page, "Alex Lambert")
    alex = find_one(api, "contact", "fullname", "Alex Lambert")
    assert alex["jobtitle"] == "Online only"
    assert alex["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Sunrise Retail"

    open_entity(page, "Users")
    expect(page.get_by_role("region", name=re.compile("^Enabled Users:"))).to_be_visible()
    expect(page.get_by_role("button", name="New", exact=True)).to_have_count(0)
    open_record(page, "Nancy Anderson")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_label("User Name")).to_have_value(USER)
    expect(page.get_by_label("User Name")).not_to_be_editable()


def test_a_datetime_is_edited_in_the_phones_time_zone_and_saved_in_utc(
    live_server: LiveServer, chromium: Browser, pw: Playwright
) -> None:
    """A phone in New York sees 09:00Z as 05:00 (EDT) and saves 08:30 local as 12:30Z."""
    api = live_server.client(USER)
    prepare(api)
    device = {k: v for k, v in pw.devices["Pixel 7"].items() if k != "default_browser_type"}
    context = chromium.new_context(**device, base_url=live_server.url, timezone_id="America/New_York")
    context.set_default_timeout(15_000)
    try:
        page = take_offline_updates(context)
        open_entity(page, "Tasks")
        choose_view(page, "All Tasks")
        open_record(page, "Plan the fjord visit")
        start = page.get_by_label("Start Time")
        expect(start).to_have_attribute("type", "datetime-local")
        expect(start).to_have_value("2031-03-15T05:00")
        start.fill("2031-03-16T08:30")
        page.get_by_label("Priority").select_option(label="High")
        save(page, "Plan the fjord visit")
        expect(page.get_by_label("Start Time")).to_have_value("2031-03-16T08:30")
        wait_synced(page)
        task = find_one(api, "task", "subject", "Plan the fjord visit")
        assert task["scheduledstart"] == "2031-03-16T12:30:00Z"
        assert task["prioritycode"] == 2
        assert task["description"] is None  # untouched fields are not sent
    finally:
        context.close()
