"""Conflict rules: the administrator's setting decides (DESIGN.md §4).

- detection off ("client wins"): an operation applies as sent; no sync error.
- detection on ("server wins"), field by field (beyond the reference's whole-record rule):
  an update whose base version is older than the record's keeps the server's value for every
  field the server changed since that version; the operation's other fields still apply.
  A delete of a record the server changed since the base version is not applied.
  Field security is checked before the split, and the split ignores fields the user may not
  read: a secured field the user may not change is rejected, one they may change but not read
  applies as sent, so the answer never reveals whether the server changed it.
- update after delete (the record is gone on the server): rejected under both settings — the
  record no longer exists, and the device drops it. Delete after delete: applied (nothing to do).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm.tables import changelog


def server_changed_fields(session: Session, org_id: str, entity: str, record_id: str, since: int) -> set[str]:
    """Every field the server changed on a record after change number `since`."""
    fields: set[str] = set()
    for (changed,) in session.execute(
        select(changelog.c.changedfields).where(
            changelog.c.organizationid == org_id,
            changelog.c.entity == entity,
            changelog.c.recordid == record_id,
            changelog.c.changenum > since,
            changelog.c.operation.in_(("create", "update")),
        )
    ):
        fields.update(changed or [])
    return fields


def change_key_attribute(key: str) -> str:
    """The attribute a key of an operation's `changes` writes (`x@odata.bind` writes x)."""
    if key.endswith("@odata.bind"):
        return key[: -len("@odata.bind")]
    return key


def split_changes(
    changes: dict[str, Any], server_fields: set[str], lookups: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """(changes the device keeps, fields where the server's value wins).

    `lookups` maps a bind name such as `parentcustomerid_account` to its attribute, so a
    polymorphic bind is matched to the field the server changed.
    """
    kept: dict[str, Any] = {}
    lost: list[str] = []
    for key, value in changes.items():
        attr = change_key_attribute(key)
        attr = lookups.get(attr, attr)
        if attr in server_fields:
            lost.append(attr)
        else:
            kept[key] = value
    return kept, sorted(set(lost))
