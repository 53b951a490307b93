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

from benchmarks.live import HttpSession, LiveServer, SyncClient
from tests.conftest import Org
from tests.test_sync_replay import Device
from webapp.crm.tables import changelog
from webapp.services import services
from webapp.sync import stream

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
    msg_type = draw(
        st.sampled_from(
            ["push", "push", "push", "pull", "download", "stream", "stream_ack", "hello", "ping", "__proto__"]
        )
    )
    msg: dict[str, Any] = {"type": msg_type}
    if msg_type == "push":
        msg["ops"] = draw(st.one_of(hostile_batch(next_seq), hostile_batch(next_seq), JSON))
    elif msg_type == "pull":
        msg["cursor"] = draw(JSON)
    elif msg_type == "download":
        msg.update(entity=draw(ENTITIES), after=draw(JSON), limit=draw(field_or_junk(st.integers(-5, 10_000))))
    elif msg_type == "stream":
        msg.update(
            entity=draw(ENTITIES),
            after=draw(JSON),
            limit=draw(field_or_junk(st.integers(-5, 10_000))),
            window=draw(field_or_junk(st.integers(-2, 20))),
        )
    elif msg_type == "stream_ack":
        msg.update(entity=draw(ENTITIES), n=draw(field_or_junk(st.integers(-2, 5))))
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
        elif frame["type"] == "rows":  # a streamed page decodes to records, one a row
            assert all(len(row) == len(frame["columns"]) for row in frame["rows"]), frame
            assert len(stream.decode(frame)) == len(frame["rows"]), frame
        elif frame["type"] == "ack":
            for result in frame["results"]:
                assert result["status"] in ("applied", "conflict", "rejected"), result
                if result["status"] == "rejected":
                    assert result["reason"]["code"] and result["reason"]["message"], result
                applied += result["status"] != "rejected"
                next_seq[0] = max(next_seq[0], result["seq"] + 1)
    return applied


@pytest.fixture
def many_devices(app: Flask) -> None:
    """Each example is a new device of the same user: the fuzz would meet the per-user device cap
    (test_caps.py tests it) after 50 examples and stop exercising the frames."""
    app.config["MAX_DEVICES_PER_USER"] = 1_000_000


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
    sqlite_only: None, many_devices: None, app: Flask, org: Org, data: st.DataObject
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
        json.dumps({"type": "stream", "entity": "__proto__", "after": None, "limit": 10, "window": 3}),
        json.dumps({"type": "stream_ack", "entity": "account", "n": 0}),
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


# --- numbers no database column holds, strings no UTF-8 can carry (issue 17) ---------------------

HUGE = 2**70
LONE = "\ud800"  # a lone surrogate: valid in a JSON escape, impossible in UTF-8


def untouched_frames(device: Device) -> list[tuple[str, dict[str, Any]]]:
    """(what, frame) for every frame type, each carrying one value the database cannot hold."""
    rid = str(uuid.uuid4())

    def op(**kw: Any) -> dict[str, Any]:
        base = {
            "op_id": str(uuid.uuid4()),
            "seq": device.seq + 1,
            "kind": "create",
            "entity": "account",
            "id": rid,
            "base_version": None,
            "changes": {"name": "fine"},
        }
        return {**base, **kw}

    return [
        (
            "hello pending_ops",
            {"type": "hello", "device_id": device.device_id, "app_version": "t", "pending_ops": HUGE},
        ),
        ("hello cursor", {"type": "hello", "device_id": device.device_id, "app_version": "t", "cursor": HUGE}),
        ("hello app_version", {"type": "hello", "device_id": device.device_id, "app_version": LONE}),
        ("pull cursor", {"type": "pull", "cursor": HUGE}),
        ("pull cursor, negative", {"type": "pull", "cursor": -HUGE}),
        ("push seq", {"type": "push", "ops": [op(seq=HUGE)]}),
        ("push base_version", {"type": "push", "ops": [op(kind="update", base_version=HUGE)]}),
        (
            "push changes, a huge number",
            {"type": "push", "ops": [op(changes={"name": "x", "numberofemployees": HUGE})]},
        ),
        ("push changes, a lone surrogate", {"type": "push", "ops": [op(changes={"name": "a" + LONE})]}),
        ("push changes, a lone surrogate key", {"type": "push", "ops": [op(changes={LONE: "x"})]}),
        ("push op_id", {"type": "push", "ops": [op(op_id=LONE)]}),
        (
            "push command args",
            {"type": "push", "ops": [op(kind="command", command="qualify_lead", args={"leadid": LONE})]},
        ),
        ("download after", {"type": "download", "entity": "account", "after": LONE, "limit": 10}),
        ("download limit", {"type": "download", "entity": "account", "after": None, "limit": HUGE}),
        ("stream after", {"type": "stream", "entity": "account", "after": LONE, "limit": 10, "window": 2}),
        ("stream window", {"type": "stream", "entity": "account", "after": None, "limit": 10, "window": HUGE}),
        ("stream_ack n", {"type": "stream_ack", "entity": "account", "n": HUGE}),
        ("reconcile check", {"type": "reconcile", "check": HUGE, "held": {}, "done": True}),
        ("reconcile held", {"type": "reconcile", "check": "x", "held": {"account": {LONE: [LONE]}}, "done": True}),
        ("ping with junk", {"type": "ping", "n": HUGE}),
        ("a lone surrogate type", {"type": LONE}),
    ]


