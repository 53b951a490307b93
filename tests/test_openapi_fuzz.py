"""Schemathesis against `/api/openapi.json`: whatever a client sends, the API answers without a 5xx.

Every operation of the published description gets generated requests (valid and invalid
bodies, paths and queries) from a signed-in administrator with the CSRF header, on SQLite, on
the demo organisation (so lookups and queries meet real records). Seeded: CI runs the same
examples every time; `OUTPOST_FUZZ_EXAMPLES=500 pytest tests/test_openapi_fuzz.py` runs deeper.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, seed, settings

from webapp import create_app, services
from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo

STATUSES: dict[int, int] = {}
EXAMPLES = int(os.environ.get("OUTPOST_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'fuzz.db'}",
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "fuzz",
            "RATE_LIMITS": False,
        }
    )
    svc = services(app)
    with svc.db.session(write=True) as s:
        build_demo(s, svc.registry, svc.hasher)
        s.commit()
    yield app
    services(app).db.dispose()


@pytest.fixture(scope="module")
def credentials(demo_app: Flask) -> dict[str, Any]:
    client = demo_app.test_client()
    resp = client.post("/api/auth/login", json={"org": DEMO_ORG, "username": "admin", "password": DEMO_PASSWORD})
    assert resp.status_code == 200, resp.json
    cookie = client.get_cookie(demo_app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return {"cookies": {cookie.key: cookie.value}, "headers": {"X-CSRF-Token": resp.json["csrf_token"]}}


def operations(app: Flask) -> list[tuple[str, str]]:
    spec = app.test_client().get("/api/openapi.json").json
    return [(path, method.upper()) for path, item in spec["paths"].items() for method in item if method != "parameters"]


def test_every_operation_of_the_description_is_fuzzed(demo_app: Flask) -> None:
    found = operations(demo_app)
    assert ("/api/data/{entityset}", "POST") in found or any(p.startswith("/api/data/") for p, _ in found)
    assert len(found) >= 10


def test_no_request_makes_the_api_fail_with_a_5xx(demo_app: Flask, credentials: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", demo_app)
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/auth/logout":
            continue  # it would end the session the other calls use

        @seed(20261128)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            nonlocal checked
            resp = case.call(**credentials)
            checked += 1
            STATUSES[resp.status_code] = STATUSES.get(resp.status_code, 0) + 1
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> {resp.status_code}")

        fuzz()
    assert checked >= EXAMPLES  # requests really went out
    # Valid requests got through too (the generator is not only producing rubbish the API refuses).
    assert sum(n for code, n in STATUSES.items() if 200 <= code < 300) > EXAMPLES, STATUSES
    assert not failures, "\n".join(failures[:20])
