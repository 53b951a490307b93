"""The streamed first download (issue 14, docs/protocol.md "Streamed download") in a real Chromium.

The phone goes through the fault proxy, which sees every frame and here loses the device's
first three `stream_ack`s for accounts: the server then holds exactly its window of pages in
flight and the download stands still, deterministically, halfway through accounts. While it
stands the list screen is used; then the server process is stopped and started again, and the
download resumes after the last page committed and ends with exactly the server's scope on the
device — with the app PIN off and on (the worker seals the records).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.conftest import LiveServer
from tests.e2e.sync_helpers import CTX, call, fill_sign_in, open_app, raw_store, store_names, wait_for
from tests.e2e.test_encryption import set_pin, turn_pin_on
from tests.e2e.test_faults import add_accounts, device_view, primary_ids, server_view
from tests.faultproxy import FaultProxy
from webapp.sync import stream

EXTRA_ACCOUNTS = 6500  # more than the window of three pages of 2,000 (download.js STREAM_PAGE)

# A snapshot of webapp/static is served (tests/e2e/conftest.py: frozen_static).
pytestmark = pytest.mark.usefixtures("frozen_static")


def account_ack(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "stream_ack" and frame.get("entity") == "account"


@pytest.mark.parametrize("pin", [False, True], ids=["plain", "pin"])
def test_a_first_download_streams_stays_usable_survives_a_server_restart_and_writes_exactly_the_scope(
    live_server: LiveServer, proxy: FaultProxy, phone: BrowserContext, pin: bool
) -> None:
    add_accounts(live_server, "east1", EXTRA_ACCOUNTS)
    if pin:
        turn_pin_on(live_server)
    for _ in range(3):
        proxy.lose_next_sent(account_ack)
    page = phone.new_page()
    open_app(page)
    fill_sign_in(page, "east1")
    if pin:
        set_pin(page)
    dialog = page.get_by_role("dialog", name="Offline Updates Available")
    dialog.get_by_role("button", name="Update").click()
    expect(dialog).to_be_hidden()

    # Streamed: the server sent a window of three pages before any ack reached it, and stops there.
    wait_for_window = f"""() => {{
        const d = {CTX}.sync.status.download;
        return d !== null && d.entity === 'account' && d.received > 0;
    }}"""
    wait_for(page, wait_for_window, timeout=120_000, what="accounts start downloading")
    sent = [f for f in proxy.received("rows") if f["entity"] == "account"]
    wait_for(
        page,
        f"() => {CTX}.sync.status.download?.received === {sum(len(f['rows']) for f in sent)}",
        timeout=60_000,
        what="the window of account pages committed",
    )
    sent = [f for f in proxy.received("rows") if f["entity"] == "account"]
    assert [f["n"] for f in sent] == [0, 1, 2], "a window of three pages in flight, no more without an ack"
    assert all(f["next"] is not None for f in sent)
    assert len([f for f in proxy.sent("stream_ack") if f["entity"] == "account"]) == 3, "each page acked once"
    committed = sum(len(f["rows"]) for f in sent)

    # The app is usable meanwhile: the accounts list shows what is committed and opens a record.
    page.evaluate("location.hash = '#/list/account'")
    row = page.locator(".grid tbody tr").first
    expect(row).to_be_visible(timeout=30_000)
    row.get_by_role("link").first.click()
    wait_for(page, "() => location.hash.startsWith('#/record/account/')", what="a record opens")
    page.evaluate("location.hash = '#/'")

    # The server really stops mid-download: what was committed stays, nothing more arrives.
    live_server.stop()
    wait_for(page, f"() => {CTX}.sync.status.connection !== 'online'", what="the device sees the server gone")
    assert call(page, f"async () => (await {CTX}.store.counts()).account") == committed
    assert call(page, f"() => {CTX}.sync.status.offlineReady") is False
    live_server.start()
    wait_for(
        page,
        f"() => {CTX}.sync.status.offlineReady === true && {CTX}.sync.status.download === null",
        timeout=180_000,
        what="the download resumes and ends",
    )

    # Resumed after the last page committed, not restarted; each record arrived once.
    streams = [f for f in proxy.sent("stream") if f["entity"] == "account"]
    assert [s["after"] for s in streams] == [None, sent[-1]["next"]], streams
    keys = primary_ids(page)
    ids = [r[keys["account"]] for f in proxy.received("rows") if f["entity"] == "account" for r in stream.decode(f)]
    assert len(ids) == len(set(ids)), "an account was downloaded twice"
    # Exactly the server's scope for this user, every entity, every version.
    assert device_view(page) == server_view(live_server, "east1", keys)
    if pin:  # sealed by the worker: no record is stored readable
        rows = raw_store(page, store_names(page)[0])
        assert rows is not None
        records = rows["records"]
        assert records and all(r.get("server") is None and r.get("view") is None for r in records)
