"""The app shell in a real Chromium: service worker, offline start, installability, updates, layout.

Tests that stop or restart the server get their own (`live_server`); the others share one
server per module (`shared_server`, benchmarks/live.py), each in a fresh browser context.
"Offline" is the server process really stopped (and, separately, Playwright's offline mode).
A new version is published the way a deployment would: the server restarts on the same port
serving a static folder with one changed file (`OUTPOST_STATIC_FOLDER`, a copy under the test's
temporary folder). Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from benchmarks.live import LiveServer as SharedServer
from tests.e2e.waits import wait_until

if TYPE_CHECKING:  # the fixtures' classes (tests/e2e is not a package: conftest is not imported here)
    from tests.e2e.conftest import LiveServer

REPO = Path(__file__).resolve().parent.parent.parent
STATIC = REPO / "webapp" / "static"
ARTIFACTS = REPO / "test-artifacts"
UPDATE_TEXT = "A new version of Outpost is available"
OFFLINE_START_LIMIT = 5.0  # seconds from reload to a visible shell with no server (~0.2-0.9 s measured)
SMALL_PHONE = {"width": 360, "height": 800}
TOUCH = 44


# --- helpers ----------------------------------------------------------------------------------


def worker_constants(base_url: str) -> dict[str, Any]:
    """VERSION, CACHE_PREFIX and PRECACHE of the /sw.js the server serves now."""
    with urllib.request.urlopen(f"{base_url}/sw.js", timeout=10) as resp:
        body = resp.read().decode()
    found = {}
    for name in ("VERSION", "CACHE_PREFIX", "PRECACHE"):
        match = re.search(rf"^const {name} = (.+);$", body, re.MULTILINE)
        assert match, f"/sw.js has no `const {name} = …;` line"
        found[name] = json.loads(match.group(1))
    return found


def open_controlled(page: Page, path: str = "/") -> None:
    """Open the app and wait until its service worker controls the page (TESTING.md)."""
    page.goto(path)
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    wait_until(page, "() => navigator.serviceWorker.controller !== null")


def cache_names(page: Page) -> list[str]:
    """The page's Cache Storage names."""
    return page.evaluate("() => caches.keys()")  # type: ignore[no-any-return]


def cached_paths(page: Page, cache: str) -> set[str]:
    """The URL paths stored in one cache."""
    paths = page.evaluate(
        "async (name) => (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname)", cache
    )
    return set(paths)


def expect_shell(page: Page) -> None:
    """The top bar with the app's name and the More button are on screen."""
    expect(page.get_by_role("banner").get_by_role("heading", name="Outpost")).to_be_visible()
    expect(page.get_by_role("button", name="More", exact=True)).to_be_visible()


