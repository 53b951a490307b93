"""Hostile input on the sync channel: malformed, mistyped, huge, prototype-polluting, deeply nested.

Channel level (hypothesis, no sockets): every frame a hostile device can send gets frames back
(never an exception), every error is a well-formed error frame with a known code, and the
server's data changes only by operations the server acknowledged as applied. Socket level (a
real server process): a hostile device's garbage — including a frame over 1 MiB, which closes
its socket with 1009 — leaves a well-behaved device on the same server syncing normally.

Deeper: `OUTPOST_FUZZ_EXAMPLES=5000 pytest tests/test_hostile_input.py`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import simple_websocket
from flask import Flask
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import Org
from tests.live import HttpSession, LiveServer, SyncClient
from tests.test_sync_replay import Device
from webapp import services
from webapp.crm.tables import changelog

EXAMPLES = int(os.environ.get("OUTPOST_FUZZ_EXAMPLES", "400"))
ERROR_CODES = {
    "bad_message",
    "bad_request",
    "unknown_type",
    "unauthenticated",
    "device_mismatch",
    "seq_gap",
    "seq_reused",
    "rate_limited",
    "validation_failed",
    "not_found",
    "forbidden",
}
NASTY_STRINGS = st.sampled_from(
    [
        "__proto__",
        "constructor",
        "prototype",
        "toString",
        "",
        "\x00",
        "x" * 100_000,
        "😀" * 1000,
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "account",
        "activitypointer",
        "systemuser",
        "nothing",
        "9" * 400,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    NASTY_STRINGS,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.one_of(st.text(max_size=8), NASTY_STRINGS), inner, max_size=4)
    ),
    max_leaves=12,
)
KINDS = st.sampled_from(["create", "update", "delete", "command", "__proto__", "drop", 1, None])
ENTITIES = st.sampled_from(["account", "contact", "lead", "__proto__", "constructor", "systemuser", "nothing", 7])
COMMANDS = st.sampled_from(["qualify_lead", "close_opportunity", "__proto__", "eval", None])


def field_or_junk(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(good, good, JSON)


@st.composite
def hostile_op(draw: st.DrawFn, seq: int) -> Any:
    """An operation: mostly a sound envelope with a hostile payload, sometimes a broken envelope."""
    if draw(st.integers(0, 3)) > 0:  # the envelope is right: the replay's own checks are reached
        kind = draw(st.sampled_from(["create", "create", "update", "delete", "command"]))
        op = {
            "op_id": str(draw(st.uuids())),
            "seq": seq,
            "kind": kind,
            "entity": draw(st.sampled_from(["account", "contact", "lead", "opportunity", "systemuser", "__proto__"])),
            "id": str(draw(st.uuids())),
            "base_version": draw(st.sampled_from([None, 1, 0, -1, "1"])),
            "changes": draw(
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(
                            ["name", "__proto__", "ownerid", "versionnumber", "revenue", "statecode", "zzz", "lastname"]
                        ),
                        JSON,
                        max_size=3,
                    ),
                    st.fixed_dictionaries({"name": st.one_of(st.text(max_size=20), NASTY_STRINGS)}),
                    JSON,
                )
            ),
        }
        if kind == "command":
            op["command"] = draw(COMMANDS)
            op["args"] = draw(st.one_of(JSON, st.fixed_dictionaries({"leadid": st.uuids().map(str)})))
        return op
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)  # not even an object
    op = {
        "op_id": draw(field_or_junk(st.uuids().map(str))),
        "seq": draw(field_or_junk(st.sampled_from([seq, seq, seq + 5, 0, -1]))),
        "kind": draw(KINDS),
        "entity": draw(ENTITIES),
        "id": draw(field_or_junk(st.uuids().map(str))),
        "base_version": draw(field_or_junk(st.sampled_from([None, 1, 0]))),
        "changes": draw(JSON),
    }
    if op["kind"] == "command" or draw(st.booleans()):
        op["command"] = draw(COMMANDS)
        op["args"] = draw(JSON)
    for key in draw(st.lists(st.sampled_from(sorted(op)), max_size=2)):
        op.pop(key, None)  # fields missing altogether
    return op


@st.composite
def hostile_batch(draw: st.DrawFn, next_seq: int) -> list[Any]:
    return [draw(hostile_op(next_seq + i)) for i in range(draw(st.integers(1, 3)))]


@st.composite
def hostile_frame(draw: st.DrawFn, next_seq: int) -> str:
    """A frame's text: broken JSON, a non-object, or a message with junk where values belong."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    "{not json",
                    "",
                    "null",
                    '"push"',
                    "[" * 100_000 + "]" * 100_000,  # nesting that would exhaust a recursive parser
                    '{"type": "push", "ops": ' + "[" * 50_000 + "]" * 50_000 + "}",
                    '{"type": "pull", "cursor": 1e999999}',
                    '{"type": "pull", "cursor": NaN}',
                    '{"__proto__": {"type": "push"}}',
                    '{"type": "hello", "type": "push"}',
                    "\ud800",
                ]
            )
        )
    if kind == 1:
        return json.dumps(draw(JSON))
    msg_type = draw(st.sampled_from(["push", "push", "push", "pull", "download", "hello", "ping", "__proto__"]))
    msg: dict[str, Any] = {"type": msg_type}
    if msg_type == "push":
        msg["ops"] = draw(st.one_of(hostile_batch(next_seq), hostile_batch(next_seq), JSON))
    elif msg_type == "pull":
        msg["cursor"] = draw(JSON)
    elif msg_type == "download":
        msg.update(entity=draw(ENTITIES), after=draw(JSON), limit=draw(field_or_junk(st.integers(-5, 10_000))))
    elif msg_type == "hello":
        msg.update(device_id=draw(JSON), org=draw(JSON), app_version=draw(JSON))
    msg.update(draw(st.dictionaries(st.sampled_from(["__proto__", "extra", "type2"]), JSON, max_size=2)))
    return json.dumps(msg)


