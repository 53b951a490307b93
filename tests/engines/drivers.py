"""One small page-object API over two automation protocols, so a journey is written once.

`Driver` is what a test sees: find by ARIA role and accessible name, click, fill a field by its
label, read, wait for a condition with a time limit, run JavaScript in the page. Two drivers
implement it:

    PlaywrightDriver   Playwright for Python: Chromium (DevTools protocol) and Firefox ESR
                       (WebDriver BiDi, `channel="moz-firefox"`). Roles and names are Playwright's
                       own `get_by_role` / `get_by_label`.
    WebDriverDriver    Selenium (W3C WebDriver classic): WebKitGTK's MiniBrowser. WebDriver has no
                       role selector, so `FIND` (below) runs in the page: it maps elements to their
                       ARIA role (explicit `role`, else the implicit role of the HTML element) and
                       computes the accessible name (aria-labelledby, aria-label, <label>, content,
                       title, placeholder) the way the accname spec does for this app's markup.

A target is `(role, name)`; `name` is an exact string (after collapsing white space) or a
compiled regular expression (searched, like Playwright's), and `within=(role, name)` narrows
the search to the first visible match of that container. Hidden elements (no layout box,
`visibility: hidden`, or inside `aria-hidden="true"`) never match.

Every wait has a time limit (`timeout` ms, default `TIMEOUT_MS`) and no wait sleeps for a fixed
time: conditions are polled. `evaluate(js, arg)` runs a function expression (sync or async)
with one JSON argument and returns its JSON result; it, too, fails after a time limit.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

TIMEOUT_MS = 20_000
POLL_S = 0.05
T = TypeVar("T")
Name = str | re.Pattern[str] | None
Within = tuple[str, Name] | None

# Records CSP violations in the page (an init script with Playwright; WebDriver runs it after each load).
CSP_LISTENER = """() => {
  if (window.__cspViolations) return;
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) =>
    window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
}"""

# Form controls: what `fill(label, ...)` may find by its label (not a <form> or a region of that name).
FIELDS = (
    "input:not([type=hidden]):not([type=button]):not([type=submit]), select, textarea, "
    "[role=combobox], [role=textbox], [role=searchbox]"
)

# Finds visible elements by ARIA role and accessible name, or form controls by label (role "field").
FIND = r"""
const [spec] = arguments;
const norm = (s) => (s || "").replace(/\s+/g, " ").trim();
const IMPLICIT = {
  button: 'button, input[type=button], input[type=submit], input[type=reset]',
  link: 'a[href], area[href]',
  heading: 'h1, h2, h3, h4, h5, h6',
  dialog: 'dialog',
  textbox: 'input:not([type]), input[type=text], input[type=email], input[type=tel], input[type=url], textarea',
  searchbox: 'input[type=search]',
  combobox: 'select:not([multiple]):not([size]), input[list]',
  listbox: 'select[multiple], select[size]',
  option: 'option',
  checkbox: 'input[type=checkbox]',
  radio: 'input[type=radio]',
  list: 'ul, ol',
  listitem: 'li',
  region: 'section[aria-label], section[aria-labelledby]',
  form: 'form[aria-label], form[aria-labelledby], form',
  columnheader: 'thead th',
  progressbar: 'progress',
  navigation: 'nav',
  main: 'main',
};
const FIELDS = arguments[1];
const visible = (el) => {
  if (!el.getClientRects().length) return false;
  if (getComputedStyle(el).visibility === "hidden") return false;
  return !el.closest('[aria-hidden="true"]');
};
const roleOf = (el) => {
  const explicit = (el.getAttribute("role") || "").split(" ")[0];
  if (explicit) return explicit;
  for (const [role, sel] of Object.entries(IMPLICIT)) if (el.matches(sel)) return role;
  return "";
};
const textOf = (node) => {
  if (node.nodeType === Node.TEXT_NODE) return node.textContent;
  if (node.nodeType !== Node.ELEMENT_NODE) return "";
  const el = node;
  if (el.hidden || el.getAttribute("aria-hidden") === "true") return "";
  if (el.matches("script, style, template")) return "";
  if (el.getAttribute("aria-label")) return " " + el.getAttribute("aria-label") + " ";
  if (el.tagName === "IMG") return " " + (el.getAttribute("alt") || "") + " ";
  if (el.matches("input, select, textarea")) return " " + (el.value || "") + " ";
  const inner = [...el.childNodes].map(textOf).join("");
  const block = getComputedStyle(el).display !== "inline";
  return block ? " " + inner + " " : inner;
};
const byIds = (ids) => ids.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean)
  .map((el) => norm([...el.childNodes].map(textOf).join(""))).join(" ");
