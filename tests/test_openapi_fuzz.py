"""Schemathesis against `/api/openapi.json`: whatever a client sends, the API answers without a 5xx.

Every operation of the published description gets generated requests (valid and invalid
bodies, paths and queries) from a signed-in administrator with the CSRF header, on SQLite, on
the demo organisation (so lookups and queries meet real records). Seeded: CI runs the same
examples every time; `OUTPOST_FUZZ_EXAMPLES=500 pytest tests/test_openapi_fuzz.py` runs deeper.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, seed, settings

from webapp import create_app
from webapp.demo import DEMO_ORG, DEMO_PASSWORD, build_demo
from webapp.services import services

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


def sign_in(demo_app: Flask) -> dict[str, Any]:
    """A fresh administrator's session: its cookie and CSRF header, as schemathesis sends them."""
    client = demo_app.test_client()
    resp = client.post("/api/auth/login", json={"org": DEMO_ORG, "username": "admin", "password": DEMO_PASSWORD})
    assert resp.status_code == 200, resp.json
    cookie = client.get_cookie(demo_app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return {"cookies": {cookie.key: cookie.value}, "headers": {"X-CSRF-Token": resp.json["csrf_token"]}}


@pytest.fixture(scope="module")
def credentials(demo_app: Flask) -> dict[str, Any]:
    """The administrator's session every fuzzed call but sign-out uses."""
    return sign_in(demo_app)


def operations(app: Flask) -> set[tuple[str, str]]:
    """Every (path, METHOD) the published description lists."""
    spec = app.test_client().get("/api/openapi.json").json
    return {(path, method.upper()) for path, item in spec["paths"].items() for method in item if method != "parameters"}


@dataclass
class FuzzRun:
    """What one seeded schemathesis run over every operation saw."""

    called: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, METHOD) -> requests sent
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def fuzz_operation(operation: Any, credentials: dict[str, Any], run: FuzzRun) -> None:
    """Send EXAMPLES generated requests for one operation, recording each call and its status."""
    key = (operation.path, operation.method.upper())

    @seed(20261128)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        resp = case.call(**credentials)
        run.called[key] = run.called.get(key, 0) + 1
        run.statuses[resp.status_code] = run.statuses.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            run.failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> {resp.status_code}")

    fuzz()


@pytest.fixture(scope="module")
def fuzzed(demo_app: Flask, credentials: dict[str, Any]) -> FuzzRun:
    """Every operation of the description, fuzzed; sign-out last and on a session of its own."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", demo_app)
    run = FuzzRun()
    own_session = sign_in(demo_app)  # before fuzzing sign-in, whose wrong passwords throttle the account
    last = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/auth/logout":
            last.append(operation)  # it ends the session it is sent with
        else:
            fuzz_operation(operation, credentials, run)
    for operation in last:
        fuzz_operation(operation, own_session, run)
    return run


def test_every_operation_of_the_description_is_fuzzed(demo_app: Flask, fuzzed: FuzzRun) -> None:
    listed = operations(demo_app)
    assert ("/api/data/accounts", "POST") in listed  # the description really was read
    never = sorted(listed - fuzzed.called.keys())
    assert not never, f"operations schemathesis never called: {never}"
    assert sorted(fuzzed.called.keys() - listed) == []  # and nothing outside the description
    few = {op: n for op, n in fuzzed.called.items() if n < min(EXAMPLES, 5)}
    assert not few, f"operations called fewer than {min(EXAMPLES, 5)} times: {few}"


def test_no_request_makes_the_api_fail_with_a_5xx(fuzzed: FuzzRun) -> None:
    assert sum(fuzzed.called.values()) >= EXAMPLES  # requests really went out
    # Valid requests got through too (the generator is not only producing rubbish the API refuses).
    assert sum(n for code, n in fuzzed.statuses.items() if 200 <= code < 300) > EXAMPLES, fuzzed.statuses
    assert not fuzzed.failures, "\n".join(fuzzed.failures[:20])
