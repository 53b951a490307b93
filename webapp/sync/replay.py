"""Replaying a device's queued operations: in `seq` order, exactly once, as the user.

Every operation passes the same checks as the Web API (`webapp.security.operations`), the
entity's offline command set and the metadata schema. The idempotency ledger keeps
`(device, seq) -> first result`, written in the same transaction as the operation's
effects, so a re-sent operation gets its first status again and is never applied twice,
and a crash loses an operation and its ledger row together. The answer to a re-sent operation
carries its records as the server has them now, not as they were then. A rejected operation
never blocks the queue; operations that depend on a rejected create are rejected too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from webapp import metrics
from webapp.crm import records
from webapp.crm.changes import utcnow
from webapp.crm.commands import COMMAND_ENTITY, COMMAND_NEW_ENTITIES, subject_id
from webapp.crm.epoch import STRUCTURE_FIELDS
from webapp.crm.errors import CrmError, NotFound
from webapp.crm.metadata import Entity
from webapp.crm.records import Actor
from webapp.crm.registry import OrgModel
from webapp.crm.tables import changelog
from webapp.security import operations as ops
from webapp.security.operations import read_condition
from webapp.security.scope import Principal
from webapp.sync import devices, stale
from webapp.sync.batch import Batch, Slow
from webapp.sync.conflicts import change_key_attribute, server_changed_fields, split_changes
from webapp.sync.devices import next_seq
from webapp.sync.hub import Hub
from webapp.sync.profile import is_offline
from webapp.sync.tables import opledger, syncerror

MAX_OPS = 500
KINDS = ("create", "update", "delete", "command")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class PushError(Exception):
    """A push that stops at an operation: the error frame to send (after acking what applied)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.frame = {"type": "error", "code": code, "message": message, **extra}