const nameOf = (el) => {
  const labelledby = el.getAttribute("aria-labelledby");
  if (labelledby && byIds(labelledby)) return norm(byIds(labelledby));
  if (el.getAttribute("aria-label")) return norm(el.getAttribute("aria-label"));
  if (el.matches("input, select, textarea")) {
    const labels = el.labels ? [...el.labels] : [];
    if (labels.length) return norm(labels.map((l) => [...l.childNodes].map(textOf).join("")).join(" "));
    if (el.matches("input[type=button], input[type=submit], input[type=reset]")) return norm(el.value);
    return norm(el.getAttribute("title") || el.getAttribute("placeholder") || "");
  }
  const role = roleOf(el);
  const fromContent = ["button", "link", "heading", "option", "menuitem", "columnheader", "cell", "tab", "listitem"];
  if (fromContent.includes(role)) {
    return norm([...el.childNodes].map(textOf).join("")) || norm(el.getAttribute("title"));
  }
  return norm(el.getAttribute("title"));
};
const matches = (text, name) => {
  if (name === null || name === undefined) return true;
  if (typeof name === "string") return text === norm(name);
  return new RegExp(name.source, name.flags).test(text);
};
const find = (root, role, name, level) => {
  const selector = role === "field" ? FIELDS : `[role~="${role}"]` + (IMPLICIT[role] ? ", " + IMPLICIT[role] : "");
  const found = [];
  for (const el of root.querySelectorAll(selector)) {
    if (role !== "field" && roleOf(el) !== role) continue;
    if (level && el.tagName !== `H${level}` && el.getAttribute("aria-level") !== String(level)) continue;
    if (!visible(el) && !(role === "option" && el.tagName === "OPTION")) continue;
    if (!matches(nameOf(el), name)) continue;
    found.push(el);
  }
  return found;
};
let root = document;
if (spec.within) {
  const [container] = find(document, spec.within.role, spec.within.name, null);
  if (!container) return [];
  root = container;
}
const found = find(root, spec.role, spec.name, spec.level || null);
// Texts and counts come back as plain values: WebKitGTK does not turn elements inside an array
// argument back into nodes, so nothing here takes a list of elements.
if (spec.want === "text") return found.map((el) => el.innerText);
if (spec.want === "count") return found.length;
return found;
"""


class WaitTimeout(AssertionError):
    """A condition did not hold within its time limit."""


def _name_json(name: Name) -> Any:
    if isinstance(name, re.Pattern):
        flags = "i" if name.flags & re.IGNORECASE else ""
        return {"source": name.pattern, "flags": flags}
    return name


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout_ms: float, what: str) -> T:
    """Call `fetch` until `done(value)`; fail with `what` after `timeout_ms`. Errors while polling are retried."""
    deadline = time.monotonic() + timeout_ms / 1000
    last: Any = None
    error: Exception | None = None
    while True:
        try:
            last = fetch()
            if done(last):
                return last
            error = None
        except Exception as exc:  # a navigation between polls, a stale element: ask again
            error = exc
        if time.monotonic() > deadline:
            raise WaitTimeout(f"not within {timeout_ms / 1000:.0f} s: {what} (last: {last!r})") from error
        time.sleep(POLL_S)  # the interval between polls of a condition, bounded by the deadline


class Driver(ABC):
    """The journey's view of a browser tab."""

    engine: str
    version: str

    # --- primitives each driver implements ---------------------------------------------------

    @abstractmethod
    def goto(self, path: str) -> None:
        """Open a path of the live server (or an absolute URL) and wait for the load."""

    @abstractmethod
    def reload(self) -> None:
        """Reload the page."""

    @abstractmethod
    def click(self, role: str, name: Name = None, *, within: Within = None, timeout: float = TIMEOUT_MS) -> None:
        """Click the first visible element with this role and name (waiting for it)."""

    @abstractmethod
    def fill(self, label: Name, value: str, *, timeout: float = TIMEOUT_MS) -> None:
        """Replace the text of the form field with this label, typing like a person (input events)."""

    @abstractmethod
    def press(self, label: Name, key: str, *, timeout: float = TIMEOUT_MS) -> None:
        """Press a key ("Enter", "ArrowDown", "Escape") in the field with this label."""

    @abstractmethod
    def select(self, label: Name, option: str, *, timeout: float = TIMEOUT_MS) -> None:
        """Choose an option of the <select> with this label, by its text."""

    @abstractmethod
    def count(self, role: str, name: Name = None, *, within: Within = None, level: int | None = None) -> int:
        """How many visible elements have this role and name, now."""

    @abstractmethod
    def texts(self, role: str, name: Name = None, *, within: Within = None) -> list[str]:
        """The visible text of each element with this role and name, now."""

    @abstractmethod
    def value(self, label: Name) -> str:
        """The current value of the form field with this label."""

    @abstractmethod
    def evaluate(self, js: str, arg: Any = None, *, timeout: float = TIMEOUT_MS) -> Any:
        """Run a JS function expression (may be async) of one JSON argument; its JSON result."""

    @abstractmethod
    def new_tab(self) -> Driver:
        """Another tab of the same browser profile (same storage, same service worker)."""

    @abstractmethod
    def close(self) -> None:
        """Close this tab."""

    @abstractmethod
    def screenshot(self, path: str) -> None:
        """Save what the tab shows."""

    # --- built on the primitives ---------------------------------------------------------------

    def wait_visible(
        self,
        role: str,
        name: Name = None,
        *,
        within: Within = None,
        level: int | None = None,
        timeout: float = TIMEOUT_MS,
    ) -> None:
        """Wait until an element with this role and name is visible."""
        poll(lambda: self.count(role, name, within=within, level=level), bool, timeout, f"{role} {name!r} visible")

    def wait_hidden(self, role: str, name: Name = None, *, within: Within = None, timeout: float = TIMEOUT_MS) -> None:
        """Wait until no element with this role and name is visible."""
        poll(lambda: self.count(role, name, within=within), lambda n: n == 0, timeout, f"{role} {name!r} hidden")

    def wait_value(self, label: Name, expected: str, *, timeout: float = TIMEOUT_MS) -> None:
        """Wait until the field with this label holds `expected`."""
        poll(lambda: self.value(label), lambda v: v == expected, timeout, f"field {label!r} == {expected!r}")

    def wait_until(self, js: str, arg: Any = None, *, timeout: float = TIMEOUT_MS, what: str = "") -> Any:
        """Poll a JS function (may be async) until it returns something truthy; return that."""
        return poll(
            lambda: self.evaluate(js, arg, timeout=min(timeout, 10_000)), bool, timeout, what or f"JS condition {js}"
        )

    def csp_violations(self) -> list[str]:
        """Content-Security-Policy violations the page recorded."""
        with contextlib.suppress(Exception):
            return list(self.evaluate("() => window.__cspViolations || []", timeout=5_000))
        return []


