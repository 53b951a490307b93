"""Every screen of the phone app, looked at: screenshots in the light and the dark theme at phone
widths, and axe-core's accessibility check on each.

    python -m benchmarks.screenshots                    # 360 and 412 px, light and dark, into docs/screenshots
    python -m benchmarks.screenshots --width 360 --no-axe --out /tmp/shots

It starts its own `outpost demo` (a fresh SQLite file in a temporary folder) and drives Debian's
Chromium (`OUTPOST_CHROMIUM`, else /usr/bin/chromium) through Playwright, as a phone: touch, the
given width, 800 px tall. The tour: sign-in; "Offline Updates Available"; the request for
persistent storage after the download; home; the "…" menu; EVERY entity's list; record forms
(contact, lead, opportunity, appointment) with the lookup picker open; a new record with its
validation errors; the business commands' dialogs (Qualify, Close as Won, Convert to Case);
search; Offline Status; User Information; home, a list and Offline Status with the server
stopped; the store evicted by the browser; the app PIN screen. Files are named
`<screen>-<width>-<light|dark>.png`.

axe-core (pinned below) is installed with npm into `.tools/` (git-ignored) on first use, as
./dev installs the TypeScript compiler. Each screen is checked in both themes; a serious or
critical violation is reported (and fails `tests/e2e/test_looked_at.py`, which runs the tour at
one width into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
AXE_PACKAGE = "axe-core@4.14.1"  # pinned: a newer axe may bring new rules; bump it on purpose
AXE_JS = REPO_ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
SCHEMES = ("light", "dark")
HEIGHT = 800
TIMEOUT_MS = 20_000
USER = "east1"


class AxeUnavailable(RuntimeError):
    """axe-core is not installed and npm cannot install it."""


def axe_script() -> str:
    """axe.min.js, installed into .tools/ with npm on first use."""
    if not AXE_JS.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise AxeUnavailable("the accessibility check needs axe-core, installed with npm, and npm is missing")
        done = subprocess.run(
            [npm, "install", "--prefix", str(REPO_ROOT / ".tools"), "--no-audit", "--no-fund", "--silent", AXE_PACKAGE],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not AXE_JS.is_file():
            raise AxeUnavailable(f"npm could not install {AXE_PACKAGE} into .tools:\n{done.stdout}\n{done.stderr}")
    return AXE_JS.read_text(encoding="utf-8")


@dataclass
class Findings:
    """What the tour saw: the screens, the files written and axe's violations per screen."""

    screens: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def serious(self) -> dict[str, list[dict[str, Any]]]:
        """The serious and critical violations, per "screen (scheme)"."""
        out = {}
        for screen, found in self.violations.items():
            bad = [v for v in found if v["impact"] in ("serious", "critical")]
            if bad:
                out[screen] = bad
        return out


@dataclass
class Server:
    """The running app: its address and database, and how to stop and start it again (same port)."""

    url: str
    database_url: str
    stop: Callable[[], None]
    start: Callable[[], None]


