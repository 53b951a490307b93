"""Every engine a phone uses: the same journeys in Chromium, Firefox ESR and WebKit (WebKitGTK).

Fixtures
    live_server   The demo server as a real process (tests/e2e/conftest.py's LiveServer): `.stop()`
                  and `.start()` on the same port and database.
    engine        A `Driver` (tests/engines/drivers.py) on a fresh browser profile with a phone-sized
                  viewport, pointed at the live server; parametrized over the engines:
                    chromium  Debian's Chromium through Playwright (DevTools protocol), Pixel 7 emulation
                    firefox   Debian's Firefox ESR through Playwright 1.64.1 (WebDriver BiDi,
                              `channel="moz-firefox"`), a 412 x 915 viewport
                    webkit    WebKitGTK's MiniBrowser through Selenium and WebKitWebDriver (WebDriver
                              classic) on an X display (Xvfb is started when DISPLAY is unset), 412 x 915

Choosing engines: `./dev test tests/engines -k firefox` (the engine is in each test's id), or
OUTPOST_ENGINES=firefox,webkit. An engine whose browser is not installed is skipped with the
reason (`./dev test` installs them with apt-get as root); under CI (CI=true) a missing engine
fails instead, so CI always runs all three. Binaries: OUTPOST_CHROMIUM, OUTPOST_FIREFOX,
OUTPOST_WEBKIT_DRIVER, OUTPOST_MINIBROWSER.

Every test fails on a Content-Security-Policy violation recorded in its pages (`securitypolicyviolation`
events: from the first script with Playwright, from each load's end with WebDriver, which has no
preload scripts in WebKitGTK).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, LiveServer, start_live_server, under_ci
from tests.engines.drivers import CSP_LISTENER, TIMEOUT_MS, Driver, PlaywrightDriver, WebDriverDriver

ENGINES = ("chromium", "firefox", "webkit")
FIREFOX = os.environ.get("OUTPOST_FIREFOX") or "/usr/bin/firefox-esr"
WEBKIT_DRIVER = os.environ.get("OUTPOST_WEBKIT_DRIVER") or "/usr/bin/WebKitWebDriver"
MINIBROWSER = os.environ.get("OUTPOST_MINIBROWSER") or "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
VIEWPORT = {"width": 412, "height": 915}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
INSTALL = "./dev test installs it with apt-get when run as root"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def missing(engine: str) -> str | None:
    """Why an engine cannot run here (None when it can)."""
    if engine == "chromium" and not _executable(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; {INSTALL})"
    if engine == "firefox" and not _executable(FIREFOX):
        return f"no Firefox ESR at {FIREFOX} (apt-get install firefox-esr; {INSTALL})"
    if engine == "webkit":
        if not (_executable(WEBKIT_DRIVER) and _executable(MINIBROWSER)):
            return (
                f"no WebKitGTK driver at {WEBKIT_DRIVER} or MiniBrowser at {MINIBROWSER} "
                f"(apt-get install webkit2gtk-driver; {INSTALL})"
            )
        if not os.environ.get("DISPLAY") and not shutil.which("Xvfb"):
            return f"WebKitGTK needs an X display: no DISPLAY and no Xvfb (apt-get install xvfb; {INSTALL})"
        try:
            import selenium  # noqa: F401
        except ImportError:
            return "Selenium is not installed (pip install -e '.[test]')"
    return None


def chosen_engines() -> list[str]:
    """The engines to run: OUTPOST_ENGINES (comma-separated) or all."""
    wanted = [e.strip() for e in os.environ.get("OUTPOST_ENGINES", "").split(",") if e.strip()]
    unknown = sorted(set(wanted) - set(ENGINES))
    if unknown:
        raise pytest.UsageError(f"OUTPOST_ENGINES: unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    return wanted or list(ENGINES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `engine` over the chosen engines; one the machine lacks is skipped with why (failed under CI)."""
    if "engine" not in metafunc.fixturenames:
        return
    params = []
    for name in chosen_engines():
        why = missing(name)
        marks = [pytest.mark.engines]
        if why and under_ci():
            why = None  # under CI every engine must run: let the fixture fail loudly
        if why:
            marks.append(pytest.mark.skip(reason=f"{name}: {why}"))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("engine_name", params)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, so the `engine` fixture can screenshot a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory, demo_database: Path) -> Iterator[LiveServer]:
    """The demo server as a subprocess on its own fresh copy of the demo database; stopped after
    the test."""
    server = start_live_server(tmp_path_factory.mktemp("live_server"), demo_database)
    yield server
    server.stop()


