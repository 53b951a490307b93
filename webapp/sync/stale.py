"""Operations queued under metadata that changed since: what of them no longer applies, in words.

A device queues operations under the metadata it holds; an administrator may meanwhile remove an
entity or an attribute, take an entity out of the offline profile or change the moves between
statuses. The server's current metadata decides (the device's `metadata_version` only says it is
behind). The rule (docs/protocol.md, "Operations queued under older metadata"):

- an operation on an entity that was removed, or is no longer offline (or no longer offers the
  operation's kind offline), is refused whole: nothing of it can apply;
- an operation's values for removed attributes, and a status move the metadata no longer allows,
  are refused field by field and the rest of the operation applies: the answer is `conflict`
  (applied, except the fields listed, each with its reason in `details`), or `rejected` when
  nothing else was left to apply.
"""

from __future__ import annotations

from typing import Any

from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.records import check_state_move
from webapp.crm.registry import OrgModel
from webapp.crm.remodel import retired_attributes, retired_entity
from webapp.sync.batch import Batch
from webapp.sync.conflicts import change_key_attribute

STATE_FIELDS = ("statecode", "statuscode")


def _what(op: dict[str, Any], name: str) -> str:
    """The operation as the user made it: 'this new visit report', 'this change'."""
    return {"create": f"this new {name}", "update": "this change", "delete": "this deletion"}.get(
        op["kind"], "this action"
    )


def removed_entity(model: OrgModel, op: dict[str, Any]) -> str | None:
    """Why an operation on a removed entity is refused, or None (the entity never existed)."""
    labels = retired_entity(model, op["entity"])
    if labels is None:
        return None
    collection = labels.get("display_collection_name") or op["entity"]
    name = (labels.get("display_name") or op["entity"]).lower()
    return f"{collection} were removed by your administrator, so {_what(op, name)} could not be saved."


def not_offline(entity: Entity, op: dict[str, Any], offline: bool) -> str:
    """Why an operation on an entity that is not (or no longer) offline is refused."""
    collection = entity.display_collection_name
    what = _what(op, entity.display_name.lower())
    if not offline:
        return (
            f"{collection} are no longer available offline (your administrator changed the offline profile), "
            f"so {what} could not be saved."
        )
    return f"{what[0].upper()}{what[1:]} is not available offline for {collection.lower()}, so it could not be saved."


def refuse_stale_parts(
    model: OrgModel, batch: Batch, entity: Entity, op: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The operation without the parts the metadata no longer allows, and the reason for them
    ({code, message, fields, details}), or None when all of it still applies."""
    changes = op.get("changes")
    if op["kind"] not in ("create", "update") or not isinstance(changes, dict) or not changes:
        return op, None
    details: dict[str, list[str]] = {}
    codes: list[str] = []
    gone = retired_attributes(model, entity.logical_name)
    kept: dict[str, Any] = {}
    for key, value in changes.items():
        name = _retired_name(key, gone) if isinstance(key, str) else None
        if name is None:
            kept[key] = value
            continue
        details[name] = [f"{gone[name]} was removed by your administrator, so your value for it was not saved."]
    if details:
        codes.append("attribute_removed")
    moved = _refused_move(batch, entity, op, kept)
    if moved is not None:
        codes.append("transition_not_allowed")
        sent = [f for f in STATE_FIELDS if f in kept]
        for f in sent:
            del kept[f]
            details[f] = [moved]
    if not codes:
        return op, None
    messages = list(dict.fromkeys(m for msgs in details.values() for m in msgs))
    fields = list(details)
    reason = {"code": codes[0], "message": " ".join(messages), "field": fields[0], "fields": fields, "details": details}
    return {**op, "changes": kept}, reason


def _retired_name(key: str, gone: dict[str, str]) -> str | None:
    """The removed attribute a change key writes (`x`, `x@odata.bind`, `x_target@odata.bind`)."""
    name = change_key_attribute(key)
    if name in gone:
        return name
    if key.endswith("@odata.bind") and "_" in name and name.rpartition("_")[0] in gone:
        return name.rpartition("_")[0]
    return None


def _refused_move(batch: Batch, entity: Entity, op: dict[str, Any], changes: dict[str, Any]) -> str | None:
    """Why the status move of a create or update is not allowed now, or None.

    Only a well-formed move on a record the user may read is judged here (validation and the
    privilege checks answer the rest as before, and the message never tells an unreadable
    record's status)."""
    given = {f: changes[f] for f in STATE_FIELDS if f in changes}
    if not entity.has_state or entity.union_of or not given:
        return None
    if any(not isinstance(v, int) or isinstance(v, bool) for v in given.values()):
        return None
    current: int | None = None
    if op["kind"] == "update":
        row = batch.readable(entity, op["id"])
        if row is None:
            return None
        current = row.get("statecode")
    try:
        check_state_move(entity, current, given)
    except ValidationFailed as exc:
        return exc.message
    return None


def settle(result: dict[str, Any], trimmed: dict[str, Any], reason: dict[str, Any] | None) -> dict[str, Any]:
    """The answer to an operation some of whose parts were refused: `conflict` when the rest
    applied, `rejected` when nothing was left to apply; a refusal of the rest stands as it is."""
    if reason is None or result["status"] == "rejected":
        return result
    if result["status"] == "conflict":  # the server also kept its values of other fields
        before = result.get("reason") or {}
        merged = {
            **before,
            "message": f"{before.get('message', '')} {reason['message']}".strip(),
            "fields": [*before.get("fields", []), *reason["fields"]],
            "details": {**before.get("details", {}), **reason["details"]},
        }
        return {**result, "reason": merged}
    nothing_left = trimmed["kind"] == "update" and not trimmed["changes"]
    return {**result, "status": "rejected" if nothing_left else "conflict", "reason": reason}
