"""The sync model's phones (tests/test_sync_model.py): the device's real store in Chromium.

Each `Phone` is a real device store — store.js, records.js, queue.js, viewcache.js and rules.js,
unchanged, in one IndexedDB database per phone — driven through tests/model_phone.js in one
headless Chromium page. The store decides everything a phone shows and holds: the views with
the pending operations on top, each op's base version, how an ack, a feed or a download page
rebases them. This module keeps none of those rules; it carries frames, as JSON text through an
outbox and an inbox (so the test can delay, repeat or lose them), and plays the sync loop's
protocol part (cursor, first-download paging) as sync.js does. The page loads the modules from
webapp/static through Playwright routes on http://localhost (a secure context, for
`crypto.randomUUID`), so no server process is needed.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route

from tests.sync_model import bind_attribute, parse_bind

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "http://localhost"
SERVED = {"/static/": ROOT / "webapp" / "static", "/tests/": ROOT / "tests"}
# Arguments and answers cross as JSON text: much faster than Playwright's own serialisation.
BATCH = "async (text) => JSON.stringify(await window.phones.batch(JSON.parse(text)))"


def new_id() -> str:
    """A lower-case UUID (a device id)."""
    return str(uuid.uuid4())


def last_written(entity: str, effects: list[dict[str, Any]]) -> dict[str, Any]:
    """The value each field has in the last pending effect writing it, as the view holds it
    (a lookup's bind as `_x_value`, the id)."""
    out: dict[str, Any] = {}
    for e in effects:
        for wire_key, value in e["changes"].items():
            if wire_key.endswith("@odata.bind"):
                target = parse_bind(value)
                out[f"_{bind_attribute(entity, wire_key)[0]}_value"] = target[1] if target else None
            else:
                out[wire_key] = value
    return out


def _serve(route: Route) -> None:
    """The page's files: a blank page, and the modules from webapp/static and tests/."""
    path = route.request.url[len(ORIGIN) :].split("?")[0]
    for prefix, folder in SERVED.items():
        if path.startswith(prefix):
            file = (folder / path[len(prefix) :]).resolve()
            if file.is_relative_to(folder) and file.is_file():
                kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file.name)[0]
                route.fulfill(status=200, body=file.read_bytes(), content_type=kind or "application/octet-stream")
                return
    if path == "/":
        route.fulfill(status=200, body="<!doctype html><title>sync model</title>", content_type="text/html")
    else:
        route.fulfill(status=404, body="")


class Device:
    """One Chromium page holding every phone's store. Calls to tests/model_phone.js wait in
    `queued` and go in one round trip, when an answer or a phone's state is needed: a round
    trip costs more than the store's work, and the model reads the phones at nearly every step."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.queued: list[list[Any]] = []
        self.dirty: dict[str, Phone] = {}  # phones whose state the queued calls change
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        page.evaluate("async () => { window.phones = await import('/tests/model_phone.js'); }")

    def reset(self) -> None:
        """A new run: calls left from a failed one are dropped, and every store goes."""
        self.queued, self.dirty = [["reset", [], None, None]], {}

    def later(self, phone: Phone | None, fn: str, *args: Any) -> None:
        """Queue a call; `phone`'s state is reported and checked after it."""
        self.queued.append([fn, list(args), phone and phone.name, phone and phone.entities])
        if phone is not None:
            self.dirty[phone.name] = phone

    def call(self, fn: str, *args: Any) -> Any:
        """Run every queued call, then this one, and return its answer."""
        self.queued.append([fn, list(args), None, None])
        return self.flush()[-1]

    def flush(self) -> list[Any]:
        """Run the queued calls in one round trip and check every state a phone passed through."""
        calls, phones = self.queued, self.dirty
        if not calls:
            return []
        self.queued, self.dirty = [], {}
        out = json.loads(self.page.evaluate(BATCH, json.dumps(calls)))
        for name, state in out["states"]:
            phones[name].took(state)
        return list(out["results"])


