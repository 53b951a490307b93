"""Security headers (webapp/headers.py), the shell's freedom from inline code, and sign-out's Clear-Site-Data.

The browser tests check the policy from the other side: every one of them fails on a CSP
violation reported in the page (tests/e2e/conftest.py `phone_context`).
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask import Flask

from tests.conftest import PASSWORD, Api, Org

PATHS = ["/", "/sw.js", "/manifest.webmanifest", "/healthz", "/api/metadata", "/static/js/app.js", "/nowhere"]


def directives(policy: str) -> dict[str, set[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = set(values)
    return out


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_security_headers(app: Flask, path: str) -> None:
    resp = app.test_client().get(path)
    csp = directives(resp.headers["Content-Security-Policy"])
    assert csp["script-src"] == {"'self'"}
    assert csp["style-src"] == {"'self'"}
    assert csp["frame-ancestors"] == {"'none'"}
    assert csp["object-src"] == {"'none'"}
    assert csp["base-uri"] == {"'none'"}
    assert csp["connect-src"] == {"'self'", "ws://localhost"}
    assert not any("unsafe" in v for values in csp.values() for v in values)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in resp.headers  # plain HTTP: HSTS would mean nothing
    resp.close()  # a static file's response holds the file open


def test_over_https_hsts_is_sent_and_the_socket_is_wss(app: Flask) -> None:
    resp = app.test_client().get("/healthz", base_url="https://outpost.example")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "wss://outpost.example" in directives(resp.headers["Content-Security-Policy"])["connect-src"]


class InlineFinder(HTMLParser):
    """Everything in a page that a strict policy would block: inline script, style, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{tag}[{k}]" for k in names if k == "style" or k.startswith("on")]
        self.found += [f"{tag}[{k}=javascript:]" for k, v in attrs if v and v.strip().lower().startswith("javascript:")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline script text")


def test_the_finder_sees_inline_code() -> None:
    finder = InlineFinder()
    finder.feed('<div style="x" onclick="y()"><script>alert(1)</script><a href="javascript:z()">')
    assert sorted(finder.found) == sorted(
        ["div[style]", "div[onclick]", "<script> without src", "inline script text", "a[href=javascript:]"]
    )


def test_the_shell_has_no_inline_script_or_style(app: Flask) -> None:
    finder = InlineFinder()
    finder.feed(app.test_client().get("/").get_data(as_text=True))
    assert finder.found == []


def test_sign_out_clears_the_cookies_but_not_the_offline_store(app: Flask, alice: Api) -> None:
    resp = alice.post("/api/auth/logout")
    assert resp.status_code == 200
    assert resp.headers["Clear-Site-Data"] == '"cookies"'  # "storage" would delete unsynced work
    assert alice.get("/api/auth/me").status_code == 401


def test_the_session_cookie_is_http_only_same_site_and_secure_when_configured(app: Flask, org: Org) -> None:
    app.config["SESSION_COOKIE_SECURE"] = True
    resp = app.test_client().post("/api/auth/login", json={"org": org.name, "username": "alice", "password": PASSWORD})
    assert resp.status_code == 200, resp.json
    cookie = resp.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/"):
        assert flag in cookie
