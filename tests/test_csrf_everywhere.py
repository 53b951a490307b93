"""CSRF on every state-changing route: found from the URL map, so a new route cannot be forgotten.

Signed in (as the administrator, who may call everything), a POST, PUT, PATCH or DELETE
without the CSRF token, or with a wrong one, is refused with 403 *because of CSRF* — the API
answers the error code `csrf_failed`, the console the page saying its security token is
missing — and the whole database (every table, every row) is the same afterwards. Sign-in is
the one exception (there is no session yet; it is throttled instead).
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import inspect, literal_column, select, table

from tests.conftest import Api, Org
from webapp.admin.context import CSRF_REFUSED
from webapp.services import services

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXEMPT = {"api.auth.login", "admin.auth.signin"}  # signing in: no session yet (throttled instead)
SAMPLE = {"entityset": "accounts", "name": "qualify_lead", "entity": "account", "id": str(uuid.uuid4())}
API_CSRF_CODE = "csrf_failed"


def fill(rule: str) -> str:
    """A concrete URL for a rule: each <converter:name> replaced by a plausible value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        return SAMPLE.get(name, str(uuid.uuid4()) if "id" in name else "x")

    return re.sub(r"<([^>]+)>", value, rule)


def write_routes(app: Flask) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & WRITE_METHODS):
            if rule.endpoint not in EXEMPT:
                out.append((rule.endpoint, method, fill(rule.rule)))
    return out


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database, sorted: what "nothing changed" is compared on."""
    engine = services(app).db.read_engine
    with engine.connect() as conn:
        return {
            name: sorted(
                tuple(map(repr, row)) for row in conn.execute(select(literal_column("*")).select_from(table(name)))
            )
            for name in inspect(conn).get_table_names()
        }


def refused_for_csrf(resp: Any) -> bool:
    """A 403 that says CSRF refused it (not some other 403: no privilege, disabled user, …)."""
    if resp.status_code != 403:
        return False
    if resp.is_json:
        return bool(resp.json.get("error", {}).get("code") == API_CSRF_CODE)
    return CSRF_REFUSED in html.unescape(resp.get_data(as_text=True))


def test_every_state_changing_route_refuses_a_request_without_the_csrf_token(app: Flask, org: Org, alice: Api) -> None:
    routes = write_routes(app)
    assert {e.split(".")[0] for e, _, _ in routes} >= {"api", "admin"}  # both halves really were found
    before = snapshot(app)
    assert sum(len(rows) for rows in before.values()) > 0
    wrong = []
    for endpoint, method, url in routes:
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            form = {"csrf_token": "not-the-token"} if headers else {"name": "x"}
            for body in ({"json": {"name": "x"}}, {"data": form}):
                resp = alice.client.open(url, method=method, headers=headers, **body)
                if not refused_for_csrf(resp):
                    detail = resp.get_data(as_text=True)[:200].replace("\n", " ")
                    wrong.append(
                        f"{method} {url} ({endpoint}) {headers or 'no token'} {body}: {resp.status_code} {detail}"
                    )
    assert not wrong, "\n".join(wrong)
    after = snapshot(app)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tables changed by refused requests: {changed}"
    assert alice.get("/api/auth/me").status_code == 200  # and the session is still good


def test_the_same_requests_with_the_token_get_past_the_check(app: Flask, org: Org, alice: Api) -> None:
    """The control: with the session's token, no route answers the CSRF refusal."""
    cookie = alice.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    refused = []
    for endpoint, method, url in write_routes(app):
        if endpoint in ("api.auth.logout", "admin.auth.signout"):
            continue  # would end the session the other calls use
        if endpoint.startswith("admin."):
            resp = alice.client.open(url, method=method, data={"csrf_token": alice.csrf, "name": "x"})
        else:
            resp = alice.client.open(url, method=method, json={"name": "x"}, headers={"X-CSRF-Token": alice.csrf})
        if refused_for_csrf(resp):
            refused.append(f"{method} {url} ({endpoint})")
    assert not refused, "\n".join(refused)