# --- Playwright -------------------------------------------------------------------------------


class PlaywrightDriver(Driver):
    """A Playwright page (Chromium over CDP, Firefox over WebDriver BiDi)."""

    def __init__(self, engine: str, version: str, context: Any, page: Any | None = None) -> None:
        self.engine = engine
        self.version = version
        self.context = context
        self.page = page or context.new_page()

    def _locator(self, role: str, name: Name, within: Within = None, level: int | None = None) -> Any:
        root = self.page
        if within is not None:
            root = self._locator(within[0], within[1]).first
        kwargs: dict[str, Any] = {}
        if name is not None:
            kwargs["name"] = name
            kwargs["exact"] = isinstance(name, str)
        if level is not None:
            kwargs["level"] = level
        return root.get_by_role(role, **kwargs)

    def _field(self, label: Name) -> Any:
        controls = self.page.locator(FIELDS)
        if isinstance(label, str):
            # Playwright matches the <label>'s text, which includes an aria-hidden " *" (required).
            label = re.compile(rf"^\s*{re.escape(label)}(\s*\*)?\s*$")
        return self.page.get_by_label(label).and_(controls).first

    def goto(self, path: str) -> None:
        self.page.goto(path)
        self.evaluate(CSP_LISTENER)

    def reload(self) -> None:
        self.page.reload()
        self.evaluate(CSP_LISTENER)

    def click(self, role: str, name: Name = None, *, within: Within = None, timeout: float = TIMEOUT_MS) -> None:
        self._locator(role, name, within).first.click(timeout=timeout)

    def fill(self, label: Name, value: str, *, timeout: float = TIMEOUT_MS) -> None:
        self._field(label).fill(value, timeout=timeout)

    def press(self, label: Name, key: str, *, timeout: float = TIMEOUT_MS) -> None:
        self._field(label).press(key, timeout=timeout)

    def select(self, label: Name, option: str, *, timeout: float = TIMEOUT_MS) -> None:
        self._field(label).select_option(label=option, timeout=timeout)

    def count(self, role: str, name: Name = None, *, within: Within = None, level: int | None = None) -> int:
        if within is not None and self._locator(within[0], within[1]).count() == 0:
            return 0
        locator = self._locator(role, name, within, level)
        return sum(1 for i in range(locator.count()) if locator.nth(i).is_visible())

    def texts(self, role: str, name: Name = None, *, within: Within = None) -> list[str]:
        if within is not None and self._locator(within[0], within[1]).count() == 0:
            return []
        return [t for t in self._locator(role, name, within).all_inner_texts()]

    def value(self, label: Name) -> str:
        return str(self._field(label).input_value(timeout=TIMEOUT_MS))

    def evaluate(self, js: str, arg: Any = None, *, timeout: float = TIMEOUT_MS) -> Any:
        return self.page.evaluate(_with_deadline(js), [arg, timeout])

    def new_tab(self) -> PlaywrightDriver:
        return PlaywrightDriver(self.engine, self.version, self.context)

    def close(self) -> None:
        self.page.close()

    def screenshot(self, path: str) -> None:
        self.page.screenshot(path=path)


