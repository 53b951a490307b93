"""Hostile HTTP input that used to answer 500 (issue 17), and a fuzz profile of huge integers and
lone surrogates over every HTTP route of the URL map.

The cases: `$filter` on a field that does not exist for a user with hidden (secured) fields; a
`$skiptoken` carrying a huge integer; a lone surrogate (`"\\ud800"`) in a JSON body; a body
nested 100,000 deep. Each answers 4xx with the error shape of PROTOCOL.md §3 and changes nothing.

The fuzz: every rule of the app's URL map (the Web API, commands, sync push, device keys, the
console, the shell) gets requests whose path values, query options and bodies carry integers
beyond 64 bits, non-finite numbers and lone surrogates, from an administrator and from a
salesperson who has hidden fields; no answer is a 5xx. Seeded and short in the default run;
`-m slow` runs the deep profile.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import Api, Org, sign_in
from webapp import create_app
from webapp.crm.query import encode_skiptoken
from webapp.crm.tables import changelog, organization
from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo
from webapp.security import fieldsecurity
from webapp.services import services

LONE = "\ud800"


def secure(app: Flask, org_id: str, entity: str, attribute: str) -> None:
    """Make a field secured: users without a profile granting it do not see it."""
    svc = services(app)
    with svc.db.session(write=True) as s:
        fieldsecurity.set_secured(s, svc.registry.model(s, org_id), entity, attribute)
        s.commit()
    svc.registry.forget(org_id)


def changes(app: Flask) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).select_from(changelog)).scalar_one())


def assert_refused(resp: Any, status: int = 400) -> None:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    error = resp.json["error"]
    assert error["code"] and error["message"], error


@pytest.fixture
def bob(app: Flask, org: Org) -> Api:
    """A salesperson for whom account.revenue is a hidden (secured) field."""
    secure(app, org.org_id, "account", "revenue")
    return sign_in(app, "contoso", "bob")


@pytest.mark.parametrize(
    "query",
    [
        "$filter=nosuch eq 1",
        "$filter=name eq 'x' and nosuch eq 1",
        "$filter=not (_nosuch_value eq null)",
        "$orderby=nosuch",
    ],
)
def test_a_filter_on_a_field_that_does_not_exist_is_a_400_for_a_user_with_hidden_fields(bob: Api, query: str) -> None:
    resp = bob.get(f"/api/data/accounts?{query}")
    assert_refused(resp)
    assert "nosuch" in resp.json["error"]["message"]


def test_a_filter_on_a_hidden_field_is_still_refused(bob: Api) -> None:
    assert_refused(bob.get("/api/data/accounts?$filter=revenue gt 1"), 403)


@pytest.mark.parametrize("offset", [2**63, 2**70, 10**40])
def test_a_skiptoken_carrying_a_huge_integer_is_a_400(alice: Api, offset: int) -> None:
    assert_refused(alice.get(f"/api/data/accounts?$skiptoken={encode_skiptoken(offset)}"))


def test_a_skiptoken_the_server_issued_still_pages(alice: Api) -> None:
    for i in range(3):
        assert alice.post("/api/data/accounts", json={"name": f"Paged {i}"}).status_code == 201
    first = alice.get("/api/data/accounts?$select=name", headers={"Prefer": "odata.maxpagesize=2"})
    assert first.status_code == 200 and len(first.json["value"]) == 2
    nxt = first.json["@odata.nextLink"]
    second = alice.get(nxt[nxt.index("/api/") :], headers={"Prefer": "odata.maxpagesize=2"})
    assert second.status_code == 200 and len(second.json["value"]) == 1, second.json


LONE_BODIES = [
    ("POST", "/api/data/accounts", '{"name": "a\\ud800b"}'),
    ("POST", "/api/data/accounts", '{"\\udfff": "x"}'),
    ("POST", "/api/auth/login", '{"org": "contoso", "username": "alice", "password": "\\ud800xxxxxxx"}'),
    ("POST", "/api/auth/login", '{"org": "\\ud800", "username": "alice", "password": "x"}'),
    ("POST", "/api/commands/qualify_lead", '{"leadid": "\\ud800"}'),
    ("POST", "/api/sync/push", '{"device_id": "\\ud800", "ops": []}'),
    ("POST", "/api/data/accounts", '{"name": "x", "numberofemployees": 1180591620717411303424}'),
    ("POST", "/api/data/accounts", '{"name": "x", "revenue": 1e999}'),
    ("POST", "/api/data/accounts", '{"name": "x", "revenue": NaN}'),
]


@pytest.mark.parametrize(("method", "path", "body"), LONE_BODIES)
def test_a_lone_surrogate_or_a_number_no_column_holds_in_a_json_body_is_a_4xx(
    app: Flask, alice: Api, method: str, path: str, body: str
) -> None:
    before = changes(app)
    resp = alice.client.open(
        path, method=method, data=body, content_type="application/json", headers={"X-CSRF-Token": alice.csrf}
    )
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.json["error"]["code"]
    assert changes(app) == before


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("path", ["/api/data/accounts", "/api/auth/login", "/api/sync/push"])
def test_a_json_body_nested_deeper_than_the_parser_goes_is_a_400(app: Flask, alice: Api, path: str, depth: int) -> None:
    before = changes(app)
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    resp = alice.client.post(path, data=body, content_type="application/json", headers={"X-CSRF-Token": alice.csrf})
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert changes(app) == before


def test_a_good_body_is_still_accepted_after_the_checks(alice: Api) -> None:
    resp = alice.post("/api/data/accounts", json={"name": "Emoji 😀 fine", "numberofemployees": 10**9})
    assert resp.status_code == 201, resp.json


# --- the fuzz profile: every route of the URL map -------------------------------------------------

POISON = [2**70, -(2**70), 2**63, 2**31, 10**30, 1e308, LONE, "a\udfffb", "x" + LONE * 3]
POISON_TEXT = [
    str(2**70),
    "99999999999999999999999999",
    "-1",
    "1e999",
    "NaN",
    "%ED%A0%80",
    "'\ud800'",
    "",
]
POISON_VALUES = st.sampled_from(POISON)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=8), POISON_VALUES),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from([LONE])), inner, max_size=3)
    ),
    max_leaves=8,
)
EXAMPLES = int(os.environ.get("OUTPOST_FUZZ_EXAMPLES", "15"))


@dataclass
class Route:
    """One (rule, method) of the URL map, with what the fuzzer fills in."""

    rule: str
    method: str
    arguments: list[str]
    query: list[str] = field(default_factory=list)


@dataclass
class Fuzzed:
    called: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    folder: Path = tmp_path_factory.mktemp("poison")
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'poison.db'}",
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "poison",
            "RATE_LIMITS": False,
            "SIGNIN_RATE_LIMITS": False,
        }
    )
    svc = services(app)
    with svc.db.session(write=True) as s:
        build_demo(s, svc.registry, svc.hasher)
        s.commit()
    with svc.db.session() as s:
        org_id = s.execute(select(organization.c.organizationid).where(organization.c.name == DEMO_ORG)).scalar_one()
    secure(app, str(org_id), "account", "revenue")
    secure(app, str(org_id), "contact", "telephone1")
    yield app
    svc.db.dispose()


def signed_in(app: Flask, username: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    resp = client.post("/api/auth/login", json={"org": DEMO_ORG, "username": username, "password": DEMO_PASSWORD})
    assert resp.status_code == 200, resp.json
    return client, resp.json["csrf_token"]


def routes(app: Flask) -> list[Route]:
    """Every (rule, method) of the URL map but the socket and static files, with the OpenAPI
    description's query options (and its body fields per entity set, in BODY_FIELDS)."""
    spec = app.test_client().get("/api/openapi.json").json
    schemas = spec.get("components", {}).get("schemas", {})
    for path, item in spec["paths"].items():
        ref = item.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json", {})
        name = ref.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
        if path.startswith("/api/data/") and name in schemas:
            BODY_FIELDS[path[len("/api/data/") :]] = sorted(schemas[name].get("properties", {}))
    queries = sorted(
        {
            p["name"]
            for item in spec["paths"].values()
            for op in item.values()
            if isinstance(op, dict)
            for p in op.get("parameters", [])
            if p["in"] == "query"
        }
    )
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "__flask_sock.sync_socket"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if rule.endpoint in ("api.auth.logout", "admin.auth.signout"):
                continue  # they end the session the fuzz runs on (their own tests cover them)
            found.append(Route(rule.rule, method, sorted(rule.arguments), queries))
    return found


