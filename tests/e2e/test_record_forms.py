"""Forms and commands show only what the user may do, and fit a thumb (issue 15, items 3, 5, 8).

A salesperson (east1) works from the device with the server process stopped: the forms of
records they may not change, or that are closed, are read-only and say why in words; "My …"
views hold their own records only; commands appear where they apply and a list's selection
clears after one. Inputs bring the right keyboard, Status Reason offers the state's reasons,
amounts keep their currency symbol, toasts keep off the Save/Delete bar. The demo's custom
entity, Site Visit, works like any other.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.e2e.test_command_screens import drained, sign_in_and_update
from tests.e2e.waits import wait_until

SHOTS = "test-artifacts"
MINE = "Microsoft.Dynamics.CRM.EqualUserId(PropertyName='ownerid')"


def created(api: Any, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = api.post(f"/api/data/{entity_set}", body)
    assert resp.status == 201, resp.json
    return resp.json  # type: ignore[no-any-return]


def shoot(page: Page, name: str) -> None:
    """A screenshot of the top of the screen, for a person to look at."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=f"{SHOTS}/screen-{name}.png")


def no_form_actions(page: Page) -> None:
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)


def test_forms_of_closed_records_and_of_colleagues_are_read_only_and_say_why_offline(
    live_server: Any, phone_page: Page
) -> None:
    mine, colleague = live_server.client("east1"), live_server.client("east2")
    created(colleague, "accounts", {"name": "Kevin's Corner Shop"})
    own = created(mine, "accounts", {"name": "Nancy's Own Account"})
    lead = created(mine, "leads", {"subject": "Gone cold", "lastname": "Cold", "companyname": "Cold Ltd"})
    assert mine.post("/api/commands/disqualify_lead", {"leadid": lead["leadid"], "statuscode": 5}).status == 200
    won = created(mine, "opportunities", {"name": "Signed deal", "estimatedvalue": 1200})
    closed = mine.post("/api/commands/close_opportunity", {"opportunityid": won["opportunityid"], "status": "won"})
    assert closed.status == 200, closed.json
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()

    # "My Active Accounts" holds the user's own accounts; a colleague's shows in "Active Accounts".
    page.goto("/#/list/account")
    expect(page.get_by_role("link", name="Nancy's Own Account", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Kevin's Corner Shop", exact=True)).to_have_count(0)
    page.get_by_label("View", exact=True).select_option(label="Active Accounts")
    page.get_by_role("link", name="Kevin's Corner Shop", exact=True).click()

    # A colleague's account: readable, not changeable, and the form says whose it is.
    expect(page.get_by_role("heading", level=1, name="Kevin's Corner Shop")).to_be_visible()
    note = page.get_by_role("note", name="Read-only")
    expect(note).to_have_text("You can read this account but not change it: it belongs to Kevin Patel.")
    no_form_actions(page)
    expect(page.get_by_label("Account Name")).not_to_be_editable()
    shoot(page, "record-read-only")

    # A disqualified lead: its state in words, no Save/Delete, no Qualify; Reopen brings it back.
    page.goto(f"/#/record/lead/{lead['leadid']}")
    expect(page.get_by_role("heading", level=1, name="Cold")).to_be_visible()
    expect(page.get_by_text("Disqualified", exact=True).first).to_be_visible()
    expect(page.get_by_role("note", name="Read-only")).to_contain_text(
        "Disqualified (Cannot Contact): this lead is closed, so it is read-only."
    )
    no_form_actions(page)
    expect(page.get_by_role("button", name="Qualify", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Disqualify")).to_have_count(0)
    expect(page.get_by_label("Topic")).not_to_be_editable()
    shoot(page, "record-closed-lead")
    page.get_by_role("button", name="Reopen").click()
    expect(page.get_by_role("button", name="Save")).to_be_visible()
    expect(page.get_by_role("group", name="Commands").get_by_role("button", name="Qualify", exact=True)).to_be_visible()
    expect(page.get_by_role("note", name="Read-only")).to_have_count(0)

    # A won opportunity: "Won", read-only, no close buttons and no "Next stage".
    page.goto(f"/#/record/opportunity/{won['opportunityid']}")
    expect(page.get_by_role("heading", level=1, name="Signed deal")).to_be_visible()
    expect(page.get_by_role("note", name="Read-only")).to_contain_text("Won: this opportunity is closed")
    no_form_actions(page)
    expect(page.get_by_role("button", name="Close as Won")).to_have_count(0)
    expect(page.get_by_role("button", name="Next stage")).to_have_count(0)

    # The user's own open account: editable, as before.
    page.goto(f"/#/record/account/{own['accountid']}")
    expect(page.get_by_role("button", name="Save")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_be_visible()
    expect(page.get_by_role("note", name="Read-only")).to_have_count(0)

    live_server.start()
    drained(page)
    assert mine.get(f"/api/data/leads({lead['leadid']})").json["statecode"] == 0  # Reopen reached the server


def test_qualify_from_the_grid_clears_the_selection_and_skips_leads_that_are_not_open(
    live_server: Any, phone_page: Page
) -> None:
    api = live_server.client("east1")
    ids = [
        created(api, "leads", {"subject": s, "lastname": s, "companyname": f"{s} Ltd"})["leadid"]
        for s in ("Aster grid lead", "Birch grid lead")
    ]
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()
    page.goto("/#/list/lead")
    page.get_by_role("checkbox", name="Select Aster grid lead").check()
    page.get_by_role("checkbox", name="Select Birch grid lead").check()
    expect(page.get_by_role("status").filter(has_text="Selected: 2")).to_be_visible()
    page.get_by_role("button", name="Qualify", exact=True).click()
    page.get_by_role("dialog", name="Qualify 2 Leads").get_by_role("button", name="Qualify").click()
    expect(page.get_by_role("status").filter(has_text="Selected: 0")).to_be_visible()
    wait_until(page, "() => window.Outpost.ctx.sync.status.pending === 2")
    # The qualified leads left "My Open Leads"; in "Closed Leads" they cannot be qualified again.
    expect(page.get_by_role("link", name="Aster grid lead", exact=True)).to_have_count(0)
    page.get_by_label("View", exact=True).select_option(label="Closed Leads")
    page.get_by_role("checkbox", name="Select Aster grid lead").check()
    expect(page.get_by_role("status").filter(has_text="Selected: 1")).to_be_visible()
    page.get_by_role("button", name="Qualify", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="The selected lead is not open")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="Selected: 0")).to_be_visible()
    assert page.evaluate("() => window.Outpost.ctx.sync.status.pending") == 2
    live_server.start()
    drained(page)
    for lead in ids:
        assert api.get(f"/api/data/leads({lead})").json["statecode"] == 1


def bar_and_toast_overlap(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => {
              const bar = document.querySelector('.record-form .form__actions').getBoundingClientRect();
              return [...document.querySelectorAll('#banners [data-toast]')].some((t) => {
                const r = t.getBoundingClientRect();
                return r.height > 0 && r.bottom > bar.top && r.top < bar.bottom;
              });
            }"""
        )
    )


def test_forms_fit_a_thumb_inputs_reasons_stages_money_and_toasts(live_server: Any, phone_page: Page) -> None:
    api = live_server.client("east1")
    euro = api.get("/api/data/transactioncurrencies?$filter=isocurrencycode%20eq%20'EUR'").json["value"][0]
    opp = created(
        api,
        "opportunities",
        {
            "name": "Euro expansion",
            "estimatedvalue": 5000,
            "stepname": "2-Develop",
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({euro['transactioncurrencyid']})",
        },
    )
    dollars = created(api, "opportunities", {"name": "Dollar deal", "estimatedvalue": 900})
    task = created(api, "tasks", {"subject": "Send the brochure"})
    product = api.get("/api/data/products?$select=name&$orderby=name&$top=1").json["value"][0]
    contact = api.get(
        f"/api/data/contacts?$select=fullname&$filter={quote(f'statecode eq 0 and {MINE}')}&$orderby=fullname&$top=1"
    ).json["value"][0]
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()

    # The keyboard each field needs, from the metadata.
    page.goto(f"/#/record/contact/{contact['contactid']}")
    expect(page.get_by_label("Email", exact=True)).to_have_attribute("type", "email")
    expect(page.get_by_label("Business Phone")).to_have_attribute("type", "tel")
    expect(page.get_by_label("Mobile Phone")).to_have_attribute("type", "tel")
    expect(page.get_by_label("Birthday")).to_have_attribute("type", "date")

    # Toasts: one at a time, above the Save/Delete bar, gone when the user leaves the screen.
    page.get_by_label("Job Title").fill("Buyer")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Contact saved.")).to_be_visible()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="There are no changes to save.")).to_be_visible()
    expect(page.locator("#banners [data-toast]")).to_have_count(1)
    assert not bar_and_toast_overlap(page)
    shoot(page, "record-toast")
    page.get_by_role("link", name="Back to Contacts").click()
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()
    expect(page.locator("#banners [data-toast]")).to_have_count(0)

    # A task: Status is the server's, in words; Status Reason offers the reasons of its state only;
    # "Mark Complete" closes it, and a completed task is read-only.
    page.goto(f"/#/record/task/{task['activityid']}")
    expect(page.get_by_label("Status", exact=True)).to_have_value("Open")
    expect(page.get_by_label("Status", exact=True)).not_to_be_editable()
    expect(page.get_by_label("Activity Type")).not_to_be_editable()
    assert page.get_by_label("Status Reason").locator("option").all_inner_texts() == ["Open"]
    page.get_by_role("group", name="Commands").get_by_role("button", name="Mark Complete").click()
    expect(page.get_by_role("note", name="Read-only")).to_contain_text("Completed: this task is closed")
    no_form_actions(page)

    # An opportunity: the stages as choices; money with its currency's symbol, also once the
    # device computed it (offline: the server has not formatted it yet).
    page.goto(f"/#/record/opportunity/{opp['opportunityid']}")
    expect(page.get_by_label("Est. Revenue")).to_have_attribute("type", "number")
    phase = page.get_by_label("Pipeline Phase")
    expect(phase).to_have_value("2-Develop")
    assert phase.locator("option").all_inner_texts() == ["(none)", "Qualify", "Develop", "Propose", "Close"]
    expect(page.get_by_text("€5,000.00")).to_be_visible()
    page.get_by_label("Est. Revenue").fill("6250.5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("€6,250.50")).to_be_visible()

    # A product line added on the device: its name is the product's, its amount has its symbol.
    page.goto(f"/#/record/opportunity/{dollars['opportunityid']}")
    page.get_by_role("link", name="New Opportunity Product").click()
    expect(page.get_by_role("heading", name="New Opportunity Product")).to_be_visible()
    box = page.get_by_role("combobox", name="Existing Product", exact=True)
    box.fill(product["name"][:4])
    page.get_by_role("listbox", name="Existing Product results").get_by_role(
        "option", name=re.compile(re.escape(product["name"]))
    ).first.click()
    page.get_by_label("Quantity").fill("3")
    page.get_by_label("Price Per Unit").fill("250")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1, name=product["name"])).to_be_visible()
    expect(page.get_by_label("Extended Amount")).to_have_value("$750.00")
    page.goto(f"/#/record/opportunity/{dollars['opportunityid']}")
    expect(page.get_by_role("heading", level=1, name="Dollar deal")).to_be_visible()
    expect(page.get_by_role("link", name=product["name"], exact=True)).to_be_visible()
    expect(page.get_by_text("(no name)")).to_have_count(0)
    shoot(page, "record-opportunity-products")

    live_server.start()
    drained(page)
    of_deal = quote(f"_opportunityid_value eq {dollars['opportunityid']}")
    lines = api.get(f"/api/data/opportunityproducts?$filter={of_deal}").json["value"]
    assert [(line["quantity"], line["extendedamount"]) for line in lines] == [(3, 750)]
    assert lines[0]["extendedamount@OData.Community.Display.V1.FormattedValue"] == "$750.00"
    assert (
        api.get(f"/api/data/opportunities({opp['opportunityid']})").json[
            "estimatedvalue@OData.Community.Display.V1.FormattedValue"
        ]
        == "€6,250.50"
    )
    assert api.get(f"/api/data/tasks({task['activityid']})").json["statecode"] == 1


def test_the_demos_custom_entity_site_visit_works_offline_like_any_other(live_server: Any, phone_page: Page) -> None:
    api = live_server.client("east1")
    query = quote(MINE)
    visits = api.get(f"/api/data/new_sitevisits?$filter={query}&$orderby=new_visitdate%20desc").json["value"]
    assert visits, "the demo gives east1 site visits of their own"
    visit = visits[0]
    account_id = visit["_new_accountid_value"]
    account_name = visit["_new_accountid_value@OData.Community.Display.V1.FormattedValue"]
    page = phone_page
    sign_in_and_update(page)
    live_server.stop()

    # On home with its offline mark, with its own views, list and form.
    page.goto("/")
    page.get_by_role("link", name=re.compile(r"^Site Visits(?![A-Za-z])")).click()
    expect(page.get_by_role("heading", name="Site Visits", exact=True)).to_be_visible()
    expect(page.get_by_label("View", exact=True)).to_have_value(re.compile("new_sitevisit-1"))
    views = page.get_by_label("View", exact=True).locator("option").all_inner_texts()
    assert views == ["My Site Visits", "All Site Visits", "Follow-up Needed"], views
    page.get_by_role("link", name=visit["new_name"], exact=True).first.click()
    expect(page.get_by_role("heading", level=1, name=visit["new_name"])).to_be_visible()
    expect(page.get_by_label("Site Phone")).to_have_attribute("type", "tel")
    expect(page.get_by_label("Visit Date")).to_have_attribute("type", "date")
    expect(page.get_by_label("Duration (minutes)")).to_have_attribute("type", "number")
    expect(page.get_by_role("combobox", name="Account", exact=True)).to_have_value(account_name)
    shoot(page, "record-site-visit")

    # The account lists its site visits, and a new one starts there, offline.
    page.goto(f"/#/record/account/{account_id}")
    expect(page.get_by_role("heading", name=re.compile(r"^Site Visits \(\d+\+?\)$"))).to_be_visible()
    page.get_by_role("link", name="New Site Visit").click()
    expect(page.get_by_role("heading", name="New Site Visit")).to_be_visible()
    expect(page.get_by_role("combobox", name="Account", exact=True)).to_have_value(account_name)
    page.get_by_label("Subject").fill("Roof inspection")
    page.get_by_label("Visit Date").fill("2026-12-03")
    page.get_by_label("Site Phone").fill("+1 555 0199")
    page.get_by_label("Purpose").select_option(label="Maintenance")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1, name="Roof inspection")).to_be_visible()
    expect(page.get_by_text("Not synced")).to_be_visible()

    live_server.start()
    drained(page)
    roof = quote("new_name eq 'Roof inspection'")
    found = api.get(f"/api/data/new_sitevisits?$filter={roof}").json["value"]
    assert [(v["_new_accountid_value"], v["new_visitdate"], v["new_sitephone"], v["new_purpose"]) for v in found] == [
        (account_id, "2026-12-03", "+1 555 0199", 3)
    ]


def test_what_the_user_types_while_a_form_is_being_redrawn_is_not_replaced_by_the_redraw(
    live_server: Any, phone_page: Page
) -> None:
    opp = created(live_server.client("east1"), "opportunities", {"name": "Typed meanwhile", "estimatedvalue": 5000})
    page = phone_page
    sign_in_and_update(page)
    page.goto(f"/#/record/opportunity/{opp['opportunityid']}")
    revenue = page.get_by_label("Est. Revenue")
    expect(revenue).to_have_value("5000")
    # Data changes (a sync wrote opportunities) and the form's redraw starts; it is held while it
    # reads the record, and the user types meanwhile.
    page.evaluate(
        """() => {
            const ctx = window.Outpost.ctx;
            const retrieve = ctx.data.retrieve.bind(ctx.data);
            window.__gate = new Promise((open) => (window.__open = open));
            ctx.data.retrieve = async (...args) => {
                window.__reading = true;
                await window.__gate;
                return retrieve(...args);
            };
            ctx.store.notify(["opportunity"]);
        }"""
    )
    wait_until(page, "() => window.__reading === true")
    revenue.fill("6250.5")
    page.evaluate("async () => { window.__open(); await window.Outpost.ctx.drawn(); }")
    expect(revenue).to_have_value("6250.5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Opportunity saved.")).to_be_visible()
    assert (
        page.evaluate(
            f"async () => (await window.Outpost.ctx.store.get('opportunity', '{opp['opportunityid']}')).estimatedvalue"
        )
        == 6250.5
    )
