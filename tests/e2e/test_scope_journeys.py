"""Scope follows every security change on the phone (issue 13, docs/protocol.md "Scope checks").

The phone pulls with `scope: 1` and answers the server's `scope` checks, so a record that
leaves the user's scope through anything but a write to it — a role's privilege revoked, a
share revoked — leaves the phone: live while it is connected (the lists change without a
reload), and at the next pull after the server was down while the change was made. A record
that leaves while the user's edit of it waits in the queue keeps that edit: it is sent, the
server refuses it, and the sync error names the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT_MS, LiveServer
from tests.e2e.sync_helpers import (
    CTX,
    call,
    come_online,
    device_record,
    get,
    go_offline,
    outpost,
    pending,
    sign_in,
    update,
    user_id,
    wait_for,
    wait_synced,
)
from tests.e2e.test_encryption import sign_in_with_pin, turn_pin_on
from tests.e2e.waits import wait_until
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


@pytest.fixture
def desktop(live_server: LiveServer, chromium: Browser) -> Iterator[BrowserContext]:
    """A desktop browser for the administrator (its own storage), on the live server."""
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    yield context
    context.close()


def device_ids(page: Page, entity: str) -> list[str]:
    """The ids of an entity the phone holds from the server (read from IndexedDB)."""
    return call(page, f"(e) => {CTX}.store.heldIds(e)", entity)  # type: ignore[no-any-return]


def open_list(page: Page, entity: str) -> None:
    """Open an entity's list on the phone, once the sync is at rest."""
    page.goto(f"/#/list/{entity}")
    wait_until(
        page, f"() => {{ const s = {CTX}.sync?.status; return s.phase === 'idle' && s.connection === 'online'; }}"
    )
    expect(page.get_by_role("region", name=re.compile(r": \d+"))).to_be_visible()


