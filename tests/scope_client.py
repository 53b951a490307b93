"""A device that speaks the sync protocol through the real `Channel` and keeps only what the
server sent it — the Python twin of the browser's records layer plus webapp/static/js/scope.js.

It downloads every offline entity, pulls with `scope: 1`, applies `changes` by version (in
answer to a `refresh` check an equal version replaces too: the records come again with fewer
or more fields), answers `scope`
checks with the shared checksum (webapp/sync/checksum.py) and `reconcile` frames split as
docs/protocol.md says, and records every remove it is sent, so a test can check that no remove
names an id the device never held.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

from flask import Flask

from webapp.security.scope import load_principal
from webapp.services import services
from webapp.sync import checksum
from webapp.sync.channel import Channel
from webapp.sync.download import download_page
from webapp.sync.profile import downloadable
from webapp.sync.reconcile import MAX_PER_FRAME


class ScopePhone:
    """One device store: the records the server sent, by entity and id."""

    def __init__(
        self, app: Flask, token: str, org_id: str, user_id: str, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.app, self.org_id, self.user_id = app, org_id, user_id
        self.channel = Channel(app, token, org_id, user_id, clock=clock, services=services(app))
        self.held: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.ever_held: dict[str, set[str]] = defaultdict(set)
        self.removes: list[dict[str, Any]] = []  # every remove received, in order
        self.cursor = 0
        self.checks = 0
        self.reconciles = True
        self.primary: dict[str, str] = {}

    def send(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """A frame through the channel; its answers."""
        return self.channel.receive(json.dumps(msg))

    def connect(self) -> None:
        """hello, then the first download of every offline entity (its cursor: the smallest page's)."""
        welcome = self.send({"type": "hello", "device_id": str(uuid.uuid4()), "app_version": "test"})
        assert welcome[0]["type"] == "welcome", welcome
        svc = services(self.app)
        with svc.db.session() as s:
            model = svc.registry.model(s, self.org_id)
            names = [e.logical_name for e in downloadable(model)]
            self.primary = {e.logical_name: e.primary_id for e in model.entities.values()}
        cursors = []
        for name in names:
            after = None
            while True:
                (page,) = self.send({"type": "download", "entity": name, "after": after, "limit": 1000})
                assert page["type"] == "page", page
                cursors.append(page["cursor"])
                for record in page["records"]:
                    self._upsert(name, record)
                after = page["next"]
                if after is None:
                    break
        self.cursor = min(cursors) if cursors else 0

    def pull(self) -> None:
        """Pull until caught up, answering any scope check."""
        while True:
            frames = self.send({"type": "pull", "cursor": self.cursor, **({"scope": 1} if self.reconciles else {})})
            more = self.handle(frames)
            if not more:
                return

    def wake(self) -> None:
        """What the server pushes live after a commit or a security change."""
        self.handle(self.channel.wake())

    def handle(self, frames: list[dict[str, Any]]) -> bool:
        """Apply frames; whether the last `changes` said more follow."""
        more = False
        for frame in frames:
            kind = frame["type"]
            if kind == "changes":
                self.apply(frame)
                more = frame["more"]
            elif kind == "scope":
                self.answer(frame)
            elif kind == "error":
                raise AssertionError(frame)
        return more

    def apply(self, frame: dict[str, Any], refresh: Collection[str] = ()) -> None:
        """A `changes` frame: upserts by version, removes; the cursor moves on."""
        for up in frame["upserts"]:
            self._upsert(up["entity"], up["record"], up["entity"] in refresh)
        for rm in frame["removes"]:
            self.removes.append(rm)
            self.held[rm["entity"]].pop(rm["id"], None)
        if frame["cursor"] is not None:
            self.cursor = max(self.cursor, frame["cursor"])

    def _upsert(self, entity: str, record: dict[str, Any], same_version_too: bool = False) -> None:
        pk = self.primary[entity]
        current = self.held[entity].get(record[pk])
        newer = current is None or record["versionnumber"] > current["versionnumber"]
        if newer or (same_version_too and record["versionnumber"] == current["versionnumber"]):
            self.held[entity][record[pk]] = record
            self.ever_held[entity].add(record[pk])

    def answer(self, frame: dict[str, Any]) -> None:
        """A `scope` check: compare every bucket, drop what the server says is empty, send the rest."""
        self.checks += 1
        pending: list[tuple[str, str, list[str], int]] = []
        for name, check in frame["entities"].items():
            mine = checksum.buckets(self.held[name], check["depth"])
            server = check["buckets"]
            keys = set(server) | (set(mine) if check["complete"] else set())
            for key in sorted(keys):
                count, digest = server.get(key, [0, ""])
                ids = sorted(mine.get(key, []))
                same = count == len(ids) and (count == 0 or checksum.digest(ids) == digest)
                if same and not check["refresh"]:
                    continue
                if count == 0:
                    for rid in ids:
                        self.held[name].pop(rid, None)
                    continue
                pending.append((name, key, ids, count))
        frames: list[dict[str, dict[str, list[str]]]] = []
        current: dict[str, dict[str, list[str]]] = {}
        sent = in_scope = 0
        for name, key, ids, count in pending:
            if current and (sent + len(ids) > MAX_PER_FRAME or in_scope + count > MAX_PER_FRAME):
                frames.append(current)
                current, sent, in_scope = {}, 0, 0
            current.setdefault(name, {})[key] = ids
            sent, in_scope = sent + len(ids), in_scope + count
        frames.append(current)
        for i, held in enumerate(frames):
            answers = self.send(
                {"type": "reconcile", "check": frame["check"], "held": held, "done": i == len(frames) - 1}
            )
            refresh = {name for name, check in frame["entities"].items() if check["refresh"]}
            for answer in answers:
                if answer["type"] == "changes":
                    self.apply(answer, refresh)
                elif answer["type"] == "error":
                    raise AssertionError(answer)

    def fresh_download(self) -> dict[str, dict[str, dict[str, Any]]]:
        """What a new device of this user would download now."""
        svc = services(self.app)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with svc.db.session() as s:
            model = svc.registry.model(s, self.org_id)
            principal = load_principal(s, model, self.user_id)
            for entity in downloadable(model):
                records: dict[str, dict[str, Any]] = {}
                after = None
                while True:
                    page = download_page(s, model, principal, entity.logical_name, after, 5000)
                    records.update({r[entity.primary_id]: r for r in page["records"]})
                    after = page["next"]
                    if after is None:
                        break
                out[entity.logical_name] = records
        return out

    def holds(self) -> dict[str, dict[str, dict[str, Any]]]:
        """What this device holds, per entity (empty entities left out, as in `fresh_download`)."""
        return {name: dict(records) for name, records in self.held.items()}
