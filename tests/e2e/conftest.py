"""Browser tests: the real server as a subprocess, Debian's Chromium, an emulated phone.

Every test in tests/e2e is marked `e2e` (see `pytest_collection_modifyitems`) and is skipped,
with the reason, when the browser is missing (`./dev test` installs it with apt-get); under CI
(`CI=true`) a missing browser fails every browser test instead, so they cannot vanish silently.

Fixtures
    live_server     The app as a REAL process: `python -m webapp.cli demo --port P` on a fresh
                    SQLite file (the deterministic demo organisation `contoso`, users admin,
                    manager, east1, east2, west1, west2, support, password `DEMO_PASSWORD`).
                    `.url`, `.port`, `.database_url`; `.stop()` ends the process and `.start()`
                    starts it again on the SAME port and database (the honest "offline":
                    TESTING.md); `.client("east1")` is a signed-in HTTP client; `.log_tail()`.
    pw              (tests/conftest.py) Playwright for Python, one per session: tests/engines uses it too,
                    and two sync Playwright instances cannot run in one process.
    chromium        The session's Browser: `OUTPOST_CHROMIUM` or /usr/bin/chromium, launched
                    by Playwright for Python with the flags in `CHROMIUM_ARGS`.
    phone_context   A fresh BrowserContext emulating a Pixel 7 (412 px wide, touch), so empty
                    storage: no IndexedDB, no service worker, no cookies. Its `base_url` is the
                    live server's, so `page.goto("/")` opens the app.
    phone_page      A page in `phone_context`.

Conventions
    - Request `live_server` BEFORE the page fixtures in a test's signature: fixtures are torn
      down in reverse order, so pages and their sockets close before the server stops
      (TESTING.md). `phone_context` depends on `live_server`, which enforces it as well.
    - Wait on conditions with time limits (`expect(...)`, `wait_until(page, ...)` from
      tests/e2e/waits.py, `LiveServer.start`), never sleep. Every Playwright wait here defaults
      to `TIMEOUT_MS`, but `page.evaluate` has NO time limit: a promise that never settles (e.g.
      `navigator.serviceWorker.ready` on a page whose worker failed) hangs the run. Never
      `page.wait_for_function`: it evaluates its predicate with `eval`, which the app's
      Content-Security-Policy refuses.
    - Every test fails on a Content-Security-Policy violation reported in a page of
      `phone_context`.
    - pytest-playwright may be installed on a machine, but `./dev test` does not install it:
      its `page`, `context` and `browser` fixtures are replaced here by guards that fail with a
      pointer to the fixtures above, so a test behaves the same everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from tests.faultproxy import FaultProxy
from webapp.demo import DEMO_ORG, DEMO_PASSWORD

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
CHROMIUM = os.environ.get("OUTPOST_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = "Pixel 7"
TIMEOUT_MS = 15_000  # every Playwright wait and navigation in these tests
# `expect` too (its own default is 5 s): a loaded 2-core CI machine was seen to take longer to
# show a dialog or open a record, and a wait that ends when the condition holds costs nothing more.
expect.set_options(timeout=TIMEOUT_MS)
STARTUP_TIMEOUT = 60.0  # seconds for the server process to answer /healthz
STOP_TIMEOUT = 10.0  # seconds for it to exit after SIGTERM before it is killed
POLL_INTERVAL = 0.05  # seconds between /healthz probes (spent waiting on the process itself)


def under_ci() -> bool:
    """Whether this run is CI's (`CI` set to anything but empty, 0 or false): no browser may be missing."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium is there."""
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return None
    return (
        f"no Chromium at {CHROMIUM}: run `apt-get install -y chromium` (./dev test does it as root) "
        "or point OUTPOST_CHROMIUM at a Chromium executable"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e `e2e`; without a browser skip them with the reason (fail under CI)."""
    why = chromium_missing()
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)
            if why is not None and not under_ci():
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under CI a browser test without its browser fails at once (before any fixture starts a server)."""
    if item.path.is_relative_to(E2E_DIR) and under_ci():
        why = chromium_missing()
        if why is not None:
            pytest.fail(f"CI=true and the browser tests cannot run: {why}", pytrace=False)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class ApiResponse:
    """An HTTP answer: status, headers and the JSON body (None when the body is not JSON)."""

    status: int
    headers: dict[str, str]
    json: Any


class ApiClient:
    """An HTTP client for the live server with a cookie jar and the CSRF header (stdlib only).

    `path` may be a path (`/api/data/accounts?...`) or an absolute URL (an `@odata.nextLink`).
    4xx and 5xx answers are returned, not raised.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.csrf_token: str | None = None
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def login(self, username: str, password: str = DEMO_PASSWORD, org: str = DEMO_ORG) -> dict[str, Any]:
        """Sign in; later state-changing calls carry the session's CSRF token."""
        resp = self.post("/api/auth/login", {"org": org, "username": username, "password": password})
        if resp.status != 200:
            raise AssertionError(f"sign-in as {username} failed: {resp.status} {resp.json}")
        self.csrf_token = resp.json["csrf_token"]
        return resp.json  # type: ignore[no-any-return]

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> ApiResponse:
        """One call; a JSON `body` is sent as JSON."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if method != "GET" and self.csrf_token:
            all_headers.setdefault("X-CSRF-Token", self.csrf_token)
        req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with self._opener.open(req, timeout=30) as resp:
                return _response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return _response(err.code, dict(err.headers), err.read())

    def get(self, path: str, headers: dict[str, str] | None = None) -> ApiResponse:
        """GET `path`."""
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> ApiResponse:
        """POST a JSON body."""
        return self.request("POST", path, body, headers)

    def patch(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> ApiResponse:
        """PATCH a JSON body."""
        return self.request("PATCH", path, body, headers)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> ApiResponse:
        """DELETE `path`."""
        return self.request("DELETE", path, headers=headers)


def _response(status: int, headers: dict[str, str], raw: bytes) -> ApiResponse:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return ApiResponse(status, headers, body)


# --- the server process -----------------------------------------------------------------------


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the test process dies.

    So a run that is killed (a timeout, Ctrl+C twice) never leaves a server holding its port.
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`outpost demo` as a real process on one port and one SQLite file, stoppable and restartable."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.database_url = f"sqlite:///{workdir / 'outpost.db'}"
        self.log_path = workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the process (loading the demo organisation on first start) and wait for /healthz."""
        if self.running:
            raise RuntimeError(f"the server on port {self.port} is already running")
        env = {**os.environ, "DATABASE_URL": self.database_url, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "webapp.cli", "demo", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )
        self._wait_until_healthy(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the process (SIGTERM, then SIGKILL after `timeout`); the port answers nothing after."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def client(self, username: str | None = "admin") -> ApiClient:
        """An HTTP client, signed in as `username` (None: not signed in)."""
        api = ApiClient(self.url)
        if username is not None:
            api.login(username)
        return api

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                return resp.status == 200
        except (OSError, http.client.HTTPException):  # refused, reset, timed out, half-started
            return False

    def _wait_until_healthy(self, timeout: float) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}")
            try:
                # Wait on the process itself between probes: an early exit is reported at once.
                code = process.wait(POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                continue
            self._process = None
            raise RuntimeError(f"the server exited with status {code} before answering /healthz:\n{self.log_tail()}")


def start_live_server(workdir: Path, database: Path | None = None) -> LiveServer:
    """A started `LiveServer` in `workdir`, on a copy of the database files in `database` if given.

    Retries on a fresh port if another process took the probed one before the bind."""
    if database is not None:
        for part in database.glob("outpost.db*"):
            shutil.copy2(part, workdir / part.name)
    server = LiveServer(workdir, free_port())
    for attempt in range(3):
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2 or "Address already in use" not in server.log_tail():
                raise
            server = LiveServer(workdir, free_port())
    raise AssertionError("unreachable")


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory, demo_database: Path) -> Iterator[LiveServer]:
    """The demo server as a subprocess on its own fresh copy of the demo database; stopped after
    the test."""
    server = start_live_server(tmp_path_factory.mktemp("live_server"), demo_database)
    yield server
    server.stop()


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frozen_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Serve a snapshot of webapp/static (`OUTPOST_STATIC_FOLDER`) for a module's tests: the
    service worker checks every file's hash, so files edited meanwhile cannot break it. A module
    takes it with `pytestmark = pytest.mark.usefixtures("frozen_static")`."""
    dest = tmp_path_factory.mktemp("frozen") / "static"
    shutil.copytree(REPO_ROOT / "webapp" / "static", dest, ignore=shutil.ignore_patterns("__pycache__"))
    patch = pytest.MonkeyPatch()
    patch.setenv("OUTPOST_STATIC_FOLDER", str(dest))
    yield dest
    patch.undo()


@pytest.fixture(scope="session")
def chromium(pw: Playwright) -> Iterator[Browser]:
    """Debian's Chromium (or OUTPOST_CHROMIUM), headless, shared by the session's tests."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    with contextlib.suppress(Exception):  # already gone if Chromium crashed: nothing to close
        browser.close()


@contextlib.contextmanager
def phone_at(base_url: str, chromium: Browser, pw: Playwright) -> Iterator[BrowserContext]:
    """A Pixel 7 with empty storage whose pages open `base_url` (`page.goto("/")`).

    It also checks the Content-Security-Policy (webapp/headers.py): the app must never need
    what the policy forbids (inline script or style, foreign connections)."""
    device = {k: v for k, v in pw.devices[PHONE].items() if k != "default_browser_type"}
    context = chromium.new_context(**device, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    violations: list[str] = []
    context.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield context
    context.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"


@pytest.fixture
def phone_context(live_server: LiveServer, chromium: Browser, pw: Playwright) -> Iterator[BrowserContext]:
    """A phone pointed at the live server."""
    with phone_at(live_server.url, chromium, pw) as context:
        yield context


@pytest.fixture
def proxy(live_server: LiveServer) -> Iterator[FaultProxy]:
    """The network between a phone and the server, broken on purpose: a relay from its own port
    to the live server's, which keeps its port when restarted (tests/faultproxy.py)."""
    with FaultProxy(live_server.port) as relay:
        yield relay


@pytest.fixture
def phone(proxy: FaultProxy, chromium: Browser, pw: Playwright) -> Iterator[BrowserContext]:
    """A phone whose every connection goes through the fault proxy."""
    with phone_at(proxy.url, chromium, pw) as context:
        yield context


@pytest.fixture
def phone_page(phone_context: BrowserContext) -> Page:
    """A page on the phone (closed with its context)."""
    return phone_context.new_page()


def _not_here(name: str) -> None:
    pytest.fail(
        f"tests/e2e does not use pytest-playwright's `{name}` fixture (it launches Playwright's own browser "
        "build, which cannot be downloaded here, and ./dev test does not install the plugin): "
        "use live_server, chromium, phone_context and phone_page from tests/e2e/conftest.py"
    )


@pytest.fixture
def page() -> None:
    """Guard: use `phone_page`."""
    _not_here("page")


@pytest.fixture
def context() -> None:
    """Guard: use `phone_context`."""
    _not_here("context")


@pytest.fixture
def browser() -> None:
    """Guard: use `chromium`."""
    _not_here("browser")
