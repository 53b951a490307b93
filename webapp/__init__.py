"""Outpost: an offline-first mobile CRM. `create_app` builds the Flask application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from flask import Flask

from webapp.config import configure
from webapp.crm.registry import Registry
from webapp.db import Database, connect
from webapp.sync.hub import Hub


@dataclass
class Services:
    """What the app holds for its whole life: database, entity registry, hasher, live-push hub."""

    db: Database
    registry: Registry
    hasher: PasswordHasher
    hub: Hub


def services(app: Flask) -> Services:
    """The app's services (see `create_app`)."""
    return app.extensions["outpost"]  # type: ignore[no-any-return]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The application: configuration, database, schema, blueprints and error handlers."""
    from webapp import schema
    from webapp.admin import register_admin
    from webapp.api import register_api
    from webapp.headers import register_headers
    from webapp.metrics import register_metrics
    from webapp.security.accounts import password_hasher
    from webapp.shell import register_shell
    from webapp.sync.socket import register_sync

    app = Flask(__name__, instance_relative_config=True)
    configure(app, test_config)
    db = connect(app.config["DATABASE_URL"])
    setup = app.config["SCHEMA_SETUP"]
    if setup == "migrate":
        schema.upgrade(db)
    elif setup == "create_all":
        schema.create_all(db)
    app.extensions["outpost"] = Services(
        db=db,
        registry=Registry(),
        hasher=password_hasher(fast=bool(app.config["FAST_PASSWORD_HASH"])),
        hub=Hub(),
    )
    register_api(app)
    register_admin(app)
    register_sync(app)
    register_shell(app)
    register_headers(app)
    register_metrics(app)
    return app