# Body fields per entity set (from the description) and for the routes it does not describe.
BODY_FIELDS: dict[str, list[str]] = {}
OTHER_FIELDS = {
    "/api/auth/login": ["org", "username", "password"],
    "/api/commands/<name>": ["leadid", "opportunityid", "activityid", "status", "statuscode", "actualvalue", "new_ids"],
    "/api/sync/push": ["device_id", "ops"],
    "/api/device-keys/<device_id>": ["key"],
    "/api/device-keys/<device_id>/recover": ["password"],
    "/api/data/<target>/<action>": ["principal@odata.bind", "ownerid@odata.bind", "rights"],
}


TARGETS = ["accounts", "contacts", "leads", "opportunities", "tasks", "systemusers", "teams", "nosuch"]


@st.composite
def path_value(draw: st.DrawFn, name: str) -> tuple[str, str]:
    """A path value, and the entity set it names (if any)."""
    if name == "target":
        entity_set = draw(st.sampled_from(TARGETS))
        if draw(st.booleans()):
            rid = draw(st.one_of(st.uuids().map(str), st.sampled_from(POISON_TEXT), POISON_VALUES.map(str)))
            return f"{entity_set}({rid})", entity_set
        return entity_set, entity_set
    if name == "action":
        return draw(st.sampled_from(["share", "unshare", "assign", "nosuch"])), ""
    if name == "name":
        names = ["qualify_lead", "disqualify_lead", "close_opportunity", "convert_activity_to_case", "x"]
        return draw(st.sampled_from(names)), ""
    return draw(st.one_of(st.uuids().map(str), st.sampled_from(POISON_TEXT), POISON_VALUES.map(str))), ""