@pytest.mark.parametrize("index", range(21))
def test_a_huge_integer_or_a_lone_surrogate_in_any_frame_is_a_bad_message_and_the_session_goes_on(
    app: Flask, org: Org, index: int
) -> None:
    device = Device(app, org, org.alice)
    device.hello()
    what, frame = untouched_frames(device)[index]
    before = feed_size(app)
    frames = device.send(frame)  # today: OverflowError / UnicodeEncodeError out of the channel
    assert [f["type"] for f in frames] in (["error"], ["pong"]), (what, frames)
    if frames[0]["type"] == "error":
        assert frames[0]["code"] == "bad_message", (what, frames)
    assert feed_size(app) == before, what
    # The same session goes on: it answers, and its next good operation applies.
    assert device.send({"type": "ping"}) == [{"type": "pong"}]
    ack = device.push(device.op("create", "account", str(uuid.uuid4()), {"name": "after " + what}))
    assert ack[0]["results"][0]["status"] == "applied", (what, ack)


# The fuzz profile of issue 17: huge integers and lone surrogates in every frame type. Short and
# seeded in the default run; `-m slow` runs the deep one.
POISON = st.sampled_from(
    [
        2**70,
        -(2**70),
        2**63,
        -(2**63) - 1,
        2**63 - 1,  # the widest that is accepted: it must reach the handlers and still be refused cleanly
        -(2**63),
        2**31,
        2**31 - 1,
        -(2**31) - 1,
        10**30,
        1e308,
        -1e308,
        float("nan"),
        float("inf"),
        "\ud800",
        "\udfff",
        "a\udc80b",
        "😀\ud83d",
        "\ud83d\ude00",  # a well-formed pair: fine
    ]
)
POISONED_JSON = st.recursive(
    st.one_of(POISON, SCALARS),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.one_of(st.text(max_size=6), POISON.filter(lambda v: isinstance(v, str))), inner, max_size=3
        )
    ),
    max_leaves=8,
)