def relative_luminance(css_colour: str) -> float:
    """WCAG relative luminance of an `rgb(r, g, b)` computed colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", css_colour)[:3])

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def changed_static_copy(dest: Path, change: Callable[[Path], None]) -> Path:
    """A copy of webapp/static with `change` applied to it."""
    shutil.copytree(STATIC, dest, ignore=shutil.ignore_patterns("__pycache__"))
    change(dest)
    return dest


def restart_serving(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, static: Path) -> None:
    """Stop the server and start it again on the same port and database, serving `static`."""
    live_server.stop()
    monkeypatch.setenv("OUTPOST_STATIC_FOLDER", str(static))
    live_server.start()


# A sample of every documented class, to check the design's touch targets and look at it.
GALLERY = """
<div class="stack">
  <h2 class="section-title">Accounts</h2>
  <label class="search"><span class="visually-hidden">Search accounts</span>
    <input class="search__input" type="search" placeholder="Search accounts"></label>
  <div class="tabs" role="tablist">
    <button class="tab" role="tab" aria-selected="true">Mine</button>
    <button class="tab" role="tab" aria-selected="false">Team</button>
    <button class="tab" role="tab" aria-selected="false">All</button>
  </div>
  <ul class="list">
    <li><a class="list__row" href="#a1">
      <span class="list__text"><span class="list__primary">Adventure Works</span>
        <span class="list__secondary">Seattle · Tyler Ross</span></span>
      <span class="badge badge--available">Available</span></a></li>
    <li><a class="list__row" href="#a2">
      <span class="list__text"><span class="list__primary">Fabrikam, Inc.</span>
        <span class="list__secondary">Lyon · 3 open activities</span></span>
      <span class="badge badge--error">Not Available</span></a></li>
    <li><button class="list__row" type="button">
      <span class="list__text"><span class="list__primary">Tasks</span>
        <span class="list__secondary">Not enabled for offline</span></span>
      <span class="badge badge--disabled">Not enabled</span></button></li>
  </ul>
  <div class="card stack stack--tight">
    <div class="progress-field"><span class="progress-field__label">Downloading</span>
      <span class="progress-field__value">1,240 of 3,000</span>
      <progress class="progress" max="100" value="41"></progress></div>
  </div>
  <form class="form card">
    <div class="field"><label class="field__label" for="g-name">Account name</label>
      <input class="input" id="g-name" value="Adventure Works"></div>
    <div class="field field--invalid"><label class="field__label" for="g-mail">Email</label>
      <input class="input" id="g-mail" value="not-an-email" aria-invalid="true" aria-describedby="g-err">
      <p class="field__error" id="g-err">Enter an email address such as name@example.com.</p></div>
    <div class="field"><label class="field__label" for="g-type">Relationship</label>
      <select class="input" id="g-type"><option>Customer</option><option>Partner</option></select>
      <p class="field__hint">Used by the sales views.</p></div>
    <label class="checkbox"><input type="checkbox" checked> Follow this account</label>
    <div class="form__actions">
      <button class="button button--primary" type="button">Save</button>
      <button class="button button--secondary" type="button">Cancel</button>
      <button class="button button--danger" type="button">Delete</button>
    </div>
  </form>