@st.composite
def request_for(draw: st.DrawFn, route: Route) -> tuple[str, dict[str, Any]]:
    from urllib.parse import quote

    path = route.rule
    entity_set = ""
    for name in route.arguments:
        value, named = draw(path_value(name))
        entity_set = entity_set or named
        for conv in (f"<{name}>", f"<path:{name}>"):
            path = path.replace(conv, quote(raw(value), safe="(),'"))
    keys = BODY_FIELDS.get(entity_set) if route.rule == "/api/data/<target>" else OTHER_FIELDS.get(route.rule)
    query = {}
    for name in draw(st.lists(st.sampled_from(route.query or ["$top"]), max_size=3, unique=True)):
        query[name] = draw(
            st.one_of(
                st.sampled_from(POISON_TEXT),
                st.sampled_from(
                    [
                        "nosuch eq 1",
                        f"revenue gt {2**70}",
                        f"name eq '{LONE}'",
                        f"numberofemployees eq {2**70}",
                        f"createdon gt {2**70}",
                        encode_skiptoken(2**70),
                        encode_skiptoken(10**40),
                        str(2**70),
                    ]
                ),
            )
        )
    kw: dict[str, Any] = {"query_string": wire(query)}
    if route.method != "GET":
        if route.rule.startswith("/admin") or route.rule.startswith("/scripts"):
            form_keys = st.sampled_from(
                ["name", "org", "username", "password", "depth", "entity", "days", "user_id", "x"]
            )
            kw["content_type"] = "application/x-www-form-urlencoded"
            kw["data"] = draw(
                st.dictionaries(form_keys, st.one_of(st.sampled_from(POISON_TEXT), POISON_VALUES.map(str)), max_size=4)
            )
        else:
            body = draw(
                st.one_of(
                    st.dictionaries(st.sampled_from(keys or ["x"]), st.one_of(POISON_VALUES, JSONISH), max_size=4),
                    st.dictionaries(st.sampled_from(keys or ["x"]), POISON_VALUES, min_size=1, max_size=2),
                    JSONISH,
                )
            )
            kw["data"] = json.dumps(body)  # lone surrogates go out as \ud800 escapes, as JSON allows
            kw["content_type"] = "application/json"
    return path, kw


def raw(value: str) -> bytes:
    """Text as the bytes a hostile client can put on the wire (lone surrogates as WTF-8)."""
    return value.encode("utf-8", "surrogatepass")


def wire(fields: dict[str, str]) -> str:
    """A query string or form body, percent-encoded from those bytes."""
    from urllib.parse import quote

    return "&".join(f"{quote(raw(k))}={quote(raw(v))}" for k, v in fields.items())


def fuzz_route(route: Route, clients: list[tuple[FlaskClient, str]], run: Fuzzed, examples: int, seeded: bool) -> None:
    key = (route.rule, route.method)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        client, csrf = data.draw(st.sampled_from(clients))
        path, kw = data.draw(request_for(route))
        if kw.get("data") is not None and route.rule.startswith("/admin"):
            kw["data"] = wire({**kw["data"], "csrf_token": csrf})
        resp = client.open(path, method=route.method, headers={"X-CSRF-Token": csrf}, **kw)
        run.called[key] = run.called.get(key, 0) + 1
        status = resp.status_code
        resp.close()  # file responses (the manifest, scripts) hold their file until closed
        if status >= 500:
            run.failures.append(f"{route.method} {path} {kw!r:.300} -> {status}")

    if seeded:
        fuzz = seed(20261203)(fuzz)
    fuzz()


def fuzz_every_route(demo_app: Flask, examples: int, seeded: bool) -> Fuzzed:
    clients = [signed_in(demo_app, "admin"), signed_in(demo_app, "east1")]
    run = Fuzzed()
    every = routes(demo_app)
    for route in every:
        fuzz_route(route, clients, run, examples, seeded)
    missed = sorted({(r.rule, r.method) for r in every} - run.called.keys())
    assert not missed, f"routes never called: {missed}"
    return run


def test_huge_integers_and_lone_surrogates_on_every_http_route_never_answer_5xx(demo_app: Flask) -> None:
    run = fuzz_every_route(demo_app, EXAMPLES, seeded=True)
    assert any(rule.startswith("/api/data") for rule, _ in run.called)  # the map really was read
    assert len(run.called) >= 50
    assert not run.failures, "\n".join(run.failures[:20])


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
def test_huge_integers_and_lone_surrogates_on_every_http_route_deep(demo_app: Flask) -> None:
    """The deep run (`-m slow`): 200 unseeded examples per route."""
    run = fuzz_every_route(demo_app, 200, seeded=False)
    assert not run.failures, "\n".join(run.failures[:20])


def test_the_fuzzer_reaches_the_records_it_poisons(demo_app: Flask) -> None:
    """The generated requests are not all refused at the door: a sound create still goes through."""
    client, csrf = signed_in(demo_app, "east1")
    resp = client.post("/api/data/accounts", json={"name": f"Sound {uuid.uuid4()}"}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 201, resp.json
