"""The offline client APIs (webapp/static/js/xrm.js) in a real browser, answered from the device.

`Xrm.Mobile.offline` (also `window.Outpost.offline`), `Xrm.WebApi.offline` and plain
`Xrm.WebApi`: every call and the exact shape of what it resolves with (DESIGN.md §3 Browser);
failures reject with `{errorCode, message}` and change neither the records nor the queue; a
record created through the API while the server is down is queued and reaches the server once
it is back (checked over HTTP).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

if TYPE_CHECKING:  # the fixtures' classes (tests/e2e is not a package: conftest is not imported here)
    from tests.e2e.conftest import LiveServer

USER = "east1"
SYNC_TIMEOUT_MS = 30_000
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def offline_ready(context: BrowserContext) -> Page:
    """Sign in as east1 on the phone, take the offline updates, and wait for the APIs."""
    page = context.new_page()
    page.goto("/")
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Update").click()
    wait_until(
        page,
        "(() => { const s = window.Outpost.ctx.sync?.status;"
        " return Boolean(s && s.offlineReady && !s.download && window.Xrm?.Mobile?.offline); })()",
        timeout=60_000,
    )
    return page


def wait_synced(page: Page) -> None:
    """Wait until the queue is empty (every operation acknowledged)."""
    page.evaluate(
        """async (ms) => {
          const deadline = Date.now() + ms;
          while ((await window.Outpost.ctx.store.pendingCount()) > 0) {
            if (Date.now() > deadline) throw new Error(`operations still queued after ${ms} ms`);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }""",
        SYNC_TIMEOUT_MS,
    )


def device_state(page: Page) -> dict[str, Any]:
    """What a failed call must not change: the queue and every entity's records."""
    return page.evaluate(
        """async () => ({
          pending: await window.Outpost.ctx.store.pendingCount(),
          counts: await window.Outpost.ctx.store.counts(),
          accounts: (await window.Outpost.ctx.store.all("account")).map((r) => JSON.stringify(r)).sort(),
          leads: (await window.Outpost.ctx.store.all("lead")).map((r) => JSON.stringify(r)).sort(),
        })"""
    )


def first_id(page: Page, entity: str, options: str) -> str:
    """The primary id of the first record of a device query."""
    return page.evaluate(
        "async ([e, o]) => { const [r] = await Xrm.Mobile.offline.retrieveMultipleRecords(e, o, 1);"
        " return r[window.Outpost.ctx.store.entity(e).primary_id]; }",
        [entity, options],
    )


def test_the_mobile_offline_api_answers_from_the_device_with_the_reference_shapes(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """Xrm.Mobile.offline: is-enabled, create, retrieve, retrieve multiple, update, delete."""
    page = offline_ready(phone_context)
    contact_id = first_id(page, "contact", "$filter=fullname eq 'Ben Schmidt'")
    out = page.evaluate(
        """async (contactId) => {
          const api = Xrm.Mobile.offline;
          const out = {same: window.Outpost.offline === api, names: Object.keys(api).sort()};
          out.enabled = [api.isOfflineEnabled("account"), api.isOfflineEnabled("activitypointer"),
                         api.isOfflineEnabled("businessunit"), api.isOfflineEnabled("nope")];
          out.created = await api.createRecord("account", {
            name: "Xrm Alpha", revenue: 1250.5, numberofemployees: 12, industrycode: 8,
            "primarycontactid@odata.bind": `/contacts(${contactId})`,
          });
          const minted = crypto.randomUUID();
          out.minted = minted;
          out.withId = await api.createRecord("account", {accountid: minted, name: "Xrm Beta",
            primarycontactid: {logicalname: "contact", id: contactId.toUpperCase()}});
          out.selected = await api.retrieveRecord("account", out.created.id, "?$select=name,revenue,primarycontactid");
          out.expanded = await api.retrieveRecord("account", `{${minted.toUpperCase()}}`,
            "$select=name&$expand=primarycontactid($select=fullname)");
          out.whole = await api.retrieveRecord("account", out.created.id);
          const xrmOnes = "$select=name&$filter=startswith(name,'Xrm')";
          out.many = await api.retrieveMultipleRecords("account", `?${xrmOnes}&$orderby=name desc`);
          out.page = await api.retrieveMultipleRecords("account", `${xrmOnes}&$orderby=name`, 1);
          out.updated = await api.updateRecord("account", out.created.id, {name: "Xrm Alpha Two", revenue: null});
          out.afterUpdate = await api.retrieveRecord("account", out.created.id, "$select=name,revenue");
          out.deleted = await api.deleteRecord("account", minted);
          out.afterDelete = await api.retrieveRecord("account", minted).catch((e) => e);
          return out;
        }""",
        contact_id,
    )
    assert out["same"] is True
    assert out["names"] == sorted(
        [
            "isOfflineEnabled",
            "createRecord",
            "retrieveRecord",
            "retrieveMultipleRecords",
            "updateRecord",
            "deleteRecord",
        ]
    )
    assert out["enabled"] == [True, True, False, False]

    created = out["created"]
    assert set(created) == {"id", "logicalName", "entityType"}
    assert UUID_RE.match(created["id"]) and created["logicalName"] == "account" == created["entityType"]
    assert out["withId"] == {"id": out["minted"], "logicalName": "account", "entityType": "account"}

    selected = out["selected"]
    assert selected["accountid"] == created["id"]
    assert selected["name"] == "Xrm Alpha" and selected["revenue"] == 1250.5
    assert selected["_primarycontactid_value"] == contact_id
    assert selected[f"_primarycontactid_value{FORMATTED}"] == "Ben Schmidt"
    assert "numberofemployees" not in selected and "telephone1" not in selected

    expanded = out["expanded"]
    assert expanded["accountid"] == out["minted"]
    assert expanded["primarycontactid"]["fullname"] == "Ben Schmidt"
    assert expanded["primarycontactid"]["contactid"] == contact_id  # the older {logicalname, id} form, in upper case

    whole = out["whole"]
    assert whole["numberofemployees"] == 12 and whole["industrycode"] == 8
    assert whole[f"industrycode{FORMATTED}"] == "Technology"
    assert whole["_ownerid_value"]  # a device-made record is the user's

    assert isinstance(out["many"], list)
    assert [r["name"] for r in out["many"]] == ["Xrm Beta", "Xrm Alpha"]
    assert all(set(r) >= {"accountid", "name"} and "revenue" not in r for r in out["many"])
    assert [r["name"] for r in out["page"]] == ["Xrm Alpha"]

    assert out["updated"] == {"id": created["id"], "logicalName": "account", "entityType": "account"}
    assert out["afterUpdate"]["name"] == "Xrm Alpha Two" and out["afterUpdate"]["revenue"] is None
    assert out["deleted"] == {"id": out["minted"], "logicalName": "account", "entityType": "account"}
    gone = out["afterDelete"]
    assert (gone["errorCode"], gone["code"]) == (DOES_NOT_EXIST, "not_found")
    assert gone["message"] == f"account With Id = {out['minted']} Does Not Exist"
    # Every write was queued and reaches the server: the update as made, the deleted one gone.
    wait_synced(page)
    api = live_server.client(USER)
    on_server = api.get(f"/api/data/accounts({created['id']})?$select=name,revenue")
    assert on_server.status == 200, on_server.json
    assert (on_server.json["name"], on_server.json["revenue"]) == ("Xrm Alpha Two", None)
    assert api.get(f"/api/data/accounts({out['minted']})").status == 404


def test_the_web_api_answers_from_the_device_and_pages_with_next_link(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """Xrm.WebApi.offline and plain Xrm.WebApi: shapes, paging through nextLink, activities."""
    page = offline_ready(phone_context)
    out = page.evaluate(
        """async () => {
          const off = Xrm.WebApi.offline;
          const out = {
            plainOffline: Xrm.WebApi.offline === off,
            available: [off.isAvailableOffline("contact"), Xrm.WebApi.isAvailableOffline("team"),
                        off.isAvailableOffline("businessunit")],
          };
          out.created = [];
          for (const n of [1, 2, 3, 4, 5]) {
            out.created.push(await off.createRecord("contact", {firstname: "Paging", lastname: `Probe ${n}`}));
          }
          out.plainCreated = await Xrm.WebApi.createRecord("task", {
            subject: "Call the Xrm desk", scheduledstart: "2031-04-01T10:00:00Z",
          });
          out.updated = await off.updateRecord("contact", out.created[0].id, {jobtitle: "Tester"});
          out.record = await off.retrieveRecord("contact", out.created[0].id, "$select=fullname,jobtitle");
          const pages = [];
          let options = "?$select=lastname&$filter=firstname eq 'Paging'&$orderby=lastname desc";
          for (;;) {
            const page = await Xrm.WebApi.retrieveMultipleRecords("contact", options, 2);
            pages.push(page);
            if (!page.nextLink) break;
            options = page.nextLink.slice(page.nextLink.indexOf("?"));
          }
          out.pages = pages;
          const probes = "$select=lastname&$filter=firstname eq 'Paging'";
          out.top = await off.retrieveMultipleRecords("contact", `${probes}&$orderby=lastname&$top=3`, 2);
          const activityColumns = "$select=subject,activitytypecode&$orderby=subject";
          out.activities = await off.retrieveMultipleRecords("activitypointer", activityColumns);
          out.activity = await off.retrieveRecord("activitypointer", out.plainCreated.id);
          out.activityDeleted = await off.deleteRecord("activitypointer", out.plainCreated.id);
          out.activityGone = await off.retrieveRecord("task", out.plainCreated.id).catch((e) => e);
          out.deleted = await Xrm.WebApi.deleteRecord("contact", out.created[4].id);
          return out;
        }"""
    )
    assert out["plainOffline"] is True
    assert out["available"] == [True, True, False]
    for created in out["created"]:
        assert set(created) == {"entityType", "id"} and created["entityType"] == "contact"
        assert UUID_RE.match(created["id"])
    assert set(out["plainCreated"]) == {"entityType", "id"} and out["plainCreated"]["entityType"] == "task"
    assert out["updated"] == {"entityType": "contact", "id": out["created"][0]["id"]}
    assert out["record"]["fullname"] == "Paging Probe 1" and out["record"]["jobtitle"] == "Tester"

    pages = out["pages"]
    assert [[r["lastname"] for r in p["entities"]] for p in pages] == [
        ["Probe 5", "Probe 4"],
        ["Probe 3", "Probe 2"],
        ["Probe 1"],
    ]
    assert all("nextLink" in p for p in pages[:-1]) and "nextLink" not in pages[-1]
    assert pages[0]["nextLink"].startswith(f"{live_server.url}/api/data/contacts?")
    assert "%24skiptoken=" in pages[0]["nextLink"] or "$skiptoken=" in pages[0]["nextLink"]
    assert all(set(r) >= {"contactid", "lastname"} and "firstname" not in r for p in pages for r in p["entities"])
    assert [r["lastname"] for r in out["top"]["entities"]] == ["Probe 1", "Probe 2"]
    assert "nextLink" in out["top"]

    activities = out["activities"]["entities"]
    assert {"appointment", "task", "phonecall", "email"} <= {a["activitytypecode"] for a in activities}
    assert out["activity"]["activitytypecode"] == "task" and out["activity"]["subject"] == "Call the Xrm desk"
    assert "percentcomplete" not in out["activity"]  # activitypointer's columns only, as on the server
    assert out["activityDeleted"] == {
        "entityType": "activitypointer",
        "id": out["plainCreated"]["id"],
        "name": "Call the Xrm desk",
    }
    assert (out["activityGone"]["errorCode"], out["activityGone"]["code"]) == (DOES_NOT_EXIST, "not_found")
    assert out["deleted"] == {"entityType": "contact", "id": out["created"][4]["id"], "name": "Paging Probe 5"}


# The reference's numeric codes (docs/offline.md, "Error codes") and how its messages start.
DOES_NOT_EXIST = -2147220969  # 0x80040217
DUPLICATE_RECORD = -2147220937  # 0x80040237
PRIVILEGE_DENIED = -2147220960  # 0x80040220
INVALID_ARGUMENT = -2147220989  # 0x80040203
REFERENCE = {
    "not_found": (DOES_NOT_EXIST, re.compile(r"^\w+ With Id = [0-9a-f-]{36} Does Not Exist$")),
    "duplicate_id": (DUPLICATE_RECORD, re.compile(r"^Cannot insert duplicate key: .+")),
    "not_allowed_offline": (PRIVILEGE_DENIED, re.compile(r"^Privilege denied: .+")),
    "not_offline": (PRIVILEGE_DENIED, re.compile(r"^Privilege denied: .+")),
    **{
        code: (INVALID_ARGUMENT, re.compile(r"^Invalid argument: .+"))
        for code in ("invalid_argument", "invalid_query", "unknown_attribute", "unknown_entity", "validation_failed")
    },
}

ERROR_CASES = [
    # (call as JavaScript over `api` (Xrm.WebApi.offline), `mobile`, `ids`; expected string `code`)
    # An unknown attribute is refused as the server refuses it (validation_failed, by field).
    ("api.createRecord('account', {name: 'x', nme: 'x'})", "validation_failed"),
    ("api.createRecord('account', {name: 5})", "validation_failed"),
    ("api.createRecord('account', {name: 'x', revenue: 'lots'})", "validation_failed"),
    ("api.createRecord('account', {name: 'x', industrycode: 99})", "validation_failed"),
    ("api.createRecord('account', {telephone1: '1'})", "validation_failed"),
    ("api.createRecord('account', {name: 'x'.repeat(161)})", "validation_failed"),
    ("api.createRecord('account', {accountid: ids.account, name: 'Again'})", "duplicate_id"),
    ("mobile.createRecord('account', {accountid: 'not-a-guid', name: 'x'})", "validation_failed"),
    (
        "api.createRecord('account', {name: 'x', 'primarycontactid@odata.bind': `/accounts(${ids.account})`})",
        "validation_failed",
    ),
    ("api.createRecord('account', {name: 'x', primarycontactid: ids.contact})", "validation_failed"),
    ("api.updateRecord('account', '00000000-0000-4000-8000-000000000000', {name: 'x'})", "not_found"),
    ("api.updateRecord('account', ids.account, {accountid: ids.account})", "validation_failed"),
    ("api.updateRecord('account', ids.account, {versionnumber: 1})", "validation_failed"),
    ("api.retrieveRecord('account', '00000000-0000-4000-8000-000000000000')", "not_found"),
    ("api.retrieveRecord('account', 'nope')", "invalid_argument"),
    ("api.retrieveRecord('account', ids.account, '$filter=name eq 1')", "invalid_query"),
    ("api.retrieveMultipleRecords('account', '$filter=nme eq 1')", "invalid_query"),
    ("api.retrieveMultipleRecords('account', '$select=name', 0)", "invalid_argument"),
    ("api.deleteRecord('account', '00000000-0000-4000-8000-000000000000')", "not_found"),
    ("api.deleteRecord('activitypointer', ids.email)", "not_allowed_offline"),
    ("api.createRecord('email', {subject: 'x'})", "not_allowed_offline"),
    ("api.updateRecord('systemuser', ids.user, {firstname: 'x'})", "not_allowed_offline"),
    ("mobile.createRecord('businessunit', {name: 'x'})", "not_offline"),
    ("mobile.retrieveMultipleRecords('nope', '')", "unknown_entity"),
    # State moves only a command may make (issue 9: trust nothing from the client), as on the server.
    ("api.createRecord('lead', {subject: 'x', lastname: 'y', statecode: 1})", "validation_failed"),
    ("api.updateRecord('lead', ids.lead, {statecode: 1})", "validation_failed"),
    ("api.updateRecord('lead', ids.lead, {statuscode: 4})", "validation_failed"),
    ("api.updateRecord('opportunity', ids.opportunity, {statecode: 1})", "validation_failed"),
]


def test_failures_reject_with_the_references_numeric_error_code_and_message_and_write_nothing(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """Unknown attribute, wrong type, missing record, duplicate id, entity not offline, …

    Each rejects with the reference's number in `errorCode`, a message shaped like the
    reference's, and Outpost's own code in `code`.
    """
    page = offline_ready(phone_context)
    ids = page.evaluate(
        """async () => ({
          account: (await Xrm.WebApi.retrieveMultipleRecords("account", "$top=1")).entities[0].accountid,
          contact: (await Xrm.WebApi.retrieveMultipleRecords("contact", "$top=1")).entities[0].contactid,
          email: (await Xrm.WebApi.retrieveMultipleRecords("email", "$top=1")).entities[0].activityid,
          lead: (await Xrm.WebApi.retrieveMultipleRecords("lead", "$filter=statecode eq 0&$top=1")).entities[0].leadid,
          opportunity: (await Xrm.WebApi.retrieveMultipleRecords("opportunity", "$filter=statecode eq 0&$top=1"))
            .entities[0].opportunityid,
          user: window.Outpost.ctx.identity.user.id,
        })"""
    )
    before = device_state(page)
    failures = []
    for call, code in ERROR_CASES:
        result = page.evaluate(
            f"""async (ids) => {{
              const api = Xrm.WebApi.offline, mobile = Xrm.Mobile.offline;
              try {{ return {{resolved: await {call}}}; }}
              catch (e) {{ return {{rejected: e, isError: e instanceof Error, keys: Object.keys(e)}}; }}
            }}""",
            ids,
        )
        if "rejected" not in result:
            failures.append(f"{call} resolved {result['resolved']!r}")
            continue
        err = result["rejected"]
        number, message = REFERENCE[code]
        if sorted(result["keys"]) != ["code", "errorCode", "message"] or result["isError"]:
            failures.append(f"{call} rejected with {result['keys']} (an Error: {result['isError']})")
        elif (err["errorCode"], err["code"]) != (number, code) or not message.match(err["message"]):
            failures.append(f"{call} rejected with {err}, expected {number} ({code}), message {message.pattern}")
    assert not failures, "\n".join(failures)
    assert device_state(page) == before


def test_a_record_created_through_the_api_offline_is_queued_and_reaches_the_server(
    live_server: LiveServer, phone_context: BrowserContext
) -> None:
    """Created while the server is down: queued on the device, then on the server after sync."""
    page = offline_ready(phone_context)
    api = live_server.client(USER)
    contact_id = first_id(page, "contact", "$filter=fullname eq 'Ben Schmidt'")
    live_server.stop()
    expect(page.locator("html[data-connection=offline], html[data-connection=connecting]")).to_have_count(1)
    created = page.evaluate(
        """async (contactId) => {
          const r = await Xrm.WebApi.offline.createRecord("account", {
            name: "Made Offline Through Xrm", telephone1: "+1 555 0199",
            "primarycontactid@odata.bind": `/contacts(${contactId})`,
          });
          return {...r, pending: await window.Outpost.ctx.store.pendingCount()};
        }""",
        contact_id,
    )
    assert created["pending"] == 1
    live_server.start()
    # The next change wakes the sync loop (as any edit does); both operations reach the server in order.
    page.evaluate(
        "(id) => Xrm.Mobile.offline.updateRecord('account', id, {accountnumber: 'XRM-1'})",
        created["id"],
    )
    wait_synced(page)
    assert page.evaluate("window.Outpost.ctx.store.errors()") == []
    resp = api.get(f"/api/data/accounts({created['id']})")
    assert resp.status == 200, resp.json
    record = resp.json
    assert record["name"] == "Made Offline Through Xrm"
    assert record["telephone1"] == "+1 555 0199"
    assert record["accountnumber"] == "XRM-1"
    assert record["_primarycontactid_value"] == contact_id
    assert record["_ownerid_value"] == page.evaluate("window.Outpost.ctx.identity.user.id")
    # The device holds the server's version of it now.
    version = page.evaluate("(id) => Xrm.Mobile.offline.retrieveRecord('account', id, '$select=name')", created["id"])
    assert version["versionnumber"] == record["versionnumber"]
