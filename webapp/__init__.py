"""Outpost: an offline-first mobile CRM. `create_app` builds the Flask application.

Importing any part of `webapp` runs this file first, so it imports nothing at module level:
`import webapp.crm.metadata` must not load Flask, argon2 or the sync hub
(tests/test_layers.py checks it). The app factory is the top of the server's floors and
imports everything it wires, inside the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The application: configuration, database, schema, services, blueprints and error handlers."""
    from flask import Flask

    from webapp import schema
    from webapp.admin import register_admin
    from webapp.admission import gate_requests
    from webapp.api import register_api
    from webapp.config import configure
    from webapp.crm.registry import Registry
    from webapp.db import connect
    from webapp.headers import register_headers
    from webapp.metrics import register_metrics
    from webapp.security.accounts import password_hasher
    from webapp.services import EXTENSION, Services
    from webapp.shell import register_shell
    from webapp.sync.hub import Hub
    from webapp.sync.socket import register_sync

    app = Flask(__name__, instance_relative_config=True)
    configure(app, test_config)
    db = connect(app.config["DATABASE_URL"])
    setup = app.config["SCHEMA_SETUP"]
    if setup == "migrate":
        schema.upgrade(db)
    elif setup == "create_all":
        schema.create_all(db)
    registry, hub = Registry(), Hub()
    hub.use_fanout(db, registry)  # each commit read once per process for its devices
    svc = app.extensions[EXTENSION] = Services(
        db=db,
        registry=registry,
        hasher=password_hasher(fast=bool(app.config["FAST_PASSWORD_HASH"])),
        hub=hub,
    )
    register_api(app)
    register_admin(app)
    register_sync(app, svc)
    register_shell(app)
    register_headers(app)
    register_metrics(app)
    gate_requests(app)
    return app
