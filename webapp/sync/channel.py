"""One sync connection's protocol (PROTOCOL.md §5), with no socket code: text in, frames out.

The socket handler feeds each received frame to `Channel.receive` and sends what it returns;
`Channel.wake` produces the live `changes` for this device after a commit elsewhere, and the
`scope` check when one is due (webapp/sync/reconcile.py: what the device holds follows every
security change and time window). Every message re-checks the session, so sign-out or expiry
ends the channel (code 1008). A bad frame gets an error frame and never ends a good session.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from webapp import metrics
from webapp.crm.changes import current_change, utcnow
from webapp.crm.customizations import customizations
from webapp.crm.errors import CrmError
from webapp.crm.records import Actor
from webapp.ratelimit import limits
from webapp.security.accounts import load_session, user_summary
from webapp.security.principals import principals
from webapp.sync import devices, reconcile, stream
from webapp.sync.download import download_page
from webapp.sync.feed import changes_since
from webapp.sync.frames import BadFrame, parse_frame
from webapp.sync.replay import PushError, Replay, over_rate, push_batch
from webapp.sync.wiring import SyncServices

log = logging.getLogger("outpost.sync")
MAX_FEED_FRAMES = 20  # changes frames sent for one pull or wake; the device pulls again if more
CHECK_PATIENCE = 120.0  # seconds a device may take to answer a scope check before another is sent


class Closing(Exception):
    """The channel must close with `code` after sending `frames`."""

    def __init__(self, code: int, frames: list[dict[str, Any]]) -> None:
        super().__init__(code)
        self.code = code
        self.frames = frames


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An error frame."""
    return {"type": "error", "code": code, "message": message, **extra}


