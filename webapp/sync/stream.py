"""The streamed first download (issue 14; docs/protocol.md §5 "Streamed download").

The device asks once (`stream {entity, after, limit, window}`) and the server sends `window`
pages at once, then one more for each page the device acknowledges (`stream_ack {entity, n}`,
sent once the page is committed to IndexedDB): a few pages are always in flight, so the
server reads the next pages while the device writes, and a slow device is never flooded.

Each page is encoded compactly (`rows`): the attribute names once (`columns`), each record as
an array of values in that order; an attribute a record lacks is listed in `absent`, so the
device rebuilds exactly the records of the `page` frame. Pages are keyed by primary id as in
webapp/sync/download.py, so a stream cut anywhere resumes from the last page the device
committed. The frame's text begins with `{"type":"rows"` so the device can hand it unparsed to
its download worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from webapp.crm.errors import BadRequest
from webapp.crm.registry import OrgModel
from webapp.security.scope import Principal
from webapp.sync.download import MAX_PAGE, download_page

MAX_WINDOW = 8


@dataclass
class Stream:
    """One entity's download stream on a channel: where the next page starts, what was sent."""

    entity: str
    after: str | None
    limit: int
    sent: int = 0  # pages sent so far (the next page's `n`)
    acked: int = 0  # pages the device acknowledged
    done: bool = False  # the last page was sent


def encode(page: dict[str, Any], n: int) -> dict[str, Any]:
    """A `page` (download.py) as a `rows` frame: names once, each record an array."""
    records = page["records"]
    columns: list[str] = []
    index: dict[str, int] = {}
    for record in records:
        for key in record:
            if key not in index:
                index[key] = len(columns)
                columns.append(key)
    rows = []
    absent: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        rows.append([record.get(c) for c in columns])
        if len(record) != len(columns):
            absent[str(i)] = [j for j, c in enumerate(columns) if c not in record]
    frame: dict[str, Any] = {"type": "rows", "entity": page["entity"], "n": n, "columns": columns, "rows": rows}
    if absent:
        frame["absent"] = absent
    frame.update(next=page["next"], total=page["total"], cursor=page["cursor"])
    return frame


def _whole(value: Any, low: int, high: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.")
    return value


def _next(s: Session, model: OrgModel, p: Principal, stream: Stream) -> dict[str, Any]:
    page = download_page(s, model, p, stream.entity, stream.after, stream.limit)
    frame = encode(page, stream.sent)
    stream.sent += 1
    stream.after = page["next"]
    stream.done = page["next"] is None
    return frame


def start(s: Session, model: OrgModel, p: Principal, msg: dict[str, Any]) -> tuple[Stream, list[dict[str, Any]]]:
    """A new stream (replacing any other on the channel) and its first `window` pages."""
    limit = _whole(msg.get("limit", 1000), 1, MAX_PAGE, "limit")
    window = _whole(msg.get("window", 1), 1, MAX_WINDOW, "window")
    after = msg.get("after")
    if after is not None and not isinstance(after, str):
        raise BadRequest("after must be a record id or null.")
    stream = Stream(msg.get("entity"), after, limit)  # type: ignore[arg-type]  # download_page checks it
    frames = [_next(s, model, p, stream)]
    while len(frames) < window and not stream.done:
        frames.append(_next(s, model, p, stream))
    return stream, frames


def ack(s: Session, model: OrgModel, p: Principal, stream: Stream | None, msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The device committed page `n`: the next page, if the entity has more."""
    if stream is None or msg.get("entity") != stream.entity:
        raise BadRequest("There is no download stream of that entity: send stream first.")
    n = msg.get("n")
    if n != stream.acked or isinstance(n, bool) or stream.acked >= stream.sent:
        raise BadRequest(f"stream_ack expects n = {stream.acked}, the oldest page in flight.")
    stream.acked += 1
    return [] if stream.done else [_next(s, model, p, stream)]


def decode(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a `rows` frame (what the device's downloadpage.js `decode` rebuilds), for
    protocol-level clients and tests."""
    columns = frame["columns"]
    absent = frame.get("absent") or {}
    out = []
    for i, row in enumerate(frame["rows"]):
        skip = set(absent.get(str(i), ()))
        out.append({c: v for j, (c, v) in enumerate(zip(columns, row, strict=True)) if j not in skip})
    return out
