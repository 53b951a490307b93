"""Every screen, looked at (#15 item 10): the screenshot tour (benchmarks/screenshots.py) runs at
one phone width into a temporary folder, and axe-core finds no serious or critical violation on
any screen, in the light or the dark theme.

`python -m benchmarks.screenshots` runs the same tour at 360 and 412 px into docs/screenshots.
axe-core is installed with npm into .tools/ on first use; without npm the test is skipped with
the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Playwright

from benchmarks import screenshots

if TYPE_CHECKING:
    from tests.e2e.conftest import LiveServer

# The screens the tour must reach (every entity's list comes on top of these).
SCREENS = {
    "sign-in",
    "offline-updates-dialog",
    "storage-keep-data",
    "home",
    "more-menu",
    "list-contact",
    "list-account",
    "list-lead",
    "list-opportunity",
    "list-activitypointer",
    "list-contact-selected",
    "record-contact",
    "lookup-picker",
    "record-new-with-errors",
    "record-lead",
    "command-qualify",
    "record-opportunity",
    "command-close-as-won",
    "record-appointment",
    "search",
    "offline-status",
    "user-information",
    "home-offline",
    "list-contact-offline",
    "offline-status-offline",
    "storage-evicted",
    "pin",
}


def test_every_screen_light_and_dark_has_no_serious_or_critical_accessibility_violation(
    live_server: LiveServer, chromium: Browser, pw: Playwright, tmp_path: Path
) -> None:
    try:
        screenshots.axe_script()
    except screenshots.AxeUnavailable as why:
        pytest.skip(str(why))
    server = screenshots.Server(live_server.url, live_server.database_url, live_server.stop, live_server.start)
    seen = screenshots.tour(chromium, dict(pw.devices["Pixel 7"]), server, [360], tmp_path)

    missing = SCREENS - set(seen.screens)
    assert not missing, f"the tour did not reach {sorted(missing)}"
    lists = [s for s in seen.screens if s.startswith("list-") and s.count("-") == 1]
    assert len(lists) >= 15, lists  # every entity on the home screen
    for screen in seen.screens:
        for scheme in screenshots.SCHEMES:
            shot = tmp_path / f"{screen}-360-{scheme}.png"
            assert shot.is_file() and shot.stat().st_size > 2_000, shot
    assert len(seen.violations) == 2 * len(seen.screens)  # axe ran on each, in both themes
    bad = seen.serious()
    assert not bad, json.dumps(bad, indent=1, ensure_ascii=False)
