"""What the app holds for its whole life: database, entity registry, password hasher, live-push hub.

The app factory (`webapp.create_app`) builds one `Services` and keeps it in
`app.extensions`; request handlers reach it through `services(current_app)`. It lives in its
own module at the `sync` floor (it names the hub), not in `webapp/__init__.py`, so the
modules that use it import downwards and never the app factory that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from flask import Flask

from webapp.crm.registry import Registry
from webapp.db import Database
from webapp.sync.hub import Hub

EXTENSION = "outpost"  # the key in app.extensions


@dataclass
class Services:
    """The app's long-lived objects (see `webapp.create_app`)."""

    db: Database
    registry: Registry
    hasher: PasswordHasher
    hub: Hub


def services(app: Flask) -> Services:
    """The app's services (see `webapp.create_app`)."""
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]