</div>
"""
SAMPLE_BANNER = """<div class="banner banner--warning"><p class="banner__text">Sync paused: no network</p>
<div class="banner__actions"><button class="button button--secondary" type="button">Retry</button></div></div>"""


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    """One demo server for the tests that neither stop nor change it."""
    server = SharedServer(tmp_path_factory.mktemp("shell_server")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_phone(shared_server: SharedServer, chromium: Browser, pw: Playwright) -> Iterator[BrowserContext]:
    """A Pixel 7 with empty storage (no service worker yet) on the shared server."""
    device = {k: v for k, v in pw.devices["Pixel 7"].items() if k != "default_browser_type"}
    context = chromium.new_context(**device, base_url=shared_server.base)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def small_phone(shared_server: SharedServer, chromium: Browser) -> Iterator[Callable[..., Page]]:
    """Pages on a 360 x 800 touch phone in a chosen colour scheme, showing the shell alone.

    Service workers are blocked and app.js is refused, so what is measured and photographed is
    the shell and the design, not the app's screens — and a missing app.js must not break it.
    """
    contexts: list[BrowserContext] = []

    def open_page(color_scheme: str = "light") -> Page:
        context = chromium.new_context(
            viewport=SMALL_PHONE,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            color_scheme=color_scheme,  # type: ignore[arg-type]
            base_url=shared_server.base,
            service_workers="block",
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        context.route("**/static/js/app.js*", lambda route: route.fulfill(status=404, body="not found"))
        page = context.new_page()
        page.goto("/")
        expect_shell(page)
        wait_until(page, "() => document.fonts.status === 'loaded'")
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- service worker ---------------------------------------------------------------------------


def test_the_service_worker_installs_controls_the_page_and_precaches_every_file(
    shared_server: SharedServer, fresh_phone: BrowserContext
) -> None:
    consts = worker_constants(shared_server.base)
    phone_page = fresh_phone.new_page()
    open_controlled(phone_page)
    scope = phone_page.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => r.scope)")
    assert scope == f"{shared_server.base}/"
    cache = consts["CACHE_PREFIX"] + consts["VERSION"]
    assert cache_names(phone_page) == [cache]
    assert cached_paths(phone_page, cache) == {entry["url"] for entry in consts["PRECACHE"]}


def test_with_the_server_stopped_a_reload_shows_the_app_shell(live_server: LiveServer, phone_page: Page) -> None:
    open_controlled(phone_page)
    live_server.stop()
    started = time.monotonic()
    phone_page.reload()
    expect_shell(phone_page)
    took = time.monotonic() - started
    assert took < OFFLINE_START_LIMIT, f"the shell took {took:.2f} s to show with the server stopped"
    # The style sheet came from the cache too: the top bar has its colour, not the default.
    colour = phone_page.evaluate("() => getComputedStyle(document.querySelector('.topbar')).backgroundColor")
    assert colour == "rgb(36, 87, 214)"


def test_in_playwright_offline_mode_a_reload_shows_the_app_shell(
    shared_server: SharedServer, fresh_phone: BrowserContext
) -> None:
    phone_page = fresh_phone.new_page()
    open_controlled(phone_page)
    fresh_phone.set_offline(True)
    try:
        assert phone_page.evaluate("() => navigator.onLine") is False
        phone_page.reload()
        expect_shell(phone_page)
        assert phone_page.evaluate("() => navigator.serviceWorker.controller !== null")
    finally:
        fresh_phone.set_offline(False)


def test_without_app_js_the_worker_still_installs_and_the_shell_opens_offline(
    live_server: LiveServer, phone_page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = changed_static_copy(tmp_path / "static", lambda d: (d / "js" / "app.js").unlink())
    restart_serving(live_server, monkeypatch, static)
    assert "/static/js/app.js" not in {e["url"] for e in worker_constants(live_server.url)["PRECACHE"]}
    open_controlled(phone_page)
    live_server.stop()
    phone_page.reload()
    expect_shell(phone_page)


# --- installability ---------------------------------------------------------------------------


def test_chromium_finds_the_app_installable_and_its_icons_load(
    shared_server: SharedServer, fresh_phone: BrowserContext
) -> None:
    phone_page = fresh_phone.new_page()
    open_controlled(phone_page)
    cdp = fresh_phone.new_cdp_session(phone_page)
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    real = [e for e in errors if e["errorId"] != "in-incognito"]  # always so in a test's throw-away context
    assert real == []
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == f"{shared_server.base}/manifest.webmanifest"
    assert not manifest["errors"]
    icons = json.loads(manifest["data"])["icons"]
    sizes = phone_page.evaluate(
        """async (icons) => Promise.all(icons.map(async (icon) => {
             const img = new Image();
             img.src = icon.src;
             await img.decode();
             return `${img.naturalWidth}x${img.naturalHeight}`;
           }))""",
        icons,
    )
    assert sizes == [icon["sizes"] for icon in icons]
    assert {icon["purpose"] for icon in icons} == {"any", "maskable"}


# --- updates ----------------------------------------------------------------------------------


def test_a_new_version_waits_until_the_user_presses_reload(
    live_server: LiveServer, phone_page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = worker_constants(live_server.url)
    open_controlled(phone_page)
    expect(phone_page.get_by_text(UPDATE_TEXT)).to_have_count(0)

    def change_css(folder: Path) -> None:
        with (folder / "css" / "app.css").open("a") as fh:
            fh.write("\n/* the next version */\n")

    restart_serving(live_server, monkeypatch, changed_static_copy(tmp_path / "static", change_css))
    new = worker_constants(live_server.url)
    assert new["VERSION"] != old["VERSION"]
    old_cache, new_cache = (c["CACHE_PREFIX"] + c["VERSION"] for c in (old, new))

    phone_page.reload()
    expect(phone_page.get_by_text(UPDATE_TEXT)).to_be_visible()
    reload_button = phone_page.get_by_role("button", name="Reload", exact=True)
    expect(reload_button).to_be_visible()
    box = reload_button.bounding_box()
    assert box and box["width"] >= TOUCH and box["height"] >= TOUCH

    # It waits: another load still runs the old version, and offers the new one again.
    phone_page.reload()
    expect(phone_page.get_by_text(UPDATE_TEXT)).to_be_visible()
    assert phone_page.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => r.waiting !== null)")
    assert old_cache in cache_names(phone_page)

    with phone_page.expect_navigation(wait_until="load"):
        reload_button.click()
    wait_until(phone_page, "() => navigator.serviceWorker.controller !== null")
    expect_shell(phone_page)
    expect(phone_page.get_by_text(UPDATE_TEXT)).to_have_count(0)
    assert phone_page.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => r.waiting === null)")
    wait_until(phone_page, f"() => caches.keys().then((k) => k.length === 1 && k[0] === {new_cache!r})")
    # The new worker serves the new file from its cache.
    css = phone_page.evaluate("() => fetch('/static/css/app.css').then((r) => r.text())")
    assert css.endswith("/* the next version */\n")


# --- layout -----------------------------------------------------------------------------------


CONTROLS = "button, a[href], input, select, textarea, [role=button], [role=tab], label.checkbox"


def small_controls(page: Page) -> list[str]:
    """Visible controls smaller than 44 x 44 px (text inputs count by height: they span the width)."""
    return page.evaluate(
        """([selector, touch]) => [...document.querySelectorAll(selector)]
             .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
             .filter((el) => !el.closest('label.checkbox') || el.matches('label.checkbox'))
             .map((el) => [el, el.getBoundingClientRect()])
             .filter(([, r]) => r.height < touch || r.width < touch)
             .map(([el, r]) => `${el.outerHTML.slice(0, 80)} ${r.width.toFixed(0)}x${r.height.toFixed(0)}`)""",
        [CONTROLS, TOUCH],
    )


def test_at_360_by_800_every_control_is_a_44px_touch_target(small_phone: Callable[..., Page]) -> None:
    page = small_phone("light")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= SMALL_PHONE["width"], "no sideways scroll"
    assert small_controls(page) == []
    page.evaluate(
        "([gallery, banner]) => { document.getElementById('view').innerHTML = gallery; "
        "document.getElementById('banners').innerHTML = banner; }",
        [GALLERY, SAMPLE_BANNER],
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= SMALL_PHONE["width"], "no sideways scroll"
    assert small_controls(page) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_theme_follows_the_system_colour_scheme(small_phone: Callable[..., Page], scheme: str) -> None:
    page = small_phone(scheme)
    background = relative_luminance(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))
    text = relative_luminance(page.evaluate("() => getComputedStyle(document.body).color"))
    if scheme == "dark":
        assert background < 0.05 < 0.6 < text
    else:
        assert text < 0.05 < 0.85 < background
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"shell-{scheme}.png"))
    page.evaluate(
        "([gallery, banner]) => { document.getElementById('view').innerHTML = gallery; "
        "document.getElementById('banners').innerHTML = banner; }",
        [GALLERY, SAMPLE_BANNER],
    )
    page.screenshot(path=str(ARTIFACTS / f"components-{scheme}.png"), full_page=True)
    page.evaluate(
        """() => {
             const d = document.createElement('dialog');
             d.className = 'dialog';
             d.innerHTML = '<h2 class="dialog__title">Offline Updates Available</h2>'
               + '<p class="dialog__body">Updates to your offline data are ready to download.</p>'
               + '<div class="dialog__actions"><button class="button button--secondary">Skip for now</button>'
               + '<button class="button button--primary">Update</button></div>';
             document.getElementById('dialogs').append(d);
             d.showModal();
           }"""
    )
    expect(page.get_by_role("dialog")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"dialog-{scheme}.png"))