class Tour:
    """One phone (one width) going through every screen."""

    def __init__(
        self, page: Any, server: Server, width: int, out: Path | None, axe: str | None, seen: Findings
    ) -> None:
        self.page = page
        self.server = server
        self.width = width
        self.out = out
        self.axe = axe
        self.seen = seen

    # --- looking -------------------------------------------------------------------------------

    def shot(self, name: str) -> None:
        """The screen as it is now, in both themes: a screenshot each, and axe's check each."""
        page = self.page
        if name not in self.seen.screens:
            self.seen.screens.append(name)
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            if self.out is not None:
                path = self.out / f"{name}-{self.width}-{scheme}.png"
                page.screenshot(path=str(path), animations="disabled", caret="hide")
                self.seen.files.append(path)
            if self.axe is not None:
                if not page.evaluate("typeof window.axe === 'object'"):
                    # Through DevTools, not a <script>: the app's CSP refuses inline script.
                    page.evaluate(self.axe + "\n;undefined")
                report = page.evaluate(
                    "axe.run(document, {resultTypes: ['violations']}).then((r) => r.violations.map((v) => "
                    "({id: v.id, impact: v.impact, help: v.help, "
                    "nodes: v.nodes.slice(0, 5).map((n) => "
                    "({target: n.target.join(' '), summary: n.failureSummary}))})))"
                )
                self.seen.violations.setdefault(f"{name} ({scheme}, {self.width} px)", []).extend(report)
        page.emulate_media(color_scheme="light")

    # --- helpers -------------------------------------------------------------------------------

    def until(self, expression: str, timeout_ms: float = TIMEOUT_MS) -> None:
        """Poll a JavaScript condition (no wait_for_function: the app's CSP refuses eval)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                if self.page.evaluate(expression):
                    return
            except Exception as exc:  # a navigation between polls
                if "context" not in str(exc).lower() and "navigation" not in str(exc).lower():
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_ms} ms: {expression}")
            self.page.wait_for_timeout(50)

    def settled(self) -> None:
        """The sync at rest, so its progress does not redraw the screen under the camera."""
        self.until(
            "(() => { const s = window.Outpost?.ctx?.sync?.status;"
            " return !s || s.connection !== 'online' || (s.phase === 'idle' && !s.download); })()"
        )

    def heading(self, name: str | re.Pattern[str]) -> None:
        from playwright.sync_api import expect

        shown = self.page.get_by_role("main").get_by_role("heading", name=name, level=1)
        expect(shown.first).to_be_visible(timeout=TIMEOUT_MS)

    def menu(self, item: str) -> None:
        self.page.get_by_role("button", name="More", exact=True).click()
        self.page.get_by_role("menuitem", name=item).click()

    def go(self, hash_: str) -> None:
        self.page.evaluate("(h) => { location.hash = h; }", hash_)

    def open_list(self, entity: str) -> None:
        from playwright.sync_api import expect

        self.go(f"#/list/{entity}")
        self.settled()
        shown = self.page.locator("[role=region][aria-label*=': '], .list__empty, .empty-state__text").first
        expect(shown).to_be_visible(timeout=TIMEOUT_MS)

    def open_first(self, entity: str) -> str:
        """The list's first record's form; its name."""
        self.open_list(entity)
        link = self.page.locator(".grid tbody tr .grid__first a").first
        name = link.inner_text().strip()
        link.click()
        self.heading(name)
        self.settled()
        return name

    def dialog(self, button: str, title: str | re.Pattern[str], shot: str) -> None:
        """A command's dialog: open it, look, cancel."""
        from playwright.sync_api import expect

        self.page.get_by_role("button", name=button, exact=True).click()
        dialog = self.page.get_by_role("dialog", name=title)
        expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
        self.shot(shot)
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)

    # --- the tour ------------------------------------------------------------------------------

    def run(self) -> None:
        from playwright.sync_api import expect

        from webapp.demo import DEMO_ORG, DEMO_PASSWORD

        page = self.page
        page.goto(self.server.url + "/")
        self.heading("Sign in to Outpost")
        self.shot("sign-in")
        page.get_by_label("Organisation").fill(DEMO_ORG)
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        dialog = page.get_by_role("dialog", name="Offline Updates Available")
        expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
        self.shot("offline-updates-dialog")
        dialog.get_by_role("button", name="Update").click()
        self.until("window.Outpost.ctx.sync?.status.offlineReady === true", 120_000)
        self.settled()
        self.menu("Home")
        self.heading(re.compile(r"\S"))
        ask = page.get_by_role("heading", name="Keep your offline data on this device?")
        if ask.count():
            self.shot("storage-keep-data")
            page.get_by_role("button", name="Not now").click()
        self.shot("home")
        page.get_by_role("button", name="More", exact=True).click()
        expect(page.get_by_role("menu", name="More")).to_be_visible()
        self.shot("more-menu")
        page.keyboard.press("Escape")

        entities = page.evaluate(
            "[...document.querySelectorAll('#view a[href^=\"#/list/\"]')]"
            ".map((a) => decodeURIComponent(a.getAttribute('href').slice(7).split('?')[0]))"
        )
        for entity in dict.fromkeys(entities):
            self.open_list(entity)
            self.shot(f"list-{entity}")

        self.open_list("contact")
        page.get_by_role("checkbox").nth(1).check()
        self.shot("list-contact-selected")
        page.get_by_role("button", name="Clear selection").click()

        self.open_first("contact")
        self.shot("record-contact")
        box = page.get_by_role("combobox", name="Company Name", exact=True)
        box.click()
        box.fill("gran")
        results = page.get_by_role("listbox", name="Company Name results")
        expect(results.get_by_role("option", name=re.compile("Granite")).first).to_be_visible(timeout=TIMEOUT_MS)
        box.press("ArrowDown")
        self.shot("lookup-picker")
        box.press("Escape")
        self.go("#/new/contact")
        self.heading("New Contact")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_label("Last Name")).to_have_attribute("aria-invalid", "true")
        self.shot("record-new-with-errors")

        self.open_first("lead")
        self.shot("record-lead")
        self.dialog("Qualify", re.compile("^Qualify"), "command-qualify")
        self.open_first("opportunity")
        self.shot("record-opportunity")
        self.dialog("Close as Won", re.compile("Won"), "command-close-as-won")
        self.open_first("appointment")
        self.shot("record-appointment")
        if page.get_by_role("button", name="Convert to Case", exact=True).count():
            self.dialog("Convert to Case", re.compile("Case"), "command-convert-to-case")

        self.menu("Search")
        box = page.get_by_role("searchbox", name="Search all records")
        box.fill("thom")
        box.press("Enter")
        expect(page.get_by_role("list", name="Search results")).to_be_visible(timeout=TIMEOUT_MS)
        self.shot("search")
        self.menu("Offline Status")
        self.heading("Offline Status")
        self.settled()
        self.shot("offline-status")
        self.menu("User Information")
        self.heading("User Information")
        self.shot("user-information")

        # The server stopped: the app from the service worker, the data from the device.
        self.until("navigator.serviceWorker.controller !== null")
        self.server.stop()
        try:
            page.reload()
            self.heading(re.compile(r"\S"))
            self.menu("Home")
            self.until("window.Outpost.ctx.sync?.status.connection !== 'online'")
            self.shot("home-offline")
            self.open_list("contact")
            self.shot("list-contact-offline")
            self.menu("Offline Status")
            self.heading("Offline Status")
            self.shot("offline-status-offline")
            # The browser evicted the store (a queued change was lost with it).
            page.evaluate("Xrm.WebApi.offline.createRecord('contact', {firstname: 'Never', lastname: 'Synced'})")
            self.until("window.Outpost.ctx.sync.status.pending === 1")
            self.until(
                "JSON.parse(localStorage.getItem('outpost:held') || '{}')[window.Outpost.ctx.store.name]?.pending === 1"
            )
            page.evaluate(
                """async () => {
                  const name = window.Outpost.ctx.store.name;
                  window.Outpost.ctx.sync.stop();
                  await new Promise((resolve) => { indexedDB.deleteDatabase(name).onsuccess = resolve; });
                }"""
            )
            page.reload()
            evicted = page.get_by_role("heading", name="Data on this device was deleted")
            expect(evicted).to_be_visible(timeout=TIMEOUT_MS)
            self.menu("Home")
            self.shot("storage-evicted")
        finally:
            self.server.start()

        # The app PIN (encryption at rest), required by the organisation: the PIN screen comes first.
        set_pin(self.server, True)
        try:
            page.reload()
            self.heading(re.compile("PIN"))
            self.shot("pin")
        finally:
            set_pin(self.server, False)