def console(admin: Page, path: str) -> None:
    """Open a console page as the administrator (it asks for the sign-in first)."""
    admin.goto(path)
    expect(admin.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    admin.get_by_label("Organisation").fill(DEMO_ORG)
    admin.get_by_label("Username").fill("admin")
    admin.get_by_label("Password").fill(DEMO_PASSWORD)
    admin.get_by_role("button", name="Sign in").click()


def revoke_lead_read_in_console(admin: Page) -> None:
    """The administrator sets the Salesperson role's Lead read to None in the console and saves."""
    console(admin, "/admin/roles")
    admin.get_by_role("link", name="Salesperson", exact=True).click()
    expect(admin.get_by_role("heading", name="Role: Salesperson")).to_be_visible()
    admin.get_by_label("Lead read", exact=True).select_option(value="none")
    admin.get_by_role("button", name="Save role").click()
    expect(admin.get_by_text(re.compile(r"Role saved \(1 privilege"))).to_be_visible()


BUCKETS_AGREE = """
async () => {
  const scope = await import('/static/js/scope.js');
  const store = window.Outpost.ctx.store;
  const out = [];
  for (const entity of ['account', 'contact', 'lead']) {
    const ids = await store.heldIds(entity);
    const mine = await store.held(entity);
    const memory = scope.heldFrom(ids);
    for (const depth of [0, 1, 2]) {
      const a = [];
      for await (const b of mine.buckets(depth)) a.push(b);
      const b = [];
      for await (const x of memory.buckets(depth)) b.push(x);
      const one = a.length ? await mine.bucket(a[a.length - 1][0]) : [];
      out.push({entity, depth, count: ids.length, same: JSON.stringify(a) === JSON.stringify(b),
                last: a.length ? JSON.stringify(one) === JSON.stringify(a[a.length - 1][1]) : true});
    }
  }
  return out;
}
"""


def named_lead(page: Page) -> tuple[str, str]:
    """A lead the phone holds, with the name its list shows."""
    ids = device_ids(page, "lead")
    assert ids, "the Salesperson's phone holds no lead to begin with"
    record = device_record(page, "lead", ids[0])
    assert record is not None
    return ids[0], str(record["fullname"])


def test_a_privilege_revoked_in_the_console_takes_the_leads_off_the_connected_phone_s_list(
    live_server: LiveServer, desktop: BrowserContext, phone_page: Page
) -> None:
    phone = phone_page
    sign_in(phone, "east1")
    held = len(device_ids(phone, "lead"))
    open_list(phone, "lead")
    shown = phone.get_by_role("rowheader").get_by_role("link")
    expect(shown.first).to_be_visible()
    name = shown.first.inner_text()
    href = shown.first.get_attribute("href") or ""
    lead = href.rsplit("/", 1)[-1]
    row = phone.get_by_role("link", name=name, exact=True)
    loaded = phone.evaluate("performance.timeOrigin")

    revoke_lead_read_in_console(desktop.new_page())

    expect(row).to_have_count(0)  # gone from the list on screen, live
    wait_for(phone, f"async () => (await {CTX}.store.heldIds('lead')).length === 0", what="no lead left on the phone")
    assert device_record(phone, "lead", lead) is None
    assert phone.evaluate("performance.timeOrigin") == loaded, "the page was reloaded"
    assert held > 0
    # The server agrees: the Salesperson reads no lead now.
    assert get(live_server.client("east1"), "/api/data/leads?$select=leadid")["value"] == []


def test_revoked_while_the_server_was_down_leaves_the_sealed_phone_and_a_queued_edit_is_refused_by_name(
    live_server: LiveServer, phone_context: BrowserContext, phone_page: Page
) -> None:
    """With the app PIN on (records sealed by the codec); the phone keeps its edit until the server refuses it."""
    turn_pin_on(live_server)
    phone = phone_page
    sign_in_with_pin(phone, "east1")
    lead, name = named_lead(phone)
    accounts = len(device_ids(phone, "account"))

    go_offline(live_server, phone_context)
    update(phone, "lead", lead, {"jobtitle": "Edited offline"})
    assert pending(phone) == 1
    outpost(
        live_server,
        "grant",
        "--org",
        DEMO_ORG,
        "--role",
        "Salesperson",
        "--entity",
        "lead",
        "--privilege",
        "read",
        "--depth",
        "none",
    )
    come_online(live_server, phone_context)

    wait_synced(phone)
    wait_for(phone, f"async () => (await {CTX}.store.heldIds('lead')).length === 0", what="no lead left on the phone")
    assert device_record(phone, "lead", lead) is None
    assert len(device_ids(phone, "account")) == accounts  # only what left scope left
    errors: list[dict[str, Any]] = call(phone, f"() => {CTX}.store.errors()")
    assert len(errors) == 1, errors
    assert errors[0]["status"] == "rejected"
    assert errors[0]["name"] == name  # the refused edit names the record the user changed
    assert errors[0]["sent"]["changes"] == {"jobtitle": "Edited offline"}
    assert errors[0]["reason"]["message"]


def test_a_share_revoked_takes_the_shared_lead_off_the_connected_phone(
    live_server: LiveServer, phone_page: Page
) -> None:
    phone = phone_page
    admin = live_server.client("admin")
    west = get(admin, f"/api/data/leads?$select=leadid,fullname&$filter=_ownerid_value eq {user_id(admin, 'west1')}")
    assert west["value"], "west1 owns no lead"
    lead = west["value"][0]["leadid"]
    east1 = user_id(admin, "east1")
    sign_in(phone, "east1")
    assert device_record(phone, "lead", lead) is None  # another unit's lead: not the Salesperson's
    # The store reads its ids a bucket at a time (IndexedDB key ranges) as they are in memory.
    for row in call(phone, BUCKETS_AGREE, timeout=15_000):
        assert row["count"] > 0 and row["same"] and row["last"], row

    shared = admin.post(
        f"/api/data/leads({lead})/share", {"principal@odata.bind": f"/systemusers({east1})", "rights": ["read"]}
    )
    assert shared.status in (200, 204), shared.json
    wait_for(phone, f"async () => Boolean(await {CTX}.store.get('lead', {lead!r}))", what="the shared lead arrives")
    assert lead in device_ids(phone, "lead")

    unshared = admin.post(f"/api/data/leads({lead})/unshare", {"principal@odata.bind": f"/systemusers({east1})"})
    assert unshared.status in (200, 204), unshared.json
    wait_for(phone, f"async () => !(await {CTX}.store.get('lead', {lead!r}))", what="the unshared lead leaves")
    assert lead not in device_ids(phone, "lead")


def test_a_field_secured_in_the_console_leaves_every_record_on_the_connected_phone(
    live_server: LiveServer, desktop: BrowserContext, phone_page: Page
) -> None:
    """A `refresh` check: the records come again at the same version, and replace those held."""
    phone = phone_page
    sign_in(phone, "east1")
    with_phone = [i for i in device_ids(phone, "lead") if (device_record(phone, "lead", i) or {}).get("telephone1")]
    assert with_phone, "no lead on the phone has a business phone"
    versions = {i: (device_record(phone, "lead", i) or {})["versionnumber"] for i in with_phone}

    admin = desktop.new_page()
    console(admin, "/admin/field-security")
    admin.get_by_label("Field to secure").select_option(value="lead.telephone1")
    admin.get_by_role("button", name="Secure field").click()
    expect(admin.get_by_text("lead.telephone1 is now secured")).to_be_visible()

    has_phone = "(await Promise.all(ids.map((i) => s.get('lead', i)))).some((r) => r && r.telephone1)"
    wait_for(
        phone,
        f"async () => {{ const s = {CTX}.store; const ids = {with_phone!r}; return !{has_phone}; }}",
        what="no lead on the phone keeps the secured field's value",
    )
    for i in with_phone:
        record = device_record(phone, "lead", i)
        assert record is not None and record["versionnumber"] == versions[i]  # the same version, replaced
