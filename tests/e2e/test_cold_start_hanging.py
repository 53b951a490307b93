"""Cold start as a user feels it: a network that never answers is no slower than no network.

The phone reaches the server through `tests.faultproxy.FaultProxy`. After the first download the
network either hangs (`proxy.hang()`: connections are accepted and never answered, the worst
case for an app that waits on the server) or the server is really stopped (refused), and the
page is reloaded. From the reload, the list of the device's records must show within
`COLD_START_MS`, below every time limit the app has for the network (the service worker's
navigation timeout, the session check's), so a start that waited for one of them fails. The top
bar must say the phone is offline (or still connecting); a hang lasts until the sync loop has
given up on its session check (what was sent into the hang is never answered, so a loop that
waited with no time limit would wait for ever). Once the network is back the phone syncs on its
own: a record written on the server meanwhile reaches the list.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import CTX, sign_in
from tests.e2e.waits import wait_until
from tests.faultproxy import FaultProxy

# Below the service worker's 3 s navigation timeout and the 5 s session check (webapp/static/js/api.js):
# a start that waits for either misses it. The benchmark holds the real target (500 ms).
COLD_START_MS = 2_500
HUNG_MS = 15_000  # the sync loop gives up on a session check that is never answered (5 s)
BACK_MS = 45_000  # the network is back: the loop's back-off (up to 30 s) plus a session

pytestmark = pytest.mark.usefixtures("frozen_static")


def first_row_name(page: Page) -> str:
    """The name in the first row of the accounts list as it shows now."""
    page.goto("/#/list/account")
    region = page.get_by_role("region", name=re.compile(r": \d+"))
    expect(region).to_be_visible()
    return region.get_by_role("row").nth(1).get_by_role("cell").nth(1).inner_text().strip()


@pytest.mark.parametrize("fault", ["hanging", "refused"])
def test_a_cold_start_shows_the_devices_list_as_fast_with_a_hanging_network_as_with_none(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    page = phone.new_page()
    sign_in(page, "east1")
    name = first_row_name(page)
    assert name
    east1 = live_server.client("east1")

    if fault == "hanging":
        proxy.hang()
        # Written while the phone cannot hear of it: it must arrive once the network answers.
        created = east1.post("/api/data/accounts", {"name": "Aardvark Written During The Hang"})
    else:
        live_server.stop()
    started = time.monotonic()
    page.reload(wait_until="commit")
    row = page.get_by_role("row", name=re.compile(re.escape(name)))
    expect(row.first).to_be_visible(timeout=COLD_START_MS * 4)  # measured below, reported if slow
    shown_ms = (time.monotonic() - started) * 1000
    with capsys.disabled():
        print(f"\n  [figure] {fault} network: the device's list showed {shown_ms:.0f} ms after the reload")
    assert shown_ms < COLD_START_MS, f"the list showed {shown_ms:.0f} ms after the reload ({fault} network)"
    expect(page.get_by_role("button", name=re.compile(r"^(Offline|Connecting)"))).to_be_visible()
    assert page.evaluate(f"{CTX}.sync.status.connection") != "online"

    if fault == "hanging":
        # The hang outlasts the session check: the sync loop must give up on it (the top bar
        # says Offline) and not wait for an answer that will never come. Then the network is back.
        expect(page.get_by_role("button", name=re.compile(r"^Offline"))).to_be_visible(timeout=HUNG_MS)
        proxy.unhang()
    else:
        live_server.start()
        created = east1.post("/api/data/accounts", {"name": "Aardvark Written After The Restart"})
    assert created.status in (200, 201, 204), created.json
    back = time.monotonic()
    wait_until(page, f"{CTX}.sync.status.connection === 'online'", timeout=BACK_MS)
    expect(page.get_by_role("button", name=re.compile(r"^(Online|Syncing)"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Aardvark Written")).first).to_be_visible(timeout=BACK_MS)
    with capsys.disabled():
        took = time.monotonic() - back
        print(f"  [figure] {fault}: synced, the server's new record listed {took:.1f} s after the network was back")
