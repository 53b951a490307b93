"""What keeping a device's scope exact costs (webapp/sync/reconcile.py), server side.

With `records` accounts in the demo organisation (SQLite), through the real `Channel` (JSON in,
frames out; the device's side answered with the shared checksum, webapp/sync/checksum.py):

- a pull with nothing due, for the administrator's device holding every account — the price
  every pull pays (target: within a few ms of a plain pull);
- the full check (the first pull after a download, and the daily one): the server's summary
  of every id in scope, the device's comparison, and the answer when nothing differs;
- a role's read privilege on accounts revoked: a salesperson's device reconciles, from the
  pull to the last remove, with how many records left;
- the same privilege granted again: the records come back through reconciliation.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import Report, median_ms, p95_ms

RUNS = 20


class Device:
    """A device through `Channel` that holds ids only (enough to answer checks)."""

    def __init__(self, app: Any, org_id: str, user_id: str) -> None:
        from webapp.security.accounts import start_session
        from webapp.services import services
        from webapp.sync.channel import Channel

        with services(app).db.session(write=True) as s:
            token = start_session(s, org_id, user_id)[0]
            s.commit()
        self.channel = Channel(app, token, org_id, user_id, services=services(app))
        self.held: dict[str, set[str]] = {}
        self.cursor = 0
        self.removed = 0
        self.primary: dict[str, str] = {}

    def send(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        return self.channel.receive(json.dumps(msg))

    def download(self, app: Any, org_id: str) -> None:
        from webapp.services import services
        from webapp.sync.profile import downloadable

        assert self.send({"type": "hello", "device_id": str(uuid.uuid4())})[0]["type"] == "welcome"
        with services(app).db.session() as s:
            model = services(app).registry.model(s, org_id)
            names = [e.logical_name for e in downloadable(model)]
            self.primary = {e.logical_name: e.primary_id for e in model.entities.values()}
        cursors = []
        for name in names:
            after = None
            while True:
                (page,) = self.send({"type": "download", "entity": name, "after": after, "limit": 5000})
                cursors.append(page["cursor"])
                self.held.setdefault(name, set()).update(r[self.primary[name]] for r in page["records"])
                after = page["next"]
                if after is None:
                    break
        self.cursor = min(cursors)

    def pull(self) -> None:
        while True:
            more = self.handle(self.send({"type": "pull", "cursor": self.cursor, "scope": 1}))
            if not more:
                return

    def handle(self, frames: list[dict[str, Any]]) -> bool:
        more = False
        for frame in frames:
            if frame["type"] == "changes":
                for up in frame["upserts"]:
                    self.held.setdefault(up["entity"], set()).add(up["record"][self.primary[up["entity"]]])
                for rm in frame["removes"]:
                    self.held.get(rm["entity"], set()).discard(rm["id"])
                    self.removed += 1
                self.cursor = max(self.cursor, frame["cursor"])
                more = frame["more"]
            elif frame["type"] == "scope":
                self.answer(frame)
        return more

    def answer(self, frame: dict[str, Any]) -> None:
        from webapp.sync import checksum

        held: dict[str, dict[str, list[str]]] = {}
        for name, check in frame["entities"].items():
            mine = checksum.buckets(self.held.get(name, set()), check["depth"])
            keys = set(check["buckets"]) | (set(mine) if check["complete"] else set())
            for key in keys:
                count, digest = check["buckets"].get(key, [0, ""])
                ids = mine.get(key, [])
                if count == 0:
                    self.held[name] -= set(ids)
                    self.removed += len(ids)
                elif count != len(ids) or checksum.digest(ids) != digest or check["refresh"]:
                    held.setdefault(name, {})[key] = ids
        # One frame per bucket: simple, and within the per-frame limits whatever the sizes.
        frames = [{name: {key: ids}} for name, groups in held.items() for key, ids in groups.items()] or [{}]
        for i, part in enumerate(frames):
            msg = {"type": "reconcile", "check": frame["check"], "held": part, "done": i == len(frames) - 1}
            self.handle(self.send(msg))


def run(records: int, report: Report, runs: int = RUNS) -> None:
    """Load `records` accounts into the demo organisation and time pulls, checks and reconciliations."""
    from sqlalchemy import select

    from webapp import create_app
    from webapp.crm.changes import utcnow
    from webapp.crm.orgs import org_id_by_name
    from webapp.crm.tables import SYSTEM_TABLES
    from webapp.demo import DEMO_ORG, build_demo, load_bulk
    from webapp.security.roles import ORG, grant, role_id
    from webapp.services import services
    from webapp.sync import reconcile
    from webapp.sync.tables import devicescope

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {"DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}", "FAST_PASSWORD_HASH": True, "RATE_LIMITS": False}
        )
        svc = services(app)
        with svc.db.session(write=True) as s:
            build_demo(s, svc.registry, svc.hasher)
            load_bulk(s, svc.registry, DEMO_ORG, records, progress=False, mix=(("account", 1.0),))
            s.commit()
            model = svc.registry.model(s, org_id_by_name(s, DEMO_ORG))
            users = SYSTEM_TABLES["systemuser"]
            ids = dict(s.execute(select(users.c.username, users.c.systemuserid)).all())
        admin = Device(app, model.org_id, ids["admin"])
        admin.download(app, model.org_id)
        held = len(admin.held.get("account", ()))
        t0 = time.perf_counter()
        admin.pull()  # no stamp yet: the full check
        report("first full check, nothing differs", (time.perf_counter() - t0) * 1000, "ms", f"{held:,} accounts held")
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            admin.pull()
            samples.append(time.perf_counter() - t0)
        report("pull with nothing due p50", median_ms(samples), "ms", f"{held:,} accounts held")
        report("pull with nothing due p95", p95_ms(samples), "ms", "")
        plain = []
        admin.channel.reconciles = False
        for _ in range(runs):
            t0 = time.perf_counter()
            admin.send({"type": "pull", "cursor": admin.cursor})
            plain.append(time.perf_counter() - t0)
        admin.channel.reconciles = True
        report("plain pull (no scope) p50", median_ms(plain), "ms", "the same device, old pull")
        with svc.db.session(write=True) as s:  # the next pull is the daily check
            s.execute(devicescope.update().values(checkedon=utcnow() - reconcile.HEAL_AFTER))
            s.commit()
        t0 = time.perf_counter()
        admin.pull()
        report("daily full check, nothing differs", (time.perf_counter() - t0) * 1000, "ms", f"{held:,} accounts")
        seller = Device(app, model.org_id, ids["east1"])
        seller.download(app, model.org_id)
        seller.pull()
        before = len(seller.held.get("account", ()))
        with svc.db.session(write=True) as s:
            grant(s, model, role_id(s, model, "Salesperson"), "account", "read", 0)
            s.commit()
        t0 = time.perf_counter()
        seller.pull()
        elapsed = time.perf_counter() - t0
        gone = before - len(seller.held.get("account", ()))
        report("read revoked: reconciled", elapsed * 1000, "ms", f"{gone:,} of {before:,} accounts removed")
        with svc.db.session(write=True) as s:
            grant(s, model, role_id(s, model, "Salesperson"), "account", "read", ORG)
            s.commit()
        t0 = time.perf_counter()
        seller.pull()
        elapsed = time.perf_counter() - t0
        came = len(seller.held.get("account", ()))
        report("read granted org-wide: reconciled", elapsed * 1000, "ms", f"{came:,} accounts now held")
        report("records arriving by reconciliation", came / elapsed, "rec/s", "")
        svc.db.dispose()