def feed_size(app: Flask) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).select_from(changelog)).scalar_one())


def check_frames(frames: Any, next_seq: list[int]) -> int:
    """Every answer is well formed; returns how many operations the server says it applied."""
    assert isinstance(frames, list)
    applied = 0
    for frame in frames:
        json.dumps(frame)  # sendable
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES, frame
            assert isinstance(frame["message"], str) and frame["message"], frame
        elif frame["type"] == "ack":
            for result in frame["results"]:
                assert result["status"] in ("applied", "conflict", "rejected"), result
                if result["status"] == "rejected":
                    assert result["reason"]["code"] and result["reason"]["message"], result
                applied += result["status"] != "rejected"
                next_seq[0] = max(next_seq[0], result["seq"] + 1)
    return applied


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the channel fuzz runs on SQLite; the same channel code serves PostgreSQL")


@seed(20261128)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_frame_gets_well_formed_answers_and_changes_only_what_was_acknowledged(
    sqlite_only: None, app: Flask, org: Org, data: st.DataObject
) -> None:
    hostile = Device(app, org, org.bob)
    welcome = hostile.hello()
    next_seq = [welcome["next_seq"]]
    for _ in range(data.draw(st.integers(1, 4))):
        before = feed_size(app)
        text = data.draw(hostile_frame(next_seq[0]))
        frames = hostile.send(text)
        applied = check_frames(frames, next_seq)
        if applied == 0:  # nothing refused or rejected leaves a trace in the data
            assert feed_size(app) == before, frames
        else:  # (an applied delete of a record already gone changes nothing either)
            assert feed_size(app) >= before
    # The hostile channel still works, and a well-behaved device on the same server is unaffected.
    assert hostile.send({"type": "ping"}) == [{"type": "pong"}]
    good = Device(app, org, org.alice)
    good.hello()
    ack = good.push(good.op("create", "account", str(uuid.uuid4()), {"name": "Still fine"}))
    assert ack[0]["results"][0]["status"] == "applied", ack


# --- over a real socket --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("hostile")).start()
    yield live
    live.stop()


def test_a_hostile_device_leaves_a_good_device_on_the_same_server_syncing(server: LiveServer) -> None:
    good = SyncClient(HttpSession(server.base, "east1"))
    assert good.hello()["type"] == "welcome"
    watcher = SyncClient(HttpSession(server.base, "east2"))
    watcher.hello()
    caught_up = watcher.request({"type": "pull", "cursor": 0})
    while caught_up.get("more"):  # from now on the server pushes its changes live
        caught_up = watcher.request({"type": "pull", "cursor": caught_up["cursor"]})
    hostile = SyncClient(HttpSession(server.base, "west1"))
    hostile.hello()
    garbage = [
        "{not json",
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"type": "push", "ops": [{"__proto__": {"admin": True}}]}),
        json.dumps({"type": "push", "ops": "x" * 500_000}),
        json.dumps({"type": "download", "entity": "__proto__", "after": None, "limit": 10}),
        json.dumps({"type": "pull", "cursor": {"$gt": 0}}),
        json.dumps({"type": "constructor"}),
    ]
    seq = good.hello()["next_seq"]
    for i, text in enumerate(garbage):
        hostile.ws.send(text)
        answer = hostile.receive(timeout=30)
        assert answer["type"] == "error" and answer["code"] in ERROR_CODES, answer
        rid = str(uuid.uuid4())
        op = {
            "op_id": str(uuid.uuid4()),
            "seq": seq + i,
            "kind": "create",
            "entity": "account",
            "id": rid,
            "base_version": None,
            "changes": {"name": f"Good {i}"},
        }
        ack = good.request({"type": "push", "ops": [op]}, timeout=30)
        assert ack["type"] == "ack" and ack["results"][0]["status"] == "applied", ack
    hostile.ws.send(b"\x00\x01binary")  # a binary frame is not a JSON text
    assert hostile.receive(timeout=30)["code"] == "bad_message"
    hostile.ws.send('{"type":"ping","pad":"' + "x" * (1 << 20) + '"}')
    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        hostile.receive(timeout=30)
    assert closed.value.reason == 1009
    # The watcher got every good change, pushed live (it pulled once, so the server pushes the rest).
    names: set[str] = set()
    wanted = {f"Good {i}" for i in range(len(garbage))}
    while not wanted <= names:
        frame = watcher.receive(timeout=30)  # raises TimeoutError if a change never comes
        assert frame["type"] == "changes", frame
        names |= {u["record"].get("name") for u in frame["upserts"] if u["entity"] == "account"}
    good.close()
    watcher.close()
