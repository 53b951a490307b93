"""CSRF on every state-changing route: found from the URL map, so a new route cannot be forgotten.

Signed in (as the administrator, who may call everything), a POST, PUT, PATCH or DELETE
without the CSRF token is refused with 403 and changes nothing; sign-in is the one exception
(there is no session yet; it is throttled instead).
"""

from __future__ import annotations

import re
import uuid

from flask import Flask
from sqlalchemy import func, select

from tests.conftest import Api, Org
from webapp import services
from webapp.crm.tables import changelog

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXEMPT = {"api.auth.login", "admin.auth.signin"}  # signing in: no session yet (throttled instead)
SAMPLE = {"entityset": "accounts", "name": "qualify_lead", "entity": "account", "id": str(uuid.uuid4())}


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


def state(app: Flask) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).select_from(changelog)).scalar_one())


def test_every_state_changing_route_refuses_a_request_without_the_csrf_token(app: Flask, org: Org, alice: Api) -> None:
    routes = write_routes(app)
    assert len(routes) >= 8  # the API and the admin console really were found
    before = state(app)
    wrong = []
    for endpoint, method, url in routes:
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            resp = alice.client.open(url, method=method, json={"name": "x"}, headers=headers)
            if resp.status_code != 403:
                wrong.append(f"{method} {url} ({endpoint}) with {headers or 'no token'}: {resp.status_code}")
    assert not wrong, "\n".join(wrong)
    assert state(app) == before
    assert alice.get("/api/auth/me").status_code == 200  # and the session is still good