# --- browsers ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """An X display for WebKitGTK (which has no headless mode): DISPLAY, or an Xvfb of our own."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        xvfb.kill()
        pytest.fail("Xvfb did not start (no display number)")
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        try:
            xvfb.wait(10)
        except subprocess.TimeoutExpired:
            xvfb.kill()


@pytest.fixture(scope="session")
def playwright_browsers(pw: Any) -> Iterator[dict[str, Any]]:
    """Chromium and Firefox, each launched on first use and kept for the session."""
    browsers: dict[str, Any] = {}
    yield browsers
    for browser in browsers.values():
        with contextlib.suppress(Exception):
            browser.close()


def _playwright_browser(pw: Any, browsers: dict[str, Any], name: str) -> Any:
    if name not in browsers:
        if name == "chromium":
            browsers[name] = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        else:
            browsers[name] = pw.firefox.launch(channel="moz-firefox", executable_path=FIREFOX, headless=True)
    return browsers[name]


@pytest.fixture
def engine(
    engine_name: str, live_server: LiveServer, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Driver]:
    """A fresh phone-sized browser profile in one engine, on the live server (see the module docstring)."""
    why = missing(engine_name)
    if why:
        pytest.fail(f"{engine_name} must run under CI but cannot: {why}")
    if engine_name == "webkit":
        driver: Driver = _webkit(live_server, request.getfixturevalue("x_display"), tmp_path)
        session = driver.driver  # type: ignore[attr-defined]

        def closer() -> None:
            try:
                session.quit()
            finally:
                session.stop_service()
    else:
        pw = request.getfixturevalue("pw")
        browser = _playwright_browser(pw, request.getfixturevalue("playwright_browsers"), engine_name)
        if engine_name == "chromium":
            device = {k: v for k, v in pw.devices[PHONE].items() if k != "default_browser_type"}
        else:
            device = {"viewport": VIEWPORT}  # Playwright's Firefox has no touch or mobile emulation
        context = browser.new_context(**device, base_url=live_server.url)
        context.add_init_script(script=f"({CSP_LISTENER})()")  # before the app's first script
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        driver = PlaywrightDriver(engine_name, browser.version, context)
        closer = context.close
    tabs: list[Driver] = [driver]
    original_new_tab = driver.new_tab

    def new_tab() -> Driver:
        tab = original_new_tab()
        tabs.append(tab)
        return tab

    driver.new_tab = new_tab  # type: ignore[method-assign]
    try:
        yield driver
        violations = [v for tab in tabs for v in tab.csp_violations()]
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for i, tab in enumerate(tabs):
                with contextlib.suppress(Exception):
                    tab.screenshot(str(ARTIFACTS / f"engine-{request.node.name}-{i}.png"))
        closer()
    assert not violations, f"{engine_name}: the page broke its Content-Security-Policy: {violations}"


def _webkit(server: LiveServer, display: str, tmp_path: Path) -> WebDriverDriver:
    from selenium import webdriver
    from selenium.webdriver.remote.client_config import ClientConfig
    from selenium.webdriver.remote.remote_connection import RemoteConnection
    from selenium.webdriver.webkitgtk.service import Service

    options = webdriver.WebKitGTKOptions()
    options.binary_location = MINIBROWSER
    options.add_argument("--automation")
    log = tmp_path / "webkitwebdriver.log"
    service = Service(executable_path=WEBKIT_DRIVER, log_output=str(log), env={**os.environ, "DISPLAY": display})
    service.start()
    # webdriver.WebKitGTK(...) passes the address the way Selenium 4.5x deprecates (a warning,
    # an error here): a Remote session on the service, with a ClientConfig, is the same thing.
    try:
        connection = RemoteConnection(client_config=ClientConfig(remote_server_addr=service.service_url))
        session = webdriver.Remote(command_executor=connection, options=options)
    except Exception:
        service.stop()
        raise
    session.stop_service = service.stop  # type: ignore[attr-defined]
    session.set_page_load_timeout(TIMEOUT_MS / 1000 * 2)
    with contextlib.suppress(Exception):  # no window manager under Xvfb: best effort
        session.set_window_size(VIEWPORT["width"], VIEWPORT["height"])
    version = str(session.capabilities.get("browserVersion", "?"))
    return WebDriverDriver("webkit", version, session, server.url)