def set_pin(server: Server, on: bool) -> None:
    """`outpost set-offline --pin on|off` against the server's database."""
    done = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "set-offline", "--org", "contoso", "--pin", "on" if on else "off"],
        env={**os.environ, "DATABASE_URL": server.database_url},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"set-offline --pin failed: {done.stdout}{done.stderr}")


def tour(
    browser: Any,
    device: dict[str, Any],
    server: Server,
    widths: list[int],
    out: Path | None,
    axe: bool = True,
) -> Findings:
    """Run the tour at each width in a fresh phone context; screenshots into `out` (None: none)."""
    seen = Findings()
    script = axe_script() if axe else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for width in widths:
        phone = {k: v for k, v in device.items() if k not in ("default_browser_type", "viewport", "screen")}
        context = browser.new_context(
            **phone, viewport={"width": width, "height": HEIGHT}, screen={"width": width, "height": HEIGHT}
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            Tour(context.new_page(), server, width, out, script, seen).run()
        finally:
            context.close()
    return seen


def index(out: Path, seen: Findings, widths: list[int]) -> None:
    """docs/screenshots/README.md: every screen, a link per width and theme."""
    columns = [(w, scheme) for w in widths for scheme in SCHEMES]
    checked = (
        " axe-core found no serious or critical violation on any of them."
        if seen.violations and not seen.serious()
        else ""
    )
    lines = [
        "# Every screen, light and dark",
        "",
        "Made by `python -m benchmarks.screenshots` (docs/testing.md): Debian's Chromium as a phone",
        f"with touch, 800 px tall.{checked}",
        "",
        "| screen | " + " | ".join(f"{w} px {scheme}" for w, scheme in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for screen in seen.screens:
        cells = [f"[{scheme}]({screen}-{w}-{scheme}.png)" for w, scheme in columns]
        lines.append(f"| {screen} | " + " | ".join(cells) + " |")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--width", type=int, action="append", help="viewport width in px (repeatable; default 360 and 412)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio of the screenshots (default 1)")
    parser.add_argument("--no-axe", action="store_true", help="screenshots only")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from benchmarks.live import LiveServer

    with tempfile.TemporaryDirectory(prefix="outpost-shots-") as folder, sync_playwright() as pw:
        live = LiveServer(Path(folder)).start()
        server = Server(live.base, live.database_url, live.stop, lambda: live.start() and None)
        browser = pw.chromium.launch(
            executable_path=os.environ.get("OUTPOST_CHROMIUM") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )
        try:
            device = {**pw.devices["Pixel 7"], "device_scale_factor": args.scale}
            for old in args.out.glob("*.png"):
                old.unlink()
            seen = tour(browser, device, server, args.width or [360, 412], args.out, axe=not args.no_axe)
        finally:
            browser.close()
            live.stop()
    index(args.out, seen, args.width or [360, 412])
    print(f"{len(seen.screens)} screens, {len(seen.files)} files in {args.out}")
    bad = seen.serious()
    for screen, found in seen.violations.items():
        for v in found:
            print(f"  axe {v['impact']}: {screen}: {v['id']} — {v['help']}")
    if bad:
        print(json.dumps(bad, indent=1, ensure_ascii=False))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
