"""What the sync layer needs from the app, handed to it by the app factory (no locator).

`webapp.create_app` passes its `Services` (webapp/services.py) to `register_sync`, which gives
it to each `Channel`; `push_batch` takes the hub itself. The sync layer names only this
Protocol, so it never imports the module that names its own hub (no import cycle).
"""

from __future__ import annotations

from typing import Protocol

from webapp.crm.registry import Registry
from webapp.db import Database
from webapp.sync.hub import Hub


class SyncServices(Protocol):
    """The app's long-lived objects the socket and the channel use."""

    @property
    def db(self) -> Database: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def hub(self) -> Hub: ...
