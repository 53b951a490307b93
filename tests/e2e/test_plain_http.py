"""The app opened over plain HTTP at a network address (`outpost demo --host`, a phone on the
same network): not a secure context, so no service worker and no WebCrypto — but signing in,
downloading, reading and saving work online, and the app says why offline does not.

Chromium is started with a host-resolver rule so `outpost.test` reaches the live server on
127.0.0.1: the page's origin is then `http://outpost.test:<port>`, which browsers treat as
insecure exactly like `http://192.168.1.20:8000`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, TIMEOUT_MS, LiveServer
from tests.e2e.sync_helpers import CTX, accept_updates, call, fill_sign_in, wait_until

HOST = "outpost.test"
INSECURE = "This address is not secure (plain HTTP), so Outpost works online only here"


@pytest.fixture
def lan_browser(pw: Playwright) -> Iterator[Browser]:
    browser = pw.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"], headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def lan_page(live_server: LiveServer, lan_browser: Browser, pw: Playwright) -> Iterator[Page]:
    device = {k: v for k, v in pw.devices[PHONE].items() if k != "default_browser_type"}
    context = lan_browser.new_context(**device, base_url=f"http://{HOST}:{live_server.port}")
    context.set_default_timeout(TIMEOUT_MS)
    violations: list[str] = []
    context.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield context.new_page()
    context.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"


def test_over_plain_http_the_app_works_online_and_says_why_offline_does_not(
    live_server: LiveServer, lan_page: Page
) -> None:
    page = lan_page
    page.goto("/")
    assert page.evaluate("isSecureContext") is False
    assert page.evaluate("'serviceWorker' in navigator") is False
    expect(page.get_by_text(INSECURE)).to_be_visible()

    fill_sign_in(page, "east1")
    accept_updates(page)
    wait_until(page, f"{CTX}.sync.status.connection === 'online'")
    # A record made here gets an id minted on the device (crypto.randomUUID is missing here).
    new_id = call(page, f"() => {CTX}.data.create('account', {{name: 'Made over plain HTTP'}})")
    wait_until(page, f"{CTX}.sync.status.pending === 0")
    assert live_server.client("east1").get(f"/api/data/accounts({new_id})?$select=name").json["name"] == (
        "Made over plain HTTP"
    )
    page.get_by_role("button", name="More").click()
    page.get_by_role("menuitem", name="Offline Status").click()
    expect(page.get_by_text(INSECURE)).to_be_visible()
