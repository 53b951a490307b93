"""`wait_until`: poll a JavaScript predicate in the page until it is truthy, under the app's CSP.

Playwright's `page.wait_for_function` builds its predicate in the page with `eval`, which the
app's Content-Security-Policy forbids (no 'unsafe-eval', webapp/headers.py): it fails with an
EvalError. `page.evaluate` runs through the DevTools protocol, which the policy does not
govern, so this polls with it instead. Unlike `wait_for_function` it also awaits a predicate
that returns a promise (an IndexedDB read), which `wait_for_function` counts as truthy at once.
A predicate must settle promptly: `page.evaluate` itself has no time limit.
"""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Error, Page

DEFAULT_TIMEOUT_MS = 15_000
POLL_MS = 50
RETRIED = ("Execution context was destroyed", "navigation", "Cannot find context")


def wait_until(
    page: Page, expression: str, arg: Any = None, *, timeout: float = DEFAULT_TIMEOUT_MS, polling: float = POLL_MS
) -> Any:
    """Evaluate `expression` (an expression or a function of `arg`) every `polling` ms until truthy."""
    deadline = time.monotonic() + timeout / 1000
    last_error: Exception | None = None
    while True:
        try:
            value = page.evaluate(expression, arg)
            if value:
                return value
        except Error as exc:  # a navigation replaced the document between polls: try again
            if not any(text in str(exc) for text in RETRIED):
                raise
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:.0f} ms: {expression}") from last_error
        page.wait_for_timeout(polling)  # also lets Playwright deliver events (console, DevTools)
