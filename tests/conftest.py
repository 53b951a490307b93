"""Fixtures in the flaskr style: a fresh database per test, on SQLite and on PostgreSQL.

PostgreSQL tests use one schema per test session (tables emptied between tests) and are
skipped with the reason when no server answers at OUTPOST_TEST_PG_URL (default: the local
server with trust auth).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import epoch_guard
from webapp import create_app
from webapp.crm.orgs import create_business_unit, root_business_unit
from webapp.db import metadata
from webapp.security.roles import ADMIN_ROLE
from webapp.security.setup import new_organization, new_user
from webapp.services import services

epoch_guard.install()  # every transaction that changes access moves the security epoch
PG_URL = os.environ.get("OUTPOST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct-horse-1"


@dataclass
class PgSchema:
    """A throw-away schema for this test session."""

    url: str
    admin_url: str
    name: str


def _pg_schema_url(base: str, schema: str) -> str:
    url = make_url(base)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[PgSchema]:
    """A schema on the PostgreSQL server, or a skip saying why there is none."""
    engine = create_engine(PG_URL)
    name = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    except Exception as exc:  # any connection failure means: no PostgreSQL here
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    schema = PgSchema(_pg_schema_url(PG_URL, name), PG_URL, name)
    yield schema
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    engine.dispose()


def _empty_pg(schema: PgSchema) -> None:
    engine = create_engine(schema.url)
    with engine.begin() as conn:
        names = [t.name for t in metadata.sorted_tables]
        existing = set(
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema.name}).scalars()
        )
        for custom in sorted(n for n in existing if n.startswith("cx_")):
            conn.execute(text(f'DROP TABLE "{custom}"'))
        present = [n for n in names if n in existing]
        if present:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in present) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty database URL: SQLite file or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outpost.db"
    schema: PgSchema = request.getfixturevalue("pg_schema")
    _empty_pg(schema)
    return schema.url


@pytest.fixture
def app(database_url: str, tmp_path: Any) -> Iterator[Flask]:
    """An app on a fresh database."""
    application = create_app(
        {
            "DATABASE_URL": database_url,
            "SCHEMA_SETUP": "create_all",
            "FAST_PASSWORD_HASH": True,
            "TESTING": True,
            "SECRET_KEY": "test",
        }
    )
    yield application
    services(application).db.dispose()


@dataclass
class Org:
    """A small organisation: two business units, two users, and a foreign organisation."""

    name: str
    org_id: str
    root_bu: str
    east_bu: str
    alice: str
    bob: str
    other_org: str
    carol: str


@pytest.fixture
def org(app: Flask) -> Org:
    """contoso (alice, an administrator in Sales East; bob, a salesperson at the root) and
    fabrikam (carol, its administrator)."""
    svc = services(app)
    with svc.db.session(write=True) as dbs:
        model = new_organization(dbs, svc.registry, "contoso", "Contoso")
        root = root_business_unit(dbs, model)
        east = create_business_unit(dbs, model, "Sales East")
        alice = new_user(dbs, model, svc.hasher, "alice", PASSWORD, "Able", east, [ADMIN_ROLE], firstname="Alice")
        bob = new_user(dbs, model, svc.hasher, "bob", PASSWORD, "Baker", root, ["Salesperson"], firstname="Bob")
        other = new_organization(dbs, svc.registry, "fabrikam", "Fabrikam")
        carol = new_user(
            dbs, other, svc.hasher, "carol", PASSWORD, "Cole", root_business_unit(dbs, other), [ADMIN_ROLE]
        )
        dbs.commit()
    return Org("contoso", model.org_id, root, east, alice, bob, other.org_id, carol)


class Api:
    """A signed-in test client that sends the CSRF header on every state-changing call."""

    def __init__(self, client: FlaskClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers={"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, json=json, headers={"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers={"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}, **kw)


def sign_in(app: Flask, org: str, username: str, password: str = PASSWORD) -> Api:
    """A new client signed in as `username`."""
    client = app.test_client()
    resp = client.post("/api/auth/login", json={"org": org, "username": username, "password": password})
    assert resp.status_code == 200, resp.json
    return Api(client, resp.json["csrf_token"])


@pytest.fixture
def alice(app: Flask, org: Org) -> Api:
    """Signed in as alice (contoso, Sales East)."""
    return sign_in(app, "contoso", "alice")


@pytest.fixture
def carol(app: Flask, org: Org) -> Api:
    """Signed in as carol (fabrikam)."""
    return sign_in(app, "fabrikam", "carol")


@pytest.fixture(scope="session")
def pw() -> Iterator[Any]:
    """Playwright for Python (the sync API), for the whole session: shared by tests/e2e and tests/engines.

    One per process: a second sync Playwright started while one runs fails ("using Playwright
    Sync API inside the asyncio loop"), so it lives here, above both folders.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a database with the demo organisation, loaded once per run by a real first
    start: each test's server starts on a copy. Loading the demo is most of a first start (about
    10 of 14 s on this loaded 2-core machine; a start on a loaded database takes 3.5 s), and the
    browser tests start well over a hundred servers."""
    from tests.e2e.conftest import start_live_server  # Playwright loads only where a browser test runs

    workdir = tmp_path_factory.mktemp("demo_database")
    start_live_server(workdir).stop()
    return workdir