@dataclass
class Channel:
    """The state of one connection: whose session, which device, where its feed stands."""

    app: Flask
    token: str
    org_id: str
    user_id: str
    device_id: str | None = None
    cursor: int | None = None  # set by the first pull: from then on, changes are pushed live
    reconciles: bool = False  # the device said (pull `scope: 1`) it answers scope checks
    check: reconcile.Check | None = None  # the scope check awaiting the device's answer
    check_sent: float = 0.0
    streaming: stream.Stream | None = None  # the streamed first download in progress (webapp/sync/stream.py)
    clock: Callable[[], dt.datetime] | None = None  # the server's "now" (default utcnow; tests move it)
    services: SyncServices = field(kw_only=True)  # the app's db, registry and hub (given, not looked up)
    stats: dict[str, int] = field(default_factory=lambda: {"ops": 0, "conflicts": 0, "rejected": 0, "frames": 0})
    started: float = field(default_factory=time.monotonic)
    subscription: Any = None  # the hub's Subscription (live push; webapp/sync/fanout.py)
    _principal_epoch: int = -1  # the security epoch the principal `_context` gave was loaded at

    def _now(self) -> dt.datetime:
        return self.clock() if self.clock is not None else utcnow()

    def receive(self, text: Any) -> list[dict[str, Any]]:
        """Handle one frame; returns the frames to send (raises Closing to end the channel)."""
        self.stats["frames"] += 1
        try:
            msg = parse_frame(text)
        except BadFrame as exc:
            metrics.frame_received(None)
            return [error("bad_message", exc.message)]
        kind = msg["type"]
        metrics.frame_received(kind)
        if kind == "ping":
            return [{"type": "pong"}]
        if kind == "pong":
            return []
        handler = {
            "hello": self.hello,
            "push": self.push,
            "download": self.download,
            "stream": self.stream_start,
            "stream_ack": self.stream_ack,
            "pull": self.pull,
            "reconcile": self.reconcile,
        }.get(kind)
        if handler is None:
            return [error("unknown_type", f"Unknown message type '{kind[:40]}'.")]
        if kind != "hello" and self.device_id is None:
            return [error("bad_message", "Send hello first.")]
        wait = self._over_limit(kind, msg)
        if wait is not None:
            return [
                error(
                    "rate_limited",
                    "Too many messages or operations; nothing in this one was applied. Send it again later.",
                    retry_after_ms=max(1, round(wait * 1000)),
                )
            ]
        svc = self.services
        with svc.db.session(write=kind in ("hello", "push", "pull", "reconcile")) as s:
            info = load_session(s, self.token)
            if info is None:
                raise Closing(1008, [error("unauthenticated", "The session has ended; sign in again.")])
            try:
                return handler(s, msg)
            except CrmError as exc:
                s.rollback()
                return [error(exc.code, exc.message)]
            except PushError as exc:
                s.rollback()
                return [exc.frame]

    def _over_limit(self, kind: str, msg: dict[str, Any]) -> float | None:
        """Seconds to wait when this user's frames or operations are over their rate, else None."""
        if not self.app.config["RATE_LIMITS"]:
            return None
        who = (self.org_id, self.user_id)
        wait = limits(self.app).frames.take(who)
        if wait is None and kind == "push":
            wait = over_rate(self.app, self.org_id, self.user_id, msg.get("ops"))
        return wait

    def _context(self, s: Any) -> tuple[Any, Any, Actor]:
        """The organisation's model and this user's principal: the process keeps one per user,
        shared by their sockets, and loads it again only when the user's security epoch or the
        organisation's metadata moved (webapp/security/principals.py)."""
        model = self.services.registry.model(s, self.org_id)
        principal, key = principals(self.app).keyed(s, model, self.user_id)
        self._principal_epoch = key[1]  # the fan-out compares it with the user's epoch (webapp/sync/fanout.py)
        return model, principal, Actor(self.org_id, self.user_id, principal.business_unit_id)

    def hello(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Register the device and tell it where the server stands (no principal needed yet)."""
        model = self.services.registry.model(s, self.org_id)
        if msg.get("org") not in (None, model.name):
            return [error("device_mismatch", "This device's store belongs to another organisation.")]
        try:
            row = devices.register(s, self.org_id, self.user_id, msg.get("device_id"), msg.get("app_version"))
        except devices.DeviceError as exc:
            s.rollback()
            return [error(exc.code, exc.message)]
        if row["status"] == "revoked":
            s.commit()
            raise Closing(1000, [{"type": "wipe", "reason": "This device was revoked by an administrator."}])
        self.device_id = row["deviceid"]
        pending = msg.get("pending_ops")
        if isinstance(pending, int) and not isinstance(pending, bool) and pending >= 0:
            devices.touch(s, self.device_id, pending_ops=pending)
        s.commit()
        return [
            {
                "type": "welcome",
                "device_id": self.device_id,
                "user": {k: v for k, v in user_summary(s, model, self.user_id).items() if k in ("id", "username")},
                "next_seq": devices.next_seq(s, self.device_id),
                "cursor": current_change(s),
                "metadata_version": customizations(model)["version"],
            }
        ]

    def push(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Replay a batch; the ack is built only after the results are committed."""
        model, principal, actor = self._context(s)
        replay = Replay(s, model, principal, actor, self.device_id or "")
        try:
            with metrics.replay_timer("socket"):
                results, stopped = push_batch(self.services.hub, replay, msg.get("ops"))
        except devices.Revoked as exc:  # revoked since its hello: as hello would answer
            raise Closing(1000, [{"type": "wipe", "reason": str(exc)}]) from None
        for r in results:
            self.stats["ops"] += 1
            self.stats["conflicts"] += r["status"] == "conflict"
            self.stats["rejected"] += r["status"] == "rejected"
        frames: list[dict[str, Any]] = [{"type": "ack", "results": results}] if results else []
        if stopped is not None:
            frames.append(stopped.frame)
        return frames

    def download(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """One page of the first download."""
        model, principal, _ = self._context(s)
        page = download_page(s, model, principal, msg.get("entity"), msg.get("after"), msg.get("limit", 1000))
        return [{"type": "page", **page}]

    def stream_start(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """A streamed download: its first pages at once (webapp/sync/stream.py)."""
        model, principal, _ = self._context(s)
        self.streaming, frames = stream.start(s, model, principal, msg)
        return frames

    def stream_ack(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """The device committed a streamed page: the next one."""
        model, principal, _ = self._context(s)
        return stream.ack(s, model, principal, self.streaming, msg)

    def pull(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Changes after the device's cursor, then a scope check if one is due; from now on
        changes are also pushed live."""
        cursor = msg.get("cursor")
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
            return [error("bad_message", "pull needs a cursor (a whole number of zero or more).")]
        if msg.get("scope") in (1, True):
            self.reconciles = True
        model, principal, _ = self._context(s)
        mark = self._mark()
        frames, cursor, plan, caught_up = self._feed(s, model, principal, cursor)
        if plan.save is not None:
            reconcile.save_stamp(s, self.org_id, self.device_id or "", plan.save)
        devices.touch(s, self.device_id or "", last_sync=utcnow(), cursor=cursor)
        s.commit()
        check = plan.check
        self._started(cursor, check)
        self._follow(model, principal, mark, caught_up)
        return frames

    def _feed(
        self, s: Any, model: Any, principal: Any, cursor: int
    ) -> tuple[list[dict[str, Any]], int, reconcile.Plan, bool]:
        """The feed from `cursor` (at most MAX_FEED_FRAMES), and then, once the device is caught
        up, what reconciliation plans: a check (its frame appended) or a stamp to save; and
        whether it is caught up."""
        frames = []
        now = self._now()
        caught_up = False
        for _ in range(MAX_FEED_FRAMES):
            batch = changes_since(s, model, principal, cursor, now=now)
            frames.append(batch.to_message())
            cursor = batch.cursor
            if not batch.more:
                caught_up = True
                break
        plan = self._plan(s, model, principal, cursor, now) if caught_up else reconcile.Plan()
        if plan.check is not None:
            frames.append(plan.check.to_message())
        return frames, cursor, plan, caught_up

    def _plan(self, s: Any, model: Any, principal: Any, cursor: int, now: dt.datetime) -> reconcile.Plan:
        awaiting = self.check is not None and time.monotonic() - self.check_sent < CHECK_PATIENCE
        if not self.reconciles or awaiting:
            return reconcile.Plan()
        return reconcile.plan(s, model, principal, self.device_id or "", cursor, now)

    def _started(self, cursor: int, check: reconcile.Check | None) -> None:
        """After the commit: the feed stands at `cursor` and `check` (if any) awaits its answer."""
        self.cursor = cursor
        if check is not None:
            self.check, self.check_sent = check, time.monotonic()

    def _mark(self) -> int | None:
        """Where the process's fan-out reader stands, noted before this device reads the feed."""
        sub = self.subscription
        return sub.fanout.mark(self.org_id) if sub is not None and sub.fanout is not None else None

    def _follow(self, model: Any, principal: Any, mark: int | None, caught_up: bool) -> None:
        """After a read of the feed: a device caught up is followed by the fan-out from its
        cursor (a read that may have missed what the reader read meanwhile is done again)."""
        sub = self.subscription
        if sub is None or sub.fanout is None or self.cursor is None:
            return
        if not caught_up:
            sub.fanout.unfollow(sub)  # it pulls again (`more`), and follows once caught up
        elif not sub.fanout.follow(
            sub,
            model,
            principal,
            self.cursor,
            mark,
            epoch=self._principal_epoch,
            clock=self.clock,
            reconciles=self.reconciles,
        ):
            sub.full = True
            sub.event.set()

    def reconcile(self, s: Any, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """The device's ids in the buckets that differ: removes and upserts; after `done`, the
        `reconciled` frame (and the stamp stored)."""
        check = self.check
        if check is None or msg.get("check") != check.check_id:
            # Tagged with the check, so the device drops that answer and nothing else it awaits fails.
            return [error("bad_message", "There is no scope check with that id: pull again.", check=msg.get("check"))]
        model, principal, _ = self._context(s)
        frames = reconcile.reconcile(s, model, principal, check, msg.get("held", {}), self._now(), self.cursor or 0)
        if msg.get("done") is True:
            frames.append(reconcile.finish(s, model, self.device_id or "", check))
            s.commit()
            self.check = None
        return frames

    def wake(self) -> list[dict[str, Any]]:
        """After a commit elsewhere or a security change: the new changes for this device, and
        the scope check if one is due (nothing before its first pull).

        What the fan-out prepared (webapp/sync/fanout.py) is sent as it is — no query — when it
        starts at this device's cursor; otherwise, or when the hub says so (`full`), the device
        reads the feed for itself from its cursor, as a pull does."""
        if self.cursor is None or self.device_id is None:
            return []
        deliveries, full = self.subscription.take() if self.subscription is not None else ([], True)
        frames: list[dict[str, Any]] = []
        for delivery in deliveries:
            if delivery.upto <= self.cursor:
                continue  # a pull already brought it
            if delivery.start != self.cursor:
                full = True
                break
            frames += delivery.frames
            self.cursor = delivery.upto
        return frames + self._read() if full else frames

    def _read(self) -> list[dict[str, Any]]:
        """The device's own read of the feed from its cursor (then followed again if caught up)."""
        svc = self.services
        mark = self._mark()
        with svc.db.session() as s:
            if load_session(s, self.token) is None:
                raise Closing(1008, [error("unauthenticated", "The session has ended; sign in again.")])
            model, principal, _ = self._context(s)
            frames, cursor, plan, caught_up = self._feed(s, model, principal, self.cursor or 0)
        if plan.save is not None:  # rare (the epoch moved, no rule changed): a short write of its own
            with svc.db.session(write=True) as w:
                reconcile.save_stamp(w, self.org_id, self.device_id or "", plan.save)
                w.commit()
        self._started(cursor, plan.check)
        self._follow(model, principal, mark, caught_up)
        return [f for f in frames if f["type"] != "changes" or f["upserts"] or f["removes"]]

    def check_scope(self) -> list[dict[str, Any]]:
        """The `scope` check due for this device now, if any (see webapp/sync/reconcile.py).

        For a wake path that delivers changes without `wake` (which does this itself): call it
        when the hub says the scope of this socket's user changed, with the channel's `cursor`
        kept current. Opens its own session; three primary-key reads when nothing is due.
        """
        if self.cursor is None or self.device_id is None or not self.reconciles:
            return []
        svc = self.services
        with svc.db.session() as s:
            model, principal, _ = self._context(s)
            plan = self._plan(s, model, principal, self.cursor, self._now())
        if plan.save is not None:
            with svc.db.session(write=True) as w:
                reconcile.save_stamp(w, self.org_id, self.device_id, plan.save)
                w.commit()
        self._started(self.cursor, plan.check)
        return [plan.check.to_message()] if plan.check is not None else []

    def close_log(self, **extra: Any) -> None:
        """One structured line per sync session: a JSON object on the "outpost.sync" logger."""
        fields = {
            "event": "sync_session",
            "device": self.device_id,
            "user": self.user_id,
            "org": self.org_id,
            "ops": self.stats["ops"],
            "applied": self.stats["ops"] - self.stats["conflicts"] - self.stats["rejected"],
            "conflicts": self.stats["conflicts"],
            "rejected": self.stats["rejected"],
            "frames_received": self.stats["frames"],
            "duration_ms": round((time.monotonic() - self.started) * 1000),
            **extra,
        }
        log.info(json.dumps(fields, separators=(",", ":")), extra={"sync_session": fields})
