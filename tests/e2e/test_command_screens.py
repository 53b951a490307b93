"""The commands on screen, offline: each of the reference's known command defects has a test here.

The server process is really stopped while the user works; the dialogs' OK and Cancel are used
the way a person would; back online, the server holds the result.
"""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_PASSWORD


def sign_in_and_update(page: Page, username: str = "east1") -> None:
    page.goto("/")
    page.get_by_label("Organisation").fill("contoso")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Update").click()
    wait_until(page, "() => window.Outpost.ctx.sync?.status.offlineReady === true")


def drained(page: Page) -> None:
    wait_until(
        page,
        "() => { const s = window.Outpost.ctx.sync.status; window.Outpost.ctx.sync.kick();"
        " return s.connection === 'online' && s.phase === 'idle' && s.pending === 0; }",
        polling=500,
    )


def new_lead(api: Any, subject: str) -> str:
    body = {"subject": subject, "lastname": subject, "companyname": f"{subject} Ltd"}  # rows show the full name
    resp = api.post("/api/data/leads", body)
    assert resp.status == 201, resp.json
    return str(resp.json["leadid"])


def test_known_issue_qualify_is_missing_from_the_lead_grid(live_server: Any, phone_page: Page) -> None:
    api = live_server.client("east1")
    first, second = new_lead(api, "Alpha grid lead"), new_lead(api, "Beta grid lead")
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()
    page.goto("/#/list/lead")
    page.get_by_role("checkbox", name="Select Alpha grid lead").check()
    page.get_by_role("checkbox", name="Select Beta grid lead").check()
    expect(page.get_by_role("status").filter(has_text="Selected: 2")).to_be_visible()
    page.get_by_role("button", name="Qualify", exact=True).click()
    dialog = page.get_by_role("dialog", name="Qualify 2 Leads")
    dialog.get_by_role("button", name="Qualify").click()
    wait_until(page, "() => window.Outpost.ctx.sync.status.pending === 2")
    for lead in (first, second):
        assert page.evaluate("(id) => window.Outpost.ctx.store.get('lead', id)", lead)["statecode"] == 1
    live_server.start()
    drained(page)
    for lead in (first, second):
        server = api.get(f"/api/data/leads({lead})").json
        assert server["statecode"] == 1
        assert server["_qualifyingopportunityid_value"]


def test_known_issue_qualify_shows_on_the_form_only_with_custom_status_codes(
    live_server: Any, phone_page: Page
) -> None:
    """The demo organisation has no custom status codes; Qualify and Disqualify still show."""
    lead = new_lead(live_server.client("east1"), "Gamma form lead")
    page = phone_page
    sign_in_and_update(page)
    page.goto(f"/#/record/lead/{lead}")
    commands = page.get_by_role("group", name="Commands")
    expect(commands.get_by_role("button", name="Qualify", exact=True)).to_be_visible()
    expect(commands.get_by_role("button", name="Disqualify")).to_be_visible()
    live_server.stop()
    commands.get_by_role("button", name="Qualify", exact=True).click()
    page.get_by_role("dialog", name="Qualify Lead").get_by_role("button", name="Qualify").click()
    # The new opportunity opens at Develop: no manual "Next stage" after qualifying.
    page.wait_for_url("**/#/record/opportunity/*")
    expect(
        page.get_by_role("navigation", name="Lead to Opportunity Sales Process").locator("[aria-current=step]")
    ).to_have_text("Develop")


def test_known_issue_closing_an_opportunity_offline_is_impossible(live_server: Any, phone_page: Page) -> None:
    api = live_server.client("east1")
    opp = api.post(
        "/api/data/opportunities", {"name": "Offline close", "estimatedvalue": 7000, "stepname": "2-Develop"}
    )
    opp_id = opp.json["opportunityid"]
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()
    page.goto(f"/#/record/opportunity/{opp_id}")
    stages = page.get_by_role("navigation", name="Lead to Opportunity Sales Process")
    stages.get_by_role("button", name="Next stage").click()
    expect(stages.locator("[aria-current=step]")).to_have_text("Propose")
    # Cancel closes the dialog and changes nothing.
    page.get_by_role("button", name="Close as Won").click()
    page.get_by_role("dialog", name="Close Opportunity as Won").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert page.evaluate("(id) => window.Outpost.ctx.store.get('opportunity', id)", opp_id)["statecode"] == 0
    # OK closes it, offline.
    page.get_by_role("button", name="Close as Won").click()
    dialog = page.get_by_role("dialog", name="Close Opportunity as Won")
    dialog.get_by_label("Actual Revenue").fill("7500")
    dialog.get_by_role("button", name="Close as Won").click()
    wait_until(page, "() => window.Outpost.ctx.sync.status.pending === 2")  # Next stage, then the close
    assert page.evaluate("(id) => window.Outpost.ctx.store.get('opportunity', id)", opp_id)["statecode"] == 1
    expect(page.get_by_role("button", name="Close as Won")).to_have_count(
        0
    )  # a closed opportunity has no close buttons
    live_server.start()
    drained(page)
    server = api.get(f"/api/data/opportunities({opp_id})").json
    assert (server["statecode"], server["statuscode"], server["actualvalue"], server["stepname"]) == (
        1,
        3,
        7500,
        "4-Close",
    )


def test_a_command_online_reaches_the_server_at_once(live_server: Any, phone_page: Page) -> None:
    lead = new_lead(live_server.client("east1"), "Delta online lead")
    page = phone_page
    sign_in_and_update(page)
    page.goto(f"/#/record/lead/{lead}")
    page.get_by_role("group", name="Commands").get_by_role("button", name="Disqualify").click()
    dialog = page.get_by_role("dialog", name="Disqualify Lead")
    dialog.get_by_label("Reason").select_option(label="No Longer Interested")
    dialog.get_by_role("button", name="Disqualify").click()
    # Online, the loop pushes at once: wait for the server itself (the device may not have queued yet).
    api = live_server.client("east1")
    deadline = time.monotonic() + 30
    while api.get(f"/api/data/leads({lead})").json["statecode"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a condition, bounded by the deadline
    server = api.get(f"/api/data/leads({lead})").json
    assert (server["statecode"], server["statuscode"]) == (2, 6)


def test_a_command_in_online_only_mode_runs_on_the_server(live_server: Any, phone_page: Page) -> None:
    """After "Skip for now" nothing is on the device: the command goes to the Web API directly."""
    api = live_server.client("east1")
    opp_id = api.post("/api/data/opportunities", {"name": "Online only", "estimatedvalue": 900}).json["opportunityid"]
    page = phone_page
    page.goto("/")
    page.get_by_label("Organisation").fill("contoso")
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Skip for now").click()
    page.goto(f"/#/record/opportunity/{opp_id}")
    page.get_by_role("button", name="Close as Lost").click()
    dialog = page.get_by_role("dialog", name="Close Opportunity as Lost")
    dialog.get_by_label("Reason").select_option(label="Out-Sold")
    dialog.get_by_role("button", name="Close as Lost").click()
    expect(page.get_by_role("button", name="Close as Lost")).to_have_count(0)
    assert page.evaluate("() => window.Outpost.ctx.store.pendingCount()") == 0  # nothing was queued
    server = api.get(f"/api/data/opportunities({opp_id})").json
    assert (server["statecode"], server["statuscode"]) == (2, 5)