def poisoned(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value, often a poisoned one instead, sometimes poison nested in junk."""
    return st.one_of(good, POISON, POISON, POISONED_JSON)


@st.composite
def poisoned_op(draw: st.DrawFn, seq: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["create", "update", "delete", "command"]))
    op: dict[str, Any] = {
        "op_id": draw(poisoned(st.uuids().map(str))),
        "seq": draw(poisoned(st.just(seq))),
        "kind": kind,
        "entity": draw(poisoned(st.sampled_from(["account", "contact", "lead", "opportunity"]))),
        "id": draw(poisoned(st.uuids().map(str))),
        "base_version": draw(poisoned(st.sampled_from([None, 1]))),
        "changes": draw(
            poisoned(
                st.dictionaries(
                    st.sampled_from(["name", "lastname", "numberofemployees", "revenue", "telephone1", "description"]),
                    poisoned(st.one_of(st.text(max_size=10), st.integers(-5, 5))),
                    max_size=3,
                )
            )
        ),
    }
    if kind == "command":
        op["command"] = draw(poisoned(st.sampled_from(["qualify_lead", "close_opportunity", "disqualify_lead"])))
        op["args"] = draw(
            poisoned(
                st.dictionaries(st.sampled_from(["leadid", "status", "actualvalue", "statuscode"]), POISON, max_size=2)
            )
        )
    return op


@st.composite
def poisoned_frame(draw: st.DrawFn, device_id: str, next_seq: int) -> dict[str, Any]:
    """Every frame type of PROTOCOL.md §5 with poison where its values go."""
    msg_type = draw(
        st.sampled_from(["hello", "push", "download", "stream", "stream_ack", "pull", "reconcile", "ping", "pong"])
    )
    msg: dict[str, Any] = {"type": msg_type}
    if msg_type == "hello":
        msg.update(
            device_id=draw(poisoned(st.just(device_id))),
            org=draw(poisoned(st.just("contoso"))),
            app_version=draw(poisoned(st.just("1.0"))),
            cursor=draw(poisoned(st.integers(0, 10))),
            metadata_version=draw(poisoned(st.text(max_size=5))),
            pending_ops=draw(poisoned(st.integers(0, 10))),
        )
    elif msg_type == "push":
        msg["ops"] = draw(st.one_of(st.lists(poisoned_op(next_seq), min_size=1, max_size=2), POISONED_JSON))
    elif msg_type == "download":
        msg.update(
            entity=draw(poisoned(st.sampled_from(["account", "contact"]))),
            after=draw(poisoned(st.one_of(st.none(), st.uuids().map(str)))),
            limit=draw(poisoned(st.integers(1, 50))),
        )
    elif msg_type == "stream":
        msg.update(
            entity=draw(poisoned(st.sampled_from(["account", "contact"]))),
            after=draw(poisoned(st.one_of(st.none(), st.uuids().map(str)))),
            limit=draw(poisoned(st.integers(1, 50))),
            window=draw(poisoned(st.integers(1, 8))),
        )
    elif msg_type == "stream_ack":
        msg.update(entity=draw(poisoned(st.sampled_from(["account", "contact"]))), n=draw(poisoned(st.integers(0, 3))))
    elif msg_type == "pull":
        msg.update(cursor=draw(poisoned(st.integers(0, 10))), scope=draw(poisoned(st.just(1))))
    elif msg_type == "reconcile":
        msg.update(
            check=draw(poisoned(st.text(max_size=5))),
            held=draw(poisoned(st.just({"account": {"": []}}))),
            done=draw(poisoned(st.booleans())),
        )
    else:
        msg.update(draw(st.dictionaries(st.sampled_from(["n", "t"]), POISON, max_size=1)))
    return msg


def poison_fuzz(app: Flask, org: Org, data: st.DataObject) -> None:
    device = Device(app, org, org.bob)
    next_seq = [device.hello()["next_seq"]]
    for _ in range(data.draw(st.integers(1, 4))):
        before = feed_size(app)
        frames = device.send(json.dumps(data.draw(poisoned_frame(device.device_id, next_seq[0]))))
        applied = check_frames(frames, next_seq)
        if applied == 0:
            assert feed_size(app) == before, frames
    # The session is still the same good one.
    assert device.send({"type": "ping"}) == [{"type": "pong"}]
    device.seq = next_seq[0] - 1
    ack = device.push(device.op("create", "account", str(uuid.uuid4()), {"name": "Still here"}))
    assert ack[0]["results"][0]["status"] == "applied", ack


POISON_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@seed(20261203)
@settings(POISON_SETTINGS, max_examples=int(os.environ.get("OUTPOST_FUZZ_EXAMPLES", "150")))
@given(data=st.data())
def test_huge_integers_and_lone_surrogates_in_every_frame_type_get_error_frames_and_the_session_goes_on(
    many_devices: None, app: Flask, org: Org, data: st.DataObject
) -> None:
    poison_fuzz(app, org, data)


@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="a deep run: select it with -m slow")
@settings(POISON_SETTINGS, max_examples=3000)
@given(data=st.data())
def test_huge_integers_and_lone_surrogates_in_every_frame_type_deep(
    sqlite_only: None, many_devices: None, app: Flask, org: Org, data: st.DataObject
) -> None:
    """The deep run (`-m slow`): unseeded, 3,000 examples."""
    poison_fuzz(app, org, data)


def test_an_op_whose_args_are_not_an_object_is_refused_and_the_session_goes_on(
    many_devices: None, app: Flask, org: Org
) -> None:
    """Found by the frame fuzz: `args: true` on an op once crashed the replay (AttributeError)."""
    device = Device(app, org, org.bob)
    device.hello()
    op = {"op_id": str(uuid.uuid4()), "seq": 1, "kind": "create", "entity": "account", "id": str(uuid.uuid4())}
    op.update(base_version=None, changes=None, command="qualify_lead", args=True)
    frames = device.send({"type": "push", "ops": [op]})
    results = [r for f in frames if f["type"] == "ack" for r in f["results"]]
    errors = [f for f in frames if f["type"] == "error"]
    assert [r["status"] for r in results] == ["rejected"] or errors, frames
    assert device.send({"type": "ping"}) == [{"type": "pong"}]
