"""The core journey in every engine a phone uses: Chromium, Firefox ESR and WebKit (WebKitGTK).

Written once over the driver layer (tests/engines/drivers.py, journey.py), run by Playwright
(Chromium, Firefox) and by Selenium's WebDriver (WebKit). A salesperson signs in, takes
"Offline Updates Available" → Update, browses and searches, edits a contact with the lookup
picker and creates one; then the server process is stopped, the page reloads from the service
worker, and the work goes on from the device: lists, search, an edit, a new contact, another
edit. The server starts again, the network's return is announced (`online`), the queue replays
and the server's change log holds every change, in the order it was made.
"""

from __future__ import annotations

from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import change_log, last_change
from tests.engines import journey as j
from tests.engines.drivers import Driver


def find(api: object, name: str) -> dict:
    """The one contact with this full name, over HTTP."""
    resp = api.get(f"/api/data/contacts?$filter=fullname%20eq%20'{name.replace(' ', '%20')}'")  # type: ignore[attr-defined]
    assert resp.status == 200, resp.json
    assert len(resp.json["value"]) == 1, (name, resp.json["value"])
    return resp.json["value"][0]  # type: ignore[no-any-return]


def company(record: dict) -> str:
    return str(record["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"])


def test_the_core_journey_online_then_from_the_device_with_the_server_stopped(
    live_server: LiveServer, engine: Driver
) -> None:
    api = live_server.client(j.USER)
    tab = engine

    # Sign in; "Offline Updates Available" → Update.
    j.open_app(tab)
    j.sign_in(tab)
    j.take_offline_updates(tab)
    j.menu(tab, "Home")
    tab.wait_visible("link", j.entity_link("Contacts"))

    # Browse: accounts in two system views, contacts with a linked column.
    j.open_entity(tab, "Accounts")
    j.choose_view(tab, "Active Accounts")
    accounts = {r["Account Name"] for r in j.grid(tab)}
    assert "Orchard Capital" in accounts, accounts
    j.open_entity(tab, "Contacts")
    rows = {r["Full Name"]: r for r in j.grid(tab)}
    assert rows["Ben Schmidt"]["Company Name"] == "Orchard Capital", rows["Ben Schmidt"]

    # Search the list, then everything.
    found = j.search_list(tab, "Contacts", "wils")
    assert found and all("wilson" in n.lower() for n in found), found
    j.clear_search(tab, "Contacts", "My Active Contacts")

    # Edit with the lookup picker; create with it.
    j.edit_contact(tab, "Alex Lambert", "Field lead (online)", "harb", "Harbor Machine Works Inc.")
    j.back_to_list(tab, "Contacts")
    j.create_contact(tab, "Nia", "Okafor", "orch", "Orchard Capital")
    results = j.global_search(tab, "orchard")
    assert any(r.startswith("Orchard Capital") for r in results), results
    j.wait_synced(tab)
    alex = find(api, "Alex Lambert")
    assert (alex["jobtitle"], company(alex)) == ("Field lead (online)", "Harbor Machine Works Inc.")
    assert company(find(api, "Nia Okafor")) == "Orchard Capital"

    # The server process stops; the page reloads from the service worker; work goes on.
    j.open_entity(tab, "Contacts")
    before = j.grid(tab)
    mark = last_change(live_server)
    live_server.stop()
    tab.reload()
    tab.wait_visible("heading", "Contacts")
    assert j.grid(tab) == before
    j.menu(tab, "Offline Status")
    tab.wait_visible("heading", "Offline Status", level=1)
    assert j.status(tab)["connection"] != "online"
    j.open_entity(tab, "Contacts")
    found = j.search_list(tab, "Contacts", "wils")
    assert "Noah Wilson" in found, found
    j.clear_search(tab, "Contacts", "My Active Contacts")
    j.edit_contact(tab, "Noah Wilson", "Field lead (offline)", "sunr", "Sunrise Retail")
    j.back_to_list(tab, "Contacts")
    j.create_contact(tab, "Omar", "Reyes", "orch", "Orchard Capital")
    tab.fill("Business Phone", "+1 555 0100")
    j.save(tab, "Omar Reyes")
    j.back_to_list(tab, "Contacts")
    j.wait_rows(tab, {"Noah Wilson", "Omar Reyes"})
    assert j.pending(tab) == 3
    results = j.global_search(tab, "omar")
    assert any(r.startswith("Omar Reyes") for r in results), results

    # The server is back and the network returns: the queue replays, in order.
    live_server.start()
    tab.evaluate("() => window.dispatchEvent(new Event('online'))")
    j.wait_synced(tab)
    assert tab.evaluate("() => window.Outpost.ctx.store.errors()") == []
    noah, omar = find(api, "Noah Wilson"), find(api, "Omar Reyes")
    assert (noah["jobtitle"], company(noah)) == ("Field lead (offline)", "Sunrise Retail")
    assert (omar["telephone1"], company(omar)) == ("+1 555 0100", "Orchard Capital")
    changes = [(rid, op) for entity, rid, op in change_log(live_server, mark) if entity == "contact"]
    assert changes == [
        (noah["contactid"], "update"),
        (omar["contactid"], "create"),
        (omar["contactid"], "update"),
    ], changes
    print(f"\n{engine.engine} {engine.version}: the journey passed")