@dataclass
class Phone:
    """One device store of one user, and its side of the protocol."""

    name: str
    user: dict[str, str]  # id, username, business_unit_id (what a device knows of its user)
    token: str
    device: Device
    entities: list[str]  # the entities the model compares
    primary: dict[str, str]  # their primary id attributes
    device_id: str = field(default_factory=new_id)
    cursor: int | None = None
    channel: Any = None  # the live Channel, None while disconnected
    outbox: list[str] = field(default_factory=list)  # sent, not yet delivered
    inbox: list[dict[str, Any]] = field(default_factory=list)  # answered, not yet read
    downloading: list[str] = field(default_factory=list)  # entities left in the first download
    download_after: str | None = None
    download_cursor: int | None = None
    pushes: list[str] = field(default_factory=list)  # every push frame sent, to repeat one
    more: bool = False  # the last changes frame said more follow
    known: dict[str, Any] = field(default_factory=dict)  # what the store held after the last call

    @property
    def user_id(self) -> str:
        return self.user["id"]

    def open(self) -> None:
        """A new, empty store on a database of its own."""
        self.device.later(self, "open", self.name, self.user)

    def destroy(self) -> None:
        """Delete the store (the phone is reconfigured)."""
        self.device.later(None, "destroy", self.name)

    def took(self, state: dict[str, Any]) -> None:
        """Keep what the store reports, once it shows what DESIGN.md §5 promises (checked after every
        batch of calls; a property of what the user sees, not a second rebase):

        - the views the store serves from memory are the rows it stored, in id order;
        - a record nothing pending touches shows exactly as the server last confirmed it;
        - an unsynced edit is never hidden: a record whose last pending effect deletes it does
          not show, and while a record shows, every field a pending effect wrote shows the
          value last written.
        """
        written: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for op in state["ops"]:
            for e in op["effects"]:
                written.setdefault((e["entity"], e["id"]), []).append(e)
        for entity in self.entities:
            views = state["views"][entity]
            stored = state["stored"].get(entity, {})
            held = state["held"].get(entity, {})
            key = self.primary[entity]
            where = f"{self.name} {entity}"
            assert [v[key] for v in views] == sorted(stored), f"{where}: views out of id order"
            assert {v[key]: v for v in views} == stored, f"{where}: the views kept != the rows stored"
            for rid in set(stored) | set(held):
                effects = written.get((entity, rid))
                if not effects:
                    assert stored.get(rid) == held.get(rid), (
                        f"{where} {rid}: shows {stored.get(rid)}, confirmed {held.get(rid)}"
                    )
                    continue
                view = stored.get(rid)
                if effects[-1]["kind"] == "delete":
                    assert view is None, f"{where} {rid}: deleted on the device, still shows {view}"
                elif view is not None:
                    for field_name, value in last_written(entity, effects).items():
                        assert view.get(field_name) == value, (
                            f"{where} {rid}: {field_name} shows {view.get(field_name)!r}, pending {value!r}"
                        )
        self.known = state

    @property
    def state(self) -> dict[str, Any]:
        """What the store holds now (queued calls run first)."""
        if self.name in self.device.dirty:
            self.device.flush()
        return self.known

    # --- what the user sees -------------------------------------------------------------

    def views(self, entity: str) -> list[dict[str, Any]]:
        """Every record of an entity the user sees, in id order (store.all)."""
        return list(self.state["views"][entity])

    def held(self, entity: str) -> dict[str, dict[str, Any]]:
        """The records the store holds as the server confirmed them (after the queue drained: all it holds)."""
        return dict(self.state["held"].get(entity, {}))

    def pending_ids(self, entity: str) -> set[str]:
        """The ids of an entity some queued op's effects touch."""
        return {e["id"] for op in self.state["ops"] for e in op["effects"] if e["entity"] == entity}

    @property
    def queued(self) -> int:
        return len(self.state["ops"])

    # --- local writes (store.write) -----------------------------------------------------

    def write(self, kind: str, entity: str, record_id: str, changes: dict[str, Any], **extra: Any) -> None:
        """A user's write through the store: a local effect and a queued op, in one transaction."""
        self.device.later(self, "write", self.name, [kind, entity, record_id, changes, extra])

    # --- frames out ---------------------------------------------------------------------

    def send(self, msg: dict[str, Any]) -> None:
        """Put a frame on the wire (it reaches the server when the test delivers it)."""
        text = json.dumps(msg)
        self.outbox.append(text)
        if msg["type"] == "push":
            self.pushes.append(text)

    def push(self, count: int) -> None:
        """Push the first `count` queued operations, as the store hands them out."""
        ops = self.device.call("pending", self.name, count) if count else []
        if ops:
            self.send({"type": "push", "ops": ops})

    def pull(self) -> None:
        """Ask for the changes after the cursor."""
        self.send({"type": "pull", "cursor": self.cursor or 0})

    def request_page(self) -> None:
        """Ask for the next page of the first download."""
        self.send({"type": "download", "entity": self.downloading[0], "after": self.download_after, "limit": 2})

    # --- frames in ----------------------------------------------------------------------

    def read(self, frames: list[dict[str, Any]]) -> None:
        """Handle frames from the server, in order, the way sync.js does: the store applies them
        (one call for all); the cursor and the first download's paging move here."""
        if not frames:
            return
        for frame in frames:
            if frame["type"] == "error":
                raise AssertionError(f"{self.name} got an error frame: {frame}")
        for frame in frames:
            self.device.later(self, "read", self.name, [frame])
        for frame in frames:
            if frame["type"] == "changes":
                self.cursor = frame["cursor"]
                self.more = frame["more"]
            elif frame["type"] == "page":
                self._paged(frame)

    def _paged(self, frame: dict[str, Any]) -> None:
        """A download page was stored: ask for the next, or pull from the older cursor once done
        (repeated changes are harmless, missed ones are not)."""
        start = self.download_cursor
        self.download_cursor = frame["cursor"] if start is None else min(start, frame["cursor"])
        self.download_after = frame["next"]
        if frame["next"] is None:
            self.downloading.pop(0)
        if self.downloading:
            self.request_page()
        else:
            done = self.download_cursor or 0
            self.cursor = done if self.cursor is None else min(self.cursor, done)
            self.download_cursor = None