@dataclass
class Replay:
    """One push's context: who, which device, and what this push already rejected."""

    session: Session
    model: OrgModel
    principal: Principal
    actor: Actor
    device_id: str
    rejected_creates: set[str] = field(default_factory=set)
    batch: Batch = field(init=False)
    # Records of this frame's answers still as rows: serialised together once the writes are sent.
    unwired: list[tuple[Entity, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.batch = Batch(self.session, self.model, self.principal, self.actor)

    @property
    def conflict_detection(self) -> bool:
        """The organisation's setting: server wins (True) or client wins (False)."""
        return bool(self.model.settings.get("conflict_detection", False))


def validate_ops(ops_: Any) -> list[dict[str, Any]]:
    """Check the shape of every operation before any is applied (a bad batch changes nothing)."""
    if not isinstance(ops_, list) or not ops_:
        raise PushError("bad_message", "push needs a non-empty list 'ops'.")
    if len(ops_) > MAX_OPS:
        raise PushError("bad_message", f"push takes at most {MAX_OPS} operations.")
    for i, op in enumerate(ops_):
        where = f"ops[{i}]"
        if not isinstance(op, dict):
            raise PushError("bad_message", f"{where} must be an object.", index=i)
        seq = op.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise PushError("bad_message", f"{where}.seq must be a whole number from 1.", index=i)
        if not isinstance(op.get("op_id"), str) or not 1 <= len(op["op_id"]) <= 64:
            raise PushError("bad_message", f"{where}.op_id must be a string of 1-64 characters.", index=i)
        if op.get("kind") not in KINDS:
            raise PushError("bad_message", f"{where}.kind must be one of {', '.join(KINDS)}.", index=i)
        if not isinstance(op.get("entity"), str) or len(op["entity"]) > 64:
            raise PushError("bad_message", f"{where}.entity must be an entity name.", index=i)
        if not isinstance(op.get("id"), str) or not UUID_RE.match(op["id"]):
            raise PushError("bad_message", f"{where}.id must be a lower-case UUID.", index=i)
        base = op.get("base_version")
        if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 0):
            raise PushError("bad_message", f"{where}.base_version must be a whole number or null.", index=i)
        changes = op.get("changes", {})
        if changes is None:
            changes = {}
        if not isinstance(changes, dict):
            raise PushError("bad_message", f"{where}.changes must be an object.", index=i)
        if op["kind"] == "command" and (
            not isinstance(op.get("command"), str) or not isinstance(op.get("args", {}), dict)
        ):
            raise PushError(
                "bad_message", f"{where}: a command needs 'command' (a name) and 'args' (an object).", index=i
            )
    seqs = [op["seq"] for op in ops_]
    if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
        raise PushError("bad_message", "operations must be in increasing seq order without repeats.")
    return ops_


def over_rate(app: Flask, org_id: str, user_id: str, ops_: Any) -> float | None:
    """Seconds to wait when this user's operations are over their rate (None: go ahead); the
    socket and HTTP both ask before they open a transaction, and nothing of the batch applies."""
    if not app.config["RATE_LIMITS"] or not isinstance(ops_, list):
        return None
    from webapp.ratelimit import limits

    return limits(app).operations.take((org_id, user_id), len(ops_))


def push_batch(hub: Hub, replay: Replay, ops_: Any) -> tuple[list[dict[str, Any]], PushError | None]:
    """The one push pipeline, for the socket and `POST /api/sync/push` alike.

    Both callers first check the session and the user's operation rate (`over_rate`, before any
    transaction) and register the device (the socket at hello, HTTP with each request). Then,
    here: note the device's sync unless it was revoked (`devices.start_push` raises Revoked,
    nothing applied), replay the batch, commit (the ledger with the effects), then wake the
    organisation's connections — here at once, in other processes by a NOTIFY sent only if the
    commit is.

    Returns what to ack and the error that stopped the batch, if any; a batch refused as a
    whole raises PushError (or Revoked) with nothing applied (the caller rolls back).
    """
    s = replay.session
    devices.start_push(s, replay.device_id)
    results, stopped = push(replay, ops_)
    if results:
        hub.publish(s, "changed", replay.model.org_id)
    s.commit()
    if results:
        hub.notify(replay.model.org_id)
    return results, stopped


def push(replay: Replay, ops_: Any) -> tuple[list[dict[str, Any]], PushError | None]:
    """Apply a batch in seq order; returns the results to ack and the error that stopped it, if any.

    The whole frame is one transaction: its records are loaded once (`webapp.sync.batch`),
    creates and updates are checked against them and buffered, and the writes, the ledger rows
    and any sync errors go out in a few statements at the end. The caller commits after this
    returns and only then sends the ack.
    """
    batch = validate_ops(ops_)
    s = replay.session
    replay.rejected_creates |= set(
        s.execute(
            select(opledger.c.recordid).where(
                opledger.c.deviceid == replay.device_id, opledger.c.kind == "create", opledger.c.status == "rejected"
            )
        ).scalars()
    )
    expected = next_seq(s, replay.device_id)
    firsts = {
        row.seq: row
        for row in s.execute(
            select(opledger.c.seq, opledger.c.op_id, opledger.c.result).where(
                opledger.c.deviceid == replay.device_id, opledger.c.seq.in_([op["seq"] for op in batch])
            )
        )
    }
    replay.batch.preload([op for op in batch if op["seq"] not in firsts])
    results: list[dict[str, Any]] = []
    applied: list[tuple[dict[str, Any], dict[str, Any]]] = []
    stopped: PushError | None = None
    for op in batch:
        first = firsts.get(op["seq"])
        if first is not None:
            if first.op_id != op["op_id"]:
                stopped = PushError(
                    "seq_reused", f"seq {op['seq']} was already used by another operation.", seq=op["seq"]
                )
                break
            results.append(resent_result(replay, first.result))  # a re-sent op: nothing applied again
            continue
        if op["seq"] != expected:
            stopped = PushError(
                "seq_gap",
                f"Expected seq {expected}, got {op['seq']}; nothing from the gap on was applied.",
                expected_seq=expected,
            )
            break
        result = apply_one(replay, op)
        applied.append((op, result))
        results.append(result)
        expected += 1
    finish(replay, applied)
    return results, stopped


def finish(replay: Replay, applied: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Send the buffered writes, serialise the answers' records (lookup names: one query per
    target entity), then store the ledger rows and sync errors, one statement each."""
    s, m, p = replay.session, replay.model, replay.principal
    replay.batch.flush()
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for entity, item in replay.unwired:
        by_entity.setdefault(entity.logical_name, []).append(item)
    for name, items in by_entity.items():
        wired = ops.to_wire_many(s, m, p, m.entity(name), [item["record"] for item in items])
        for item, record in zip(items, wired, strict=True):
            item["record"] = record
    replay.unwired.clear()
    record_results(replay, applied)


def _row_view(replay: Replay, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A record of an answer, serialised in `finish` with the others."""
    item = {"entity": entity.logical_name, "record": row}
    replay.unwired.append((entity, item))
    return item


def resent_result(replay: Replay, first: dict[str, Any]) -> dict[str, Any]:
    """A re-sent op's answer: its first status and reason, with its records as the server has them now.

    The first answer's records may be stale by now: deleted since, or out of the user's scope. A
    device whose ack was lost pulls before it pushes again, and would take those records back
    from a stale answer after the feed had removed them — and keep them for good.
    """
    touched: dict[tuple[str, str], None] = {}
    for item in first.get("records") or []:
        entity = replay.model.entities.get(item["entity"])
        if entity is not None:
            touched[(entity.logical_name, item["record"][entity.primary_id])] = None
    for item in first.get("removed") or []:
        touched[(item["entity"], item["id"])] = None
    records: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for entity_name, record_id in touched:
        entity = replay.model.entities.get(entity_name)
        if entity is None:
            continue
        view = _server_view(replay, entity, record_id)
        records += view["records"]
        removed += view["removed"]
    return {**first, "records": records, "removed": removed}


def record_results(replay: Replay, applied: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Store the ledger rows (and a sync error for anything not applied as sent)."""
    if not applied:
        return
    s = replay.session
    now = utcnow()
    s.execute(
        insert(opledger),
        [
            {
                "deviceid": replay.device_id,
                "seq": op["seq"],
                "op_id": op["op_id"],
                "kind": op["kind"],
                "entity": op["entity"][:64],
                "recordid": op["id"],
                "status": result["status"],
                "result": _ledger_result(replay, result),
                "appliedon": now,
            }
            for op, result in applied
        ],
    )
    errors = []
    for op, result in applied:
        if result["status"] == "applied":
            continue
        reason = result.get("reason") or {}
        kept = result["records"][0]["record"] if result.get("records") else None
        errors.append(
            {
                "organizationid": replay.model.org_id,
                "deviceid": replay.device_id,
                "systemuserid": replay.principal.user_id,
                "seq": op["seq"],
                "entity": op["entity"][:64],
                "recordid": op["id"],
                "status": result["status"],
                "code": str(reason.get("code", ""))[:64],
                "message": str(reason.get("message", ""))[:1000],
                "sent": op,
                "kept": kept,
                "createdon": now,
            }
        )
    if errors:
        s.execute(insert(syncerror), errors)
    metrics.ops_replayed(s, [result["status"] for _, result in applied])


def _ledger_result(replay: Replay, result: dict[str, Any]) -> dict[str, Any]:
    """The answer as the ledger keeps it: each record by its id only. A re-sent op is answered
    with its records as the server has them then (`resent_result`), so the ledger needs only
    which records they were, not a copy of each (most of a push's bytes written)."""
    if not result["records"]:
        return result
    slim = []
    for item in result["records"]:
        entity = replay.model.entities.get(item["entity"])
        key = entity.primary_id if entity is not None else None
        slim.append({"entity": item["entity"], "record": {key: item["record"][key]}} if key else item)
    return {**result, "records": slim}


def _result(op: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"op_id": op["op_id"], "seq": op["seq"], "status": status, "records": [], "removed": []}
    out.update(extra)
    return out


def _server_view(replay: Replay, entity: Entity, record_id: str) -> dict[str, Any]:
    """What the device should hold of a record now: it as the user may see it, or a removal."""
    s, m, p = replay.session, replay.model, replay.principal
    if not entity.union_of:  # as this frame has it (written or still buffered)
        found = replay.batch.readable(entity, record_id)
        if found is None:
            return {"records": [], "removed": [{"entity": entity.logical_name, "id": record_id}]}
        return {"records": [_row_view(replay, entity, found)], "removed": []}
    replay.batch.flush()
    row = records.fetch(s, m, entity, record_id, read_condition(p, m, entity))
    if row is None:
        return {"records": [], "removed": [{"entity": entity.logical_name, "id": record_id}]}
    return {"records": [_row_view(replay, entity, row)], "removed": []}


def _depends_on_rejected(replay: Replay, op: dict[str, Any]) -> bool:
    """Whether the op touches, links to (a bind) or names (a command argument) a rejected create."""
    if op["id"] in replay.rejected_creates and op["kind"] != "create":
        return True
    # Only objects carry values; a malformed `changes` or `args` (a list, `true`) is refused by the
    # op's own validation after this, so it names no rejected create here.
    values = [v for part in (op.get("changes"), op.get("args")) if isinstance(part, dict) for v in part.values()]
    text = " ".join(v for v in values if isinstance(v, str))
    return any(rid in text for rid in replay.rejected_creates)


def apply_one(replay: Replay, op: dict[str, Any]) -> dict[str, Any]:
    """Apply one operation, without the parts the metadata no longer allows (`webapp.sync.stale`)."""
    m = replay.model
    entity = m.entities.get(op["entity"])
    if entity is None:
        gone = stale.removed_entity(m, op)
        if gone is not None:
            return _rejected(replay, op, None, "entity_removed", gone)
        return _rejected(replay, op, None, "unknown_entity", f"There is no entity '{op['entity']}'.")
    allowed = op["command"] if op["kind"] == "command" else op["kind"]
    offline = is_offline(m, entity)
    if allowed not in entity.offline_commands or not offline:
        return _rejected(replay, op, entity, "not_allowed_offline", stale.not_offline(entity, op, offline))
    if _depends_on_rejected(replay, op):
        return _rejected(replay, op, entity, "depends_on_rejected", "This operation depends on a rejected operation.")
    trimmed, refused = stale.refuse_stale_parts(m, replay.batch, entity, op)
    return stale.settle(_apply_op(replay, trimmed, entity), trimmed, refused)


def _apply_op(replay: Replay, op: dict[str, Any], entity: Entity) -> dict[str, Any]:
    """Apply one operation the metadata allows: buffered, or else alone in a savepoint."""
    s = replay.session
    try:
        done = _apply_buffered(replay, op, entity)
    except Slow:
        done = None
    except CrmError as exc:  # refused before anything of it was buffered
        return _rejected(replay, op, entity, exc.code, exc.message, exc.field, exc.details)
    if done is not None:
        return done
    # One at a time: after the buffered writes, in a savepoint, with the frame's records read anew.
    replay.batch.flush()
    replay.batch.forget()
    savepoint = s.begin_nested()
    try:
        result = _apply(replay, op, entity)
        savepoint.commit()
        return result
    except CrmError as exc:
        savepoint.rollback()
        replay.batch.forget()
        return _rejected(replay, op, entity, exc.code, exc.message, exc.field, exc.details)
    finally:
        replay.batch.forget()


def _apply_buffered(replay: Replay, op: dict[str, Any], entity: Entity) -> dict[str, Any] | None:
    """A create or update checked against the frame's records and buffered; None (or Slow) for
    an operation that goes one at a time (see `webapp.sync.batch`)."""
    kind = op["kind"]
    if kind not in ("create", "update") or entity.union_of or entity.logical_name in STRUCTURE_FIELDS:
        return None
    changes = dict(op.get("changes") or {})
    batch = replay.batch
    if kind == "create":
        if entity.primary_id in changes and changes[entity.primary_id] != op["id"]:
            return _rejected(replay, op, entity, "bad_request", "The record's id differs from the operation's id.")
        changes[entity.primary_id] = op["id"]
        row = batch.create(entity, changes)
        return _result(op, "applied", records=[_row_view(replay, entity, row)])
    current = batch.get(entity, op["id"]).row
    if current is None:
        return None  # gone: the one-at-a-time path tells deleted from never there
    base = op.get("base_version")
    if base is not None and current["versionnumber"] > base and replay.conflict_detection:
        return None  # field-level conflict rules
    batch.update(entity, op["id"], changes)
    return _result(op, "applied", **_server_view(replay, entity, op["id"]))


def _rejected(
    replay: Replay,
    op: dict[str, Any],
    entity: Entity | None,
    code: str,
    message: str,
    field_: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if op["kind"] == "create":
        replay.rejected_creates.add(op["id"])
    reason: dict[str, Any] = {"code": code, "message": message}
    if field_:
        reason["field"] = field_
    if details:
        reason["details"] = details  # per-field messages, so the phone names each field (issue 15)
    view = _server_view(replay, entity, op["id"]) if entity is not None else {}
    if op["kind"] == "command":
        # The records the device minted for the command do not exist on the server: drop them.
        minted = (op.get("args") or {}).get("new_ids") or {}
        for name, rid in minted.items() if isinstance(minted, dict) else []:
            if name in COMMAND_NEW_ENTITIES and isinstance(rid, str):
                view.setdefault("removed", []).append({"entity": name, "id": rid})
    return _result(op, "rejected", reason=reason, **view)


def _lookup_names(entity: Entity) -> dict[str, str]:
    names = {}
    for a in entity.lookups():
        for t in a.targets:
            names[f"{a.logical_name}_{t}"] = a.logical_name
    return names


def _apply(replay: Replay, op: dict[str, Any], entity: Entity) -> dict[str, Any]:
    s, m, p, actor = replay.session, replay.model, replay.principal, replay.actor
    changes = dict(op.get("changes") or {})
    kind = op["kind"]
    if kind == "create":
        if entity.primary_id in changes and changes[entity.primary_id] != op["id"]:
            return _rejected(replay, op, entity, "bad_request", "The record's id differs from the operation's id.")
        changes[entity.primary_id] = op["id"]
        row = ops.create(s, m, p, actor, entity, changes)
        return _result(op, "applied", records=[_row_view(replay, entity, row)])
    if kind == "command":
        if (
            COMMAND_ENTITY.get(op["command"]) != entity.logical_name
            or subject_id(op["command"], op.get("args")) != op["id"]
        ):
            return _rejected(
                replay, op, entity, "bad_request", "The command does not match the operation's entity and id."
            )
        result = ops.run_command(s, m, p, actor, op["command"], op.get("args") or {})
        return _result(op, "applied", records=result["created"] + result["updated"])
    current = records.fetch(s, m, entity, op["id"])
    if current is None:
        if kind == "delete":
            return _result(op, "applied", removed=[{"entity": entity.logical_name, "id": op["id"]}])
        deleted = s.execute(
            select(changelog.c.changenum).where(
                changelog.c.organizationid == m.org_id,
                changelog.c.recordid == op["id"],
                changelog.c.operation == "delete",
            )
        ).first()
        if deleted is not None:
            raise NotFound("The record was deleted on the server; your change could not be applied.")
        raise NotFound(f"There is no {entity.logical_name} with id {op['id']}.")
    base = op.get("base_version")
    stale = base is not None and current["versionnumber"] > base
    if kind == "delete":
        if stale and replay.conflict_detection:
            ops.fetch_readable(s, m, p, entity, op["id"])
            return _result(
                op,
                "conflict",
                reason={
                    "code": "conflict",
                    "message": "Automatically resolved: the record changed on the server and was kept.",
                },
                **_server_view(replay, entity, op["id"]),
            )
        ops.remove(s, m, p, actor, entity, op["id"])
        return _result(op, "applied", removed=[{"entity": entity.logical_name, "id": op["id"]}])
    lost: list[str] = []
    if stale and replay.conflict_detection:
        # Field security first, and server wins only over fields the user may read: whether
        # the server changed a secured field never shows in the answer (README "Security").
        names = _lookup_names(entity)
        ops.fetch_readable(s, m, p, entity, op["id"])  # an unreadable record stays not found
        ops.check_fields(p, entity, [names.get(a, a) for a in map(change_key_attribute, changes)], creating=False)
        server_fields = server_changed_fields(s, m.org_id, entity.logical_name, op["id"], base or 0)
        changes, lost = split_changes(changes, server_fields - p.hidden_fields(entity), names)
    if changes:
        ops.update(s, m, p, actor, entity, op["id"], changes)
    else:
        ops.fetch_readable(s, m, p, entity, op["id"])
    view = _server_view(replay, entity, op["id"])
    if lost:
        message = f"Automatically resolved: the server's values were kept for {', '.join(lost)}."
        return _result(op, "conflict", reason={"code": "conflict", "message": message, "fields": lost}, **view)
    return _result(op, "applied", **view)
