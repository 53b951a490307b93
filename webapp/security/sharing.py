"""Sharing a record: the one rule and the one writer of share rows.

The rule is the reference CRM's: a share needs the share privilege on the record, and it
never grants a right the sharer does not hold on that record at that moment — through their
roles, their teams, the hierarchy or a share of their own. Whatever path shares a record
(the Web API's `share` action today; an offline command or a console page if one is added)
calls `grant`, and nothing else writes `recordshare` rows (tests/test_sharing_property.py
checks both: the rule by hypothesis, the single writer by reading the source).

Revoking (`revoke`) needs the share privilege only: taking rights away grants nothing.
Revocations do not cascade: what a sharer passed on while they held it stays until it is
withdrawn itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, delete, insert
from sqlalchemy.orm import Session

from webapp.crm import records
from webapp.crm.errors import Forbidden
from webapp.crm.metadata import Entity
from webapp.crm.registry import OrgModel
from webapp.security.scope import Principal, condition
from webapp.security.tables import recordshare

SHARE_RIGHTS = ("read", "write", "delete", "append", "appendto", "assign", "share")


def held_rights(
    session: Session,
    model: OrgModel,
    p: Principal,
    entity: Entity,
    record_id: str,
    among: Iterable[str] = SHARE_RIGHTS,
) -> set[str]:
    """Which of `among` the user holds on one record now (each through the one SQL condition)."""
    src = model.selectable(entity)
    return {
        right
        for right in SHARE_RIGHTS
        if right in set(among)
        and records.fetch(session, model, entity, record_id, condition(p, model, entity, src, right)) is not None
    }


def check_grantable(
    session: Session, model: OrgModel, p: Principal, entity: Entity, record_id: str, rights: Iterable[str]
) -> None:
    """Forbidden unless the user holds share and every one of `rights` on the record."""
    wanted = set(rights)
    held = held_rights(session, model, p, entity, record_id, {"share", *wanted})
    what = entity.display_name.lower()
    if "share" not in held:
        raise Forbidden(f"You do not have the share privilege on this {what}.", field=entity.primary_id)
    beyond = [r for r in SHARE_RIGHTS if r in wanted - held]
    if beyond:
        raise Forbidden(
            f"You may not share rights you do not hold on this {what}: {', '.join(beyond)}.", field="rights"
        )


def _key(model: OrgModel, entity: Entity, record_id: str, principal_id: str) -> tuple[ColumnElement[bool], ...]:
    return (
        recordshare.c.organizationid == model.org_id,
        recordshare.c.entity == entity.logical_name,
        recordshare.c.recordid == record_id,
        recordshare.c.principalid == principal_id,
    )


def grant(
    session: Session,
    model: OrgModel,
    p: Principal,
    entity: Entity,
    record_id: str,
    principal_id: str,
    principal_type: str,
    rights: Iterable[str],
) -> None:
    """Share a record with a user or team for exactly `rights` (replacing what it had), after the rule."""
    granted = set(rights)
    check_grantable(session, model, p, entity, record_id, granted)
    session.execute(delete(recordshare).where(*_key(model, entity, record_id, principal_id)))
    session.execute(
        insert(recordshare),
        {
            "organizationid": model.org_id,
            "entity": entity.logical_name,
            "recordid": record_id,
            "principalid": principal_id,
            "principaltype": principal_type,
            **{r: r in granted for r in SHARE_RIGHTS},
        },
    )


def revoke(session: Session, model: OrgModel, p: Principal, entity: Entity, record_id: str, principal_id: str) -> None:
    """Withdraw every right shared with a user or team (the share privilege needed)."""
    if not held_rights(session, model, p, entity, record_id, ["share"]):
        what = entity.display_name.lower()
        raise Forbidden(f"You do not have the share privilege on this {what}.", field=entity.primary_id)
    session.execute(delete(recordshare).where(*_key(model, entity, record_id, principal_id)))
