"""The app's screens as a person uses them, written once over `Driver` (tests/engines/drivers.py).

Each function is a step of the journeys in tests/engines: it finds things by role and accessible
name (or a field by its label), clicks, types and reads, and waits on what the screen shows —
never on a fixed time. Reads of the app's state (`window.Outpost.ctx`: the sync status, the
queue in IndexedDB) go through `Driver.evaluate`.
"""

from __future__ import annotations

import re
from typing import Any

from tests.engines.drivers import Driver, Name, WaitTimeout, poll
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

CTX = "window.Outpost.ctx"
USER = "east1"
DOWNLOAD_MS = 90_000  # the first download of the demo data (WebKitGTK under Xvfb on a busy 2-core box)
DRAIN_MS = 90_000  # a queue reaching the server once it answers again (includes the loop's back-off)


def entity_link(collection: str) -> re.Pattern[str]:
    """The home screen's link to an entity ("Contacts", then its count and offline mark)."""
    return re.compile(rf"^{re.escape(collection)}(?![A-Za-z])")


def follow(tab: Driver, role: str, name: Name, heading: str, level: int | None = None, tries: int = 3) -> None:
    """Click a link or button that leads to another screen, and wait for that screen's heading.

    A save re-renders its screen once more when the store announces the change (~150 ms later).
    A click whose press and release straddle that re-render lands on two different elements and
    is no click at all (WebKitGTK under Xvfb is slow enough to hit it): click again.
    """
    for attempt in range(tries):
        if attempt and tab.count("heading", heading, level=level):
            return  # the earlier click did arrive, late
        tab.click(role, name)
        try:
            tab.wait_visible("heading", heading, level=level, timeout=8_000 * (attempt + 1))
            return
        except WaitTimeout:
            if attempt == tries - 1:
                raise


def open_app(tab: Driver) -> None:
    """Open the app; wait until the service worker controls the page (so a reload works offline)."""
    tab.goto("/")
    tab.wait_until("() => navigator.serviceWorker.controller !== null", what="a service worker controls the page")
    tab.wait_until(f"() => Boolean({CTX})", what="the app started")


def sign_in(tab: Driver, username: str = USER) -> None:
    """The sign-in screen: organisation, username, password, "Sign in"."""
    tab.wait_visible("heading", "Sign in to Outpost")
    tab.fill("Organisation", DEMO_ORG)
    tab.fill("Username", username)
    tab.fill("Password", DEMO_PASSWORD)
    tab.click("button", "Sign in")


def take_offline_updates(tab: Driver) -> None:
    """ "Offline Updates Available" → Update; wait until the device holds the offline data."""
    dialog = ("dialog", "Offline Updates Available")
    tab.wait_visible(*dialog, timeout=DOWNLOAD_MS)
    tab.click("button", "Update", within=dialog)
    tab.wait_hidden(*dialog)
    wait_status(tab, "s.offlineReady && !s.download && s.connection === 'online'", DOWNLOAD_MS)


def status(tab: Driver) -> dict[str, Any]:
    """The sync status snapshot."""
    return dict(tab.evaluate(f"() => ({{...{CTX}.sync.status}})"))


def wait_status(tab: Driver, condition: str, timeout: float = DRAIN_MS) -> None:
    """Wait for a condition on the sync status `s`."""
    tab.wait_until(
        f"() => {{ const s = {CTX}.sync?.status; return Boolean(s && ({condition})); }}",
        timeout=timeout,
        what=f"sync status: {condition}",
    )


def pending(tab: Driver) -> int:
    """Operations waiting in the device's queue (read from IndexedDB)."""
    return int(tab.evaluate(f"() => {CTX}.store.pendingCount()"))


def wait_synced(tab: Driver, timeout: float = DRAIN_MS) -> None:
    """Wait until the device is online, idle and its queue (in IndexedDB) is empty."""
    tab.wait_until(
        f"""async () => {{
            const s = {CTX}.sync?.status;
            if (!s || s.connection !== "online" || s.phase !== "idle") return false;
            return (await {CTX}.store.pendingCount()) === 0;
        }}""",
        timeout=timeout,
        what="the queue drained to the server",
    )


def menu(tab: Driver, item: str) -> None:
    """The "…" (More) menu, then an item."""
    tab.click("button", "More")
    tab.click("menuitem", item, within=("menu", "More"))


def open_entity(tab: Driver, collection: str) -> None:
    """Home, then an entity's list."""
    menu(tab, "Home")
    follow(tab, "link", entity_link(collection), collection)