def _with_deadline(js: str) -> str:
    """Wrap a function expression so its (possibly async) result is awaited with a time limit."""
    return f"""async ([arg, timeout]) => {{
        const fn = ({js});
        let timer;
        const late = new Promise((_, reject) => {{
            timer = setTimeout(() => reject(new Error(`no answer within ${{timeout}} ms`)), timeout);
        }});
        try {{
            return await Promise.race([Promise.resolve().then(() => fn(arg)), late]);
        }} finally {{
            clearTimeout(timer);
        }}
    }}"""


# --- WebDriver (Selenium) -----------------------------------------------------------------------


class WebDriverDriver(Driver):
    """A tab of a Selenium WebDriver session (WebKitGTK's MiniBrowser here)."""

    KEYS = {
        "Enter": "\ue007",
        "ArrowDown": "\ue015",
        "ArrowUp": "\ue013",
        "Escape": "\ue00c",
        "Tab": "\ue004",
        "Control": "\ue009",
        "Backspace": "\ue003",
    }

    def __init__(self, engine: str, version: str, driver: Any, base_url: str, handle: str | None = None) -> None:
        self.engine = engine
        self.version = version
        self.driver = driver
        self.base_url = base_url
        self.handle = handle or driver.current_window_handle

    def _use(self) -> Any:
        if self.driver.current_window_handle != self.handle:
            self.driver.switch_to.window(self.handle)
        return self.driver

    def _query(self, role: str, name: Name, within: Within, level: int | None, want: str) -> Any:
        spec: dict[str, Any] = {"role": role, "name": _name_json(name), "level": level, "want": want}
        if within is not None:
            spec["within"] = {"role": within[0], "name": _name_json(within[1])}
        return self._use().execute_script(FIND, spec, FIELDS)

    def _find(self, role: str, name: Name, within: Within = None, level: int | None = None) -> list[Any]:
        return list(self._query(role, name, within, level, "elements") or [])

    def _one(self, role: str, name: Name, within: Within, timeout: float) -> Any:
        found = poll(lambda: self._find(role, name, within), bool, timeout, f"{role} {name!r} visible")
        return found[0]

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def goto(self, path: str) -> None:
        self._use().get(self._url(path))
        self.evaluate(CSP_LISTENER)

    def reload(self) -> None:
        self._use().refresh()
        self.evaluate(CSP_LISTENER)

    def _act(self, find: Callable[[], Any], action: Callable[[Any], None], timeout: float, what: str) -> None:
        """Find and act, again while the element is stale, covered or not yet interactable."""

        def attempt() -> bool:
            action(find())
            return True

        poll(attempt, bool, timeout, what)

    def click(self, role: str, name: Name = None, *, within: Within = None, timeout: float = TIMEOUT_MS) -> None:
        def action(el: Any) -> None:
            # WebDriver scrolls an element only to the viewport's edge, where the app's sticky top
            # bar or action bar covers it ("click intercepted"); a person scrolls it into the middle.
            self._use().execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", el)
            el.click()

        self._act(lambda: self._one(role, name, within, timeout), action, timeout, f"click {role} {name!r}")

    def fill(self, label: Name, value: str, *, timeout: float = TIMEOUT_MS) -> None:
        def action(el: Any) -> None:
            # Select all and delete, as a person would: WebDriver's clear() fires no `input` event.
            if el.get_property("value"):
                el.send_keys(self.KEYS["Control"] + "a", self.KEYS["Backspace"])
            if el.get_property("value"):
                el.clear()
            if value:
                el.send_keys(value)

        self._act(lambda: self._one("field", label, None, timeout), action, timeout, f"fill {label!r}")

    def press(self, label: Name, key: str, *, timeout: float = TIMEOUT_MS) -> None:
        code = self.KEYS[key]
        self._act(lambda: self._one("field", label, None, timeout), lambda el: el.send_keys(code), timeout, key)

    def select(self, label: Name, option: str, *, timeout: float = TIMEOUT_MS) -> None:
        from selenium.webdriver.support.select import Select

        self._act(
            lambda: self._one("field", label, None, timeout),
            lambda el: Select(el).select_by_visible_text(option),
            timeout,
            f"select {option!r} in {label!r}",
        )

    def count(self, role: str, name: Name = None, *, within: Within = None, level: int | None = None) -> int:
        return int(self._query(role, name, within, level, "count") or 0)

    def texts(self, role: str, name: Name = None, *, within: Within = None) -> list[str]:
        # innerText, as Playwright reads it (WebDriver's "element text" differs in WebKitGTK).
        return [str(t) for t in self._query(role, name, within, None, "text") or []]

    def value(self, label: Name) -> str:
        found = self._find("field", label)
        if not found:
            raise WaitTimeout(f"no field labelled {label!r}")
        return str(self._use().execute_script("return arguments[0].value", found[0]))

    def evaluate(self, js: str, arg: Any = None, *, timeout: float = TIMEOUT_MS) -> Any:
        driver = self._use()
        driver.set_script_timeout(timeout / 1000 + 5)
        script = f"""
            const done = arguments[arguments.length - 1];
            const run = {_with_deadline(js)};
            run([arguments[0], {json.dumps(timeout)}]).then(
                (value) => done({{ok: true, value: value === undefined ? null : value}}),
                (err) => done({{ok: false, error: String(err && err.stack || err)}}));
        """
        result = driver.execute_async_script(script, arg)
        if not result or not result.get("ok"):
            raise RuntimeError(f"in the page: {result and result.get('error')}")
        return result["value"]

    def new_tab(self) -> WebDriverDriver:
        driver = self._use()
        before = set(driver.window_handles)
        driver.switch_to.new_window("tab")
        handle = next(h for h in driver.window_handles if h not in before)
        return WebDriverDriver(self.engine, self.version, driver, self.base_url, handle)

    def close(self) -> None:
        driver = self._use()
        driver.close()
        remaining = driver.window_handles
        if remaining:
            driver.switch_to.window(remaining[0])

    def screenshot(self, path: str) -> None:
        self._use().save_screenshot(path)
