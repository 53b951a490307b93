"""Phone-first lists (#15 item 4): cards on a 360 px phone, the whole card a target, a 44 px
checkbox or a long-press to select, pull-to-refresh and its "Refresh" button.

Touch is real touch: the long-press and the pull are sent as touch events through the DevTools
protocol (Input.dispatchTouchEvent), the way a finger reaches the page.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from playwright.sync_api import BrowserContext, CDPSession, Locator, Page, expect

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

NARROW = {"width": 360, "height": 780}
LISTS = ["contact", "account", "lead", "opportunity", "activitypointer", "systemuser"]


def sign_in(page: Page, update: bool = True) -> None:
    page.goto("/")
    page.get_by_label("Organisation").fill(DEMO_ORG)
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    dialog = page.get_by_role("dialog", name="Offline Updates Available")
    dialog.get_by_role("button", name="Update" if update else "Skip for now").click()
    if update:
        wait_until(
            page,
            "() => { const s = window.Outpost.ctx.sync?.status;"
            " return s?.offlineReady && !s.download && s.connection === 'online'; }",
            timeout=60_000,
        )
    else:
        expect(page.get_by_role("link", name=re.compile("^Contacts"))).to_be_visible()


def open_list(page: Page, entity: str) -> None:
    """Open a list, once the sync is at rest (its progress re-renders the screen)."""
    page.goto(f"/#/list/{entity}")
    wait_until(
        page,
        "() => { const s = window.Outpost.ctx.sync?.status;"
        " return !window.Outpost.ctx.data?.local || (s.phase === 'idle' && s.connection === 'online'); }",
    )
    expect(page.get_by_role("region", name=re.compile(r": \d+"))).to_be_visible()


def touch(cdp: CDPSession, kind: str, x: float, y: float) -> None:
    points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def center(page: Page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_at_360_px_every_list_is_cards_with_every_column_on_screen(live_server: LiveServer, phone_page: Page) -> None:
    """No horizontal scroll; each card at least 44 px tall, its checkbox 44 by 44 px, and every
    column that has a value is inside the screen: the columns that did not fit are in the card."""
    page = phone_page
    sign_in(page)
    page.set_viewport_size(NARROW)
    for entity in LISTS:
        open_list(page, entity)
        found: dict[str, Any] = page.evaluate(
            """() => {
              const width = document.documentElement.clientWidth;
              const rows = [...document.querySelectorAll(".grid tbody tr")];
              const off = [];
              let columns = 0;
              for (const tr of rows) {
                for (const cell of tr.children) {
                  if (!cell.textContent.trim()) continue;
                  columns += 1;
                  const r = cell.getBoundingClientRect();
                  if (r.width === 0 || r.left < 0 || r.right > width + 0.5) off.push(cell.textContent.trim());
                }
              }
              const heads = [...document.querySelectorAll(".grid thead button")].map((b) => b.getBoundingClientRect());
              const boxes = rows.map((tr) => tr.querySelector("input[type=checkbox]").getBoundingClientRect());
              return {
                scroll: document.documentElement.scrollWidth - width,
                rows: rows.length, columns, off,
                shortest: Math.min(...rows.map((tr) => tr.getBoundingClientRect().height)),
                smallestBox: Math.min(...boxes.map((b) => Math.min(b.width, b.height))),
                headsOff: heads.filter((r) => r.right > width + 0.5 || r.height < 44).length,
              };
            }"""
        )
        assert found["rows"] > 0, entity
        assert found["scroll"] <= 0, f"{entity}: {found['scroll']} px of horizontal scroll"
        assert found["off"] == [], f"{entity}: off screen {found['off'][:5]}"
        assert found["columns"] > found["rows"], f"{entity}: the cards show only their names"
        assert found["shortest"] >= 44, entity
        assert found["smallestBox"] >= 44, entity
        assert found["headsOff"] == 0, f"{entity}: a sort button is off screen or under 44 px"


def into_view(locator: Locator) -> None:
    """Scroll the element into view in one step in the page: the list is drawn again when data
    arrives (a row found, then replaced, cannot be scrolled by a two-step scroll)."""
    expect(locator).to_be_visible()
    locator.evaluate("(el) => el.scrollIntoView({block: 'center'})")


def test_a_tap_anywhere_on_a_card_opens_it_and_a_long_press_or_the_checkbox_selects_it(
    live_server: LiveServer, phone_page: Page, phone_context: BrowserContext
) -> None:
    page = phone_page
    sign_in(page)
    page.set_viewport_size(NARROW)
    cdp = phone_context.new_cdp_session(page)
    open_list(page, "contact")
    card = page.locator(".grid tbody tr").filter(has=page.get_by_role("link", name="Ben Schmidt", exact=True))
    # A tap on a secondary line (not on the name) opens the record.
    into_view(card)
    # Measured in the page on the row as it is now: the list is redrawn as data arrives, and a
    # replaced row measures 0.
    line = page.wait_for_function(
        """() => {
          const row = [...document.querySelectorAll(".grid tbody tr")]
            .find((tr) => tr.querySelector("a")?.textContent === "Ben Schmidt");
          const r = row?.querySelector("td[data-label]:not(:empty)")?.getBoundingClientRect();
          return r && r.width > 0 ? {x: r.x, y: r.y, width: r.width, height: r.height} : null;
        }"""
    ).json_value()
    page.touchscreen.tap(line["x"] + line["width"] - 4, line["y"] + line["height"] / 2)
    expect(page.get_by_role("heading", name="Ben Schmidt", level=1)).to_be_visible()
    page.go_back()
    expect(page.get_by_role("region", name=re.compile(r": \d+"))).to_be_visible()

    # A long-press selects, and lifting the finger does not open the record.
    box = page.get_by_role("checkbox", name="Select Ben Schmidt")
    expect(box).not_to_be_checked()
    into_view(card)
    x, y = center(page, ".grid tbody tr:has(a:text-is('Ben Schmidt')) td[data-label]:not(:empty)")
    touch(cdp, "touchStart", x, y)
    expect(box).to_be_checked()
    touch(cdp, "touchEnd", x, y)
    expect(page.get_by_role("status").filter(has_text="Selected: 1")).to_be_visible()
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()
    expect(card).to_have_class(re.compile("grid__row--selected"))

    # The checkbox answers across its 44 px: a tap near its corner clears it.
    into_view(box)
    target = box.bounding_box()
    assert target is not None and target["width"] >= 44 and target["height"] >= 44
    page.touchscreen.tap(target["x"] + 3, target["y"] + 3)
    expect(box).not_to_be_checked()
    expect(page.get_by_role("status").filter(has_text="Selected: 0")).to_be_visible()
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()


def pull_down(cdp: CDPSession, x: float, top: float) -> None:
    """A finger pulls the list down 300 px from near its top, in steps, and lets go."""
    touch(cdp, "touchStart", x, top)
    for step in range(1, 11):
        touch(cdp, "touchMove", x, top + step * 30)
    touch(cdp, "touchEnd", x, top + 300)


def test_pull_to_refresh_reads_the_server_again_online_only(
    live_server: LiveServer, phone_page: Page, phone_context: BrowserContext
) -> None:
    """Online-only ("Skip for now") a list is not told of others' changes: pulling it down shows them."""
    page = phone_page
    sign_in(page, update=False)
    cdp = phone_context.new_cdp_session(page)
    open_list(page, "contact")
    api = live_server.client("east1")
    made = api.post("/api/data/contacts", {"firstname": "Pulled", "lastname": "Aardvark"})
    assert made.status == 201, made.json
    new = page.get_by_role("link", name="Pulled Aardvark", exact=True)
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()
    assert new.count() == 0
    pull_down(cdp, 200, 150)
    expect(page.get_by_role("status").filter(has_text=re.compile("^Refreshed at"))).to_be_visible()
    expect(new).to_be_visible()


def test_refresh_syncs_now_where_the_server_answers_and_is_off_without_it(
    live_server: LiveServer, phone_page: Page, phone_context: BrowserContext
) -> None:
    page = phone_page
    sign_in(page)
    cdp = phone_context.new_cdp_session(page)
    open_list(page, "contact")
    before = page.evaluate("window.Outpost.ctx.sync.status.lastSync")
    page.get_by_role("button", name="Refresh", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=re.compile("^Refreshed at"))).to_be_visible()
    assert page.evaluate("window.Outpost.ctx.sync.status.lastSync") != before

    live_server.stop()
    wait_until(page, "() => window.Outpost.ctx.sync.status.connection !== 'online'")
    expect(page.get_by_role("button", name="Refresh", exact=True)).to_be_disabled()
    expect(page.get_by_role("status").filter(has_text="Offline: showing what is on this device.")).to_be_visible()
    pull_down(cdp, 200, 150)  # nothing to pull from: no hint, no attempt
    expect(page.get_by_role("status").filter(has_text="Offline: showing what is on this device.")).to_be_visible()
    assert page.locator(".list-pull").evaluate("(el) => el.style.height || '0px'") == "0px"
