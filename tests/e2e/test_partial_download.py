"""During the first download the app is usable for the entities already downloaded."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

from tests.e2e.waits import wait_until
from webapp.demo import DEMO_PASSWORD

QUERY = """async (entity) => {
  const column = entity === 'account' ? 'name' : 'fullname';
  try { return (await window.Outpost.ctx.data.query(entity, '$select=' + column, 5)).entities.length; }
  catch (e) { return 'failed: ' + e.message; }
}"""


def test_entities_already_downloaded_are_read_from_the_device_before_the_rest(
    live_server: Any, phone_page: Page
) -> None:
    page = phone_page
    page.goto("/")
    page.get_by_label("Organisation").fill("contoso")
    page.get_by_label("Username").fill("east1")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Offline Updates Available").get_by_role("button", name="Update").click()
    wait_until(page, "() => window.Outpost.ctx.sync?.status.offlineReady === true")
    # Put the device back where a first download stands halfway: accounts done, contacts not.
    page.evaluate(
        """async () => {
          const s = window.Outpost.ctx.store;
          const mark = await s.getMeta('download:contact', null);
          await s.setMeta('download:contact', { ...mark, done: false });
          await s.setMeta('downloaded_version', null);
          await window.Outpost.ctx.sync.refreshCounts();
        }"""
    )
    assert page.evaluate("() => window.Outpost.ctx.sync.status.offlineReady") is False
    live_server.stop()  # no server: only what is on the device can answer
    assert page.evaluate(QUERY, "account") == 5
    assert str(page.evaluate(QUERY, "contact")).startswith("failed:")