def grid(tab: Driver) -> list[dict[str, str]]:
    """The list's rows as {column header: text} (waits for the list)."""
    tab.wait_visible("region", re.compile(r": \d+"))
    return list(
        tab.evaluate(
            """() => {
              const named = (r) => /: \\d+/.test(r.getAttribute("aria-label") || "");
              const region = [...document.querySelectorAll("[role=region]")].find(named);
              if (!region) return [];
              const heads = [...region.querySelectorAll("thead th")].map(
                (th) => (th.querySelector("button")?.firstChild?.textContent ?? th.textContent).trim());
              return [...region.querySelectorAll("tbody tr")].map((tr) => {
                const cells = [...tr.children].slice(1);
                const text = (c) => (c.querySelector("a")?.textContent ?? c.textContent).trim();
                return Object.fromEntries(cells.map((c, i) => [heads[i], text(c)]));
              });
            }"""
        )
    )


def choose_view(tab: Driver, name: str) -> None:
    """Switch the list to another system view."""
    tab.select("View", name)
    tab.wait_visible("region", re.compile(rf"^{re.escape(name)}:"))


def search_list(tab: Driver, collection: str, text: str) -> list[str]:
    """The categorized search on a list: the names found."""
    tab.fill(f"Search {collection}", text)
    tab.wait_visible("region", re.compile(f"Search results for “{re.escape(text)}”"))
    return [r["Full Name"] for r in grid(tab)]


def clear_search(tab: Driver, collection: str, view: str) -> None:
    """Empty the list's search box; the view comes back."""
    tab.fill(f"Search {collection}", "")
    tab.wait_visible("region", re.compile(rf"^{re.escape(view)}:"))


def open_record(tab: Driver, name: str) -> None:
    """Open a record from the list."""
    follow(tab, "link", name, name, level=1)


def pick(tab: Driver, label: str, text: str, option: str) -> None:
    """Choose a lookup value with the picker: type, then the option."""
    tab.fill(label, text)
    results = ("listbox", f"{label} results")
    tab.wait_visible("option", re.compile(re.escape(option)), within=results)
    tab.click("option", re.compile(re.escape(option)), within=results)
    tab.wait_value(label, option)
    tab.wait_hidden(*results)


def save(tab: Driver, heading: str) -> None:
    """Save the form and wait for the saved record's screen."""
    tab.evaluate("() => { window.__savedForm = document.querySelector('form'); }")
    tab.click("button", "Save")
    tab.wait_until("() => !window.__savedForm?.isConnected", what="the saved form was replaced")
    tab.wait_visible("heading", heading, level=1)


def back_to_list(tab: Driver, collection: str) -> None:
    """The record's back link."""
    follow(tab, "link", f"Back to {collection}", collection)


def edit_contact(tab: Driver, name: str, job_title: str, company_prefix: str, company: str) -> None:
    """Open a contact from the list, change its job title and its company (lookup), save."""
    open_record(tab, name)
    tab.fill("Job Title", job_title)
    pick(tab, "Company Name", company_prefix, company)
    save(tab, name)
    tab.wait_value("Company Name", company)
    tab.wait_value("Job Title", job_title)


def create_contact(tab: Driver, first: str, last: str, company_prefix: str, company: str) -> None:
    """From the contacts list: New, a validation message first, then a contact with a company."""
    tab.click("button", "New")
    tab.wait_visible("heading", "New Contact")
    tab.fill("First Name", first)
    tab.click("button", "Save")
    tab.wait_until(
        "() => document.querySelector('#f-lastname')?.getAttribute('aria-invalid') === 'true'",
        what="Last Name is flagged as missing",
    )
    tab.fill("Last Name", last)
    pick(tab, "Company Name", company_prefix, company)
    save(tab, f"{first} {last}")


def global_search(tab: Driver, text: str) -> list[str]:
    """Search every entity: the result links' names."""
    menu(tab, "Search")
    tab.fill("Search all records", text)
    tab.press("Search all records", "Enter")
    wait_text(tab, "status", re.compile(f"for “{re.escape(text)}”"))
    return tab.texts("link", within=("list", "Search results"))


def wait_text(tab: Driver, role: str, text: re.Pattern[str], timeout: float = 20_000) -> None:
    """Wait until an element of this role (a live region has no name) shows matching text."""
    poll(lambda: tab.texts(role), lambda found: any(text.search(t) for t in found), timeout, f"{role} with {text}")


def wait_rows(tab: Driver, want: set[str], timeout: float = 20_000) -> list[dict[str, str]]:
    """Wait until the list shows every name in `want`."""
    return poll(lambda: grid(tab), lambda rows: want <= {r["Full Name"] for r in rows}, timeout, f"rows {want}")
