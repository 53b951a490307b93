"""Login CSRF (issue 17): a page on another site must not sign the visitor's browser in.

A cross-site form POST to `/admin/signin` (or a cross-site call of `/api/auth/login`) with the
attacker's own credentials would sign the victim's browser into the attacker's account — the
phone app would then report and sync that account. The console's sign-in form carries a token
bound to a cookie of this browser's own visit to the form; both sign-ins refuse a request whose
`Origin` is another site or whose `Sec-Fetch-Site` says it came from another site. Same-origin
sign-in keeps working.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Org

OWN = "http://localhost"
CREDENTIALS = {"org": "contoso", "username": "bob", "password": PASSWORD}  # the attacker's own account


def session_cookie(app: Flask, client: FlaskClient) -> str | None:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie is not None else None


def form_token(client: FlaskClient) -> str:
    """The sign-in form's token, as a browser that opened the form has it."""
    page = client.get("/admin/signin")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, "the sign-in form carries no csrf_token"
    return found.group(1)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.localhost"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Referer": "https://evil.example/x"},
    ],
)
def test_a_cross_site_form_post_to_the_console_sign_in_signs_nobody_in(
    app: Flask, org: Org, headers: dict[str, str]
) -> None:
    victim = app.test_client()
    resp = victim.post("/admin/signin", data=CREDENTIALS, headers=headers)
    assert resp.status_code == 403, resp.status_code
    set_cookies = " ".join(resp.headers.getlist("Set-Cookie"))
    assert app.config["SESSION_COOKIE_NAME"] not in set_cookies
    assert session_cookie(app, victim) is None
    assert victim.get("/api/auth/me").status_code == 401


def test_the_console_sign_in_needs_the_token_of_this_browsers_own_form(app: Flask, org: Org) -> None:
    victim = app.test_client()
    # No token at all (an old browser that sends neither Origin nor Sec-Fetch-Site).
    assert victim.post("/admin/signin", data=CREDENTIALS).status_code == 403
    # The attacker's own token, fetched in the attacker's browser, is worth nothing in the victim's.
    attacker = app.test_client()
    stolen = form_token(attacker)
    assert victim.post("/admin/signin", data={**CREDENTIALS, "csrf_token": stolen}).status_code == 403
    victim.get("/admin/signin")  # even with a form of its own open, another token does not match
    assert victim.post("/admin/signin", data={**CREDENTIALS, "csrf_token": stolen}).status_code == 403
    assert session_cookie(app, victim) is None


def test_the_console_sign_in_from_its_own_form_works(app: Flask, org: Org) -> None:
    client = app.test_client()
    token = form_token(client)
    resp = client.post(
        "/admin/signin",
        data={
            "org": "contoso",
            "username": "alice",
            "password": PASSWORD,
            "next": "/admin/devices/",
            "csrf_token": token,
        },
        headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert resp.headers["Location"] == "/admin/devices/"
    assert client.get("/admin/devices/").status_code == 200


def test_a_refused_console_sign_in_shows_a_form_that_works_on_the_next_try(app: Flask, org: Org) -> None:
    client = app.test_client()
    token = form_token(client)
    wrong = client.post("/admin/signin", data={**CREDENTIALS, "password": "nope-nope", "csrf_token": token})
    assert wrong.status_code == 401
    again = re.search(r'name="csrf_token" value="([^"]+)"', wrong.get_data(as_text=True))
    assert again
    ok = client.post("/admin/signin", data={**CREDENTIALS, "csrf_token": again.group(1)})
    assert ok.status_code == 302


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_call_of_the_api_sign_in_signs_nobody_in(app: Flask, org: Org, headers: dict[str, str]) -> None:
    victim = app.test_client()
    resp = victim.post("/api/auth/login", json=CREDENTIALS, headers=headers)
    assert resp.status_code == 403, resp.json
    assert resp.json["error"]["code"] == "forbidden_origin"
    assert session_cookie(app, victim) is None


def test_the_api_sign_in_from_the_apps_own_pages_and_from_other_programs_works(app: Flask, org: Org) -> None:
    page = app.test_client()
    resp = page.post("/api/auth/login", json=CREDENTIALS, headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"})
    assert resp.status_code == 200, resp.json
    assert page.get("/api/auth/me").json["user"]["username"] == "bob"
    program = app.test_client()  # no Origin, no Sec-Fetch-Site: not a browser, so no victim's cookies
    assert program.post("/api/auth/login", json=CREDENTIALS).status_code == 200


def test_a_form_encoded_or_plain_text_post_to_the_api_sign_in_is_not_accepted(app: Flask, org: Org) -> None:
    client = app.test_client()
    as_form = client.post("/api/auth/login", data=CREDENTIALS)
    as_text = client.post(
        "/api/auth/login", data='{"org":"contoso","username":"bob","password":"x"}', content_type="text/plain"
    )
    assert as_form.status_code in (400, 415) and as_text.status_code == 415
    assert session_cookie(app, client) is None
