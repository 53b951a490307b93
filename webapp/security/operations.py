"""The CRM operations as a given user: every security check, then the write.

The Web API and the sync replay both call these, so a rule holds on every path. A record
the user may not read is NotFound (indistinguishable from a missing one); a record the user
can read but not change is Forbidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm import epoch, odata, records
from webapp.crm.changes import log_change, utcnow
from webapp.crm.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.query import QueryOptions, run_query, to_records
from webapp.crm.records import Actor
from webapp.crm.registry import OrgModel
from webapp.crm.validation import BIND_RE, Bind, parse_payload
from webapp.security import sharing
from webapp.security.scope import Principal, condition, may_append_new, may_create, reach
from webapp.security.sharing import SHARE_RIGHTS
from webapp.security.tables import recordshare

ACCESS = "@Outpost.Access"  # the record-level annotation saying what the user may do with it
ACCESS_LETTERS = {"write": "w", "delete": "d", "assign": "a", "share": "s"}


def read_condition(p: Principal, model: OrgModel, entity: Entity) -> Any:
    """The user's read scope on an entity's table (or union)."""
    return condition(p, model, entity, model.selectable(entity), "read")


def fetch_readable(session: Session, model: OrgModel, p: Principal, entity: Entity, record_id: str) -> dict[str, Any]:
    """A record the user may read, or NotFound."""
    row = records.fetch(session, model, entity, record_id, read_condition(p, model, entity))
    if row is None:
        raise NotFound(f"There is no {entity.logical_name} with id {record_id}.")
    return row


def require(session: Session, model: OrgModel, p: Principal, entity: Entity, record_id: str, privilege: str) -> None:
    """Forbidden unless the user holds `privilege` on this (readable) record."""
    src = model.selectable(entity)
    cond = condition(p, model, entity, src, privilege)
    if records.fetch(session, model, entity, record_id, cond) is None:
        raise privilege_error(entity, privilege)


def privilege_error(entity: Entity, privilege: str) -> Forbidden:
    """The refusal of a record the user can read but lacks `privilege` on."""
    return Forbidden(
        f"You do not have the {privilege} privilege on this {entity.display_name.lower()}.", field=entity.primary_id
    )


def check_fields(p: Principal, entity: Entity, keys: list[str], creating: bool) -> None:
    """Forbidden unless the user may set every one of these attributes (field security)."""
    for key in keys:
        if not p.may_write_field(entity.logical_name, key, creating):
            raise Forbidden(f"{key} is a secured field you may not {'set' if creating else 'change'}.", field=key)


def _check_binds(session: Session, model: OrgModel, p: Principal, binds: list[Bind]) -> None:
    """Each lookup target must be readable (else: no such record) and allow append-to."""
    for b in binds:
        if b.id is None:
            continue
        target = model.entity(b.target or "")
        src = model.selectable(target)
        if records.fetch(session, model, target, b.id, condition(p, model, target, src, "read")) is None:
            msg = f"There is no {target.logical_name} with id {b.id}."
            raise ValidationFailed(f"{b.attribute}: {msg}", field=b.attribute, details={b.attribute: [msg]})
        if records.fetch(session, model, target, b.id, condition(p, model, target, src, "appendto")) is None:
            raise Forbidden(
                f"You may not link records to this {target.display_name.lower()} (no append-to privilege).",
                field=b.attribute,
            )


def create(
    session: Session,
    model: OrgModel,
    p: Principal,
    actor: Actor,
    entity: Entity,
    payload: Any,
    *,
    by_command: bool = False,
) -> dict[str, Any]:
    """Create a record owned by the user, after every check (`by_command`: a command sets its state)."""
    records.check_writable(entity)
    values, binds, record_id = parse_payload(entity, payload, model.entity_for_set, creating=True)
    if not by_command:
        records.check_state_move(entity, None, values)
    if not may_create(p, entity):
        raise Forbidden(f"You do not have the create privilege on {entity.display_collection_name.lower()}.")
    check_fields(p, entity, [*values, *(b.attribute for b in binds)], creating=True)
    if any(b.id is not None for b in binds) and not may_append_new(p, entity):
        raise Forbidden(f"You do not have the append privilege on {entity.display_collection_name.lower()}.")
    _check_binds(session, model, p, binds)
    values.update(records.resolve_binds(session, model, entity, binds))
    return records.insert_record(session, model, actor, entity, values, record_id)


def update(
    session: Session,
    model: OrgModel,
    p: Principal,
    actor: Actor,
    entity: Entity,
    record_id: str,
    payload: Any,
    *,
    by_command: bool = False,
) -> dict[str, Any]:
    """Update a record the user may write, after every check (`by_command`: a command moves its state)."""
    records.check_writable(entity)
    current = fetch_readable(session, model, p, entity, record_id)
    values, binds, _ = parse_payload(entity, payload, model.entity_for_set, creating=False)
    require(session, model, p, entity, record_id, "write")
    if not by_command:
        records.check_state_move(entity, current.get("statecode"), values)
    check_fields(p, entity, [*values, *(b.attribute for b in binds)], creating=False)
    if binds:
        require(session, model, p, entity, record_id, "append")
        _check_binds(session, model, p, binds)
    values.update(records.resolve_binds(session, model, entity, binds))
    return records.update_record(session, model, actor, entity, current, values)


def remove(session: Session, model: OrgModel, p: Principal, actor: Actor, entity: Entity, record_id: str) -> None:
    """Delete a record the user may delete (through activitypointer: by its own type's rules)."""
    fetch_readable(session, model, p, entity, record_id)
    concrete = entity
    if entity.union_of:
        concrete = records.activity_type_of(session, model, record_id) or entity
    require(session, model, p, concrete, record_id, "delete")
    records.remove(session, model, actor, entity, record_id)


def _principal_bind(session: Session, model: OrgModel, value: Any, field: str) -> tuple[str, str, str]:
    """(id, systemuser|team, business unit) of a user or team named by `/systemusers(<id>)`."""
    m = BIND_RE.match(value) if isinstance(value, str) else None
    if not m or m["set"] not in ("systemusers", "teams"):
        raise ValidationFailed(
            f"{field}: use '/systemusers(<id>)' or '/teams(<id>)'.",
            field=field,
            details={field: ["Must be '/systemusers(<id>)' or '/teams(<id>)'."]},
        )
    kind = "systemuser" if m["set"] == "systemusers" else "team"
    t = model.tables[kind]
    pk = t.c[f"{kind}id"]
    row = session.execute(
        select(t.c.businessunitid).where(t.c.organizationid == model.org_id, pk == m["id"].lower())
    ).first()
    if row is None:
        raise ValidationFailed(
            f"{field}: there is no {kind} with id {m['id']}.", field=field, details={field: ["No such principal."]}
        )
    if kind == "systemuser":
        disabled = session.execute(select(t.c.isdisabled).where(pk == m["id"].lower())).scalar()
        if disabled:
            raise ValidationFailed(f"{field}: that user is disabled.", field=field, details={field: ["Disabled user."]})
    return m["id"].lower(), kind, row.businessunitid


def _body(payload: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationFailed("The body must be a JSON object.")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise ValidationFailed(
            f"{unknown[0]}: not expected here.", field=unknown[0], details={k: ["Unknown field."] for k in unknown}
        )
    return payload


def assign(
    session: Session, model: OrgModel, p: Principal, actor: Actor, entity: Entity, record_id: str, payload: Any
) -> dict[str, Any]:
    """Give a record a new owner (user or team); its business unit follows the owner."""
    if entity.ownership != "user" or entity.union_of or not entity.api_writable:
        raise BadRequest(f"{entity.display_collection_name} have no owner to assign.")
    body = _body(payload, {"ownerid@odata.bind"})
    if "ownerid@odata.bind" not in body:
        raise ValidationFailed("ownerid@odata.bind is required.", field="ownerid", details={"ownerid": ["Required."]})
    current = fetch_readable(session, model, p, entity, record_id)
    require(session, model, p, entity, record_id, "assign")
    owner_id, kind, bu = _principal_bind(session, model, body["ownerid@odata.bind"], "ownerid")
    values = {"ownerid": owner_id, "ownerid__type": kind, "owningbusinessunit": bu}
    _bump_principal(session, model, current.get("ownerid"), current.get("ownerid__type"))
    _bump_principal(session, model, owner_id, kind)
    return records.update_record(session, model, actor, entity, current, values)


def share(
    session: Session, model: OrgModel, p: Principal, actor: Actor, entity: Entity, record_id: str, payload: Any
) -> None:
    """Share a record with a user or team for the given rights (replacing earlier rights)."""
    if entity.ownership != "user" or entity.union_of:
        raise BadRequest(f"{entity.display_collection_name} cannot be shared.")
    body = _body(payload, {"principal@odata.bind", "rights"})
    rights = body.get("rights")
    if (
        not isinstance(rights, list)
        or not rights
        or not set(rights) <= set(SHARE_RIGHTS)
        or not all(isinstance(r, str) for r in rights)
    ):
        raise ValidationFailed(
            f"rights: a non-empty list drawn from {', '.join(SHARE_RIGHTS)}.",
            field="rights",
            details={"rights": [f"Must be a non-empty list drawn from {', '.join(SHARE_RIGHTS)}."]},
        )
    current = fetch_readable(session, model, p, entity, record_id)
    sharing.check_grantable(session, model, p, entity, record_id, rights)
    principal_id, kind, _ = _principal_bind(session, model, body.get("principal@odata.bind"), "principal")
    _bump_principal(session, model, principal_id, kind)
    sharing.grant(session, model, p, entity, record_id, principal_id, kind, rights)
    _log_access(session, model, actor, entity, current, "share", principal_id)


def unshare(
    session: Session, model: OrgModel, p: Principal, actor: Actor, entity: Entity, record_id: str, payload: Any
) -> None:
    """Withdraw every right shared with a user or team."""
    body = _body(payload, {"principal@odata.bind"})
    current = fetch_readable(session, model, p, entity, record_id)
    require(session, model, p, entity, record_id, "share")
    principal_id, kind, _ = _principal_bind(session, model, body.get("principal@odata.bind"), "principal")
    _bump_principal(session, model, principal_id, kind)
    sharing.revoke(session, model, p, entity, record_id, principal_id)
    _log_access(session, model, actor, entity, current, "unshare", principal_id)


def _bump_principal(session: Session, model: OrgModel, principal_id: str | None, kind: str | None) -> None:
    """Move the security epoch of a user, or of a team's members (webapp/crm/epoch.py)."""
    if principal_id is None:
        return
    if kind == "team":
        epoch.bump_members(session, model.org_id, principal_id)
    else:
        epoch.bump(session, model.org_id, [principal_id])


def _log_access(
    session: Session, model: OrgModel, actor: Actor, entity: Entity, row: dict[str, Any], op: str, principal_id: str
) -> None:
    """Note an access change in the change log (devices gain or lose the record by it)."""
    owner = (row.get("ownerid"), row.get("ownerid__type"), row.get("owningbusinessunit"))
    log_change(
        session,
        model.org_id,
        entity.logical_name,
        row[entity.primary_id],
        op,
        [principal_id],
        owner,
        actor.user_id,
        utcnow(),
    )


def filter_fields(node: Any) -> set[str]:
    """Every field a $filter names."""
    if node is None:
        return set()
    if isinstance(node, odata.And | odata.Or):
        return set().union(*(filter_fields(n) for n in node.items))
    if isinstance(node, odata.Not):
        return filter_fields(node.item)
    return {node.field}


def _check_query_fields(p: Principal, model: OrgModel, entity: Entity, opts: QueryOptions) -> None:
    hidden = p.hidden_fields(entity)
    if not hidden:
        return
    named = {odata.resolve_field(f, entity)[0] for f in filter_fields(opts.filter)} | {c for c, _ in opts.orderby}
    blocked = sorted(named & hidden)
    if blocked:
        raise Forbidden(f"{blocked[0]} is a secured field you may not read or filter on.", field=blocked[0])


def query(
    session: Session, model: OrgModel, p: Principal, entity: Entity, opts: QueryOptions, page_size: int
) -> tuple[list[dict[str, Any]], bool]:
    """One page of the records the user may read, as wire records, and whether more follow."""
    _check_query_fields(p, model, entity, opts)
    opts.user_id = p.user_id
    rows, more = run_query(session, model, entity, opts, page_size, read_condition(p, model, entity))
    return _wire(session, model, p, entity, rows, opts), more


def get(
    session: Session, model: OrgModel, p: Principal, entity: Entity, record_id: str, opts: QueryOptions | None = None
) -> dict[str, Any]:
    """One readable record as a wire record (NotFound otherwise)."""
    row = fetch_readable(session, model, p, entity, record_id)
    return _wire(session, model, p, entity, [row], opts or QueryOptions())[0]


def to_wire(session: Session, model: OrgModel, p: Principal, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the user may see it (secured fields withheld)."""
    return _wire(session, model, p, entity, [row], QueryOptions())[0]


def to_wire_many(
    session: Session, model: OrgModel, p: Principal, entity: Entity, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Many rows at once: lookup names load in one query per target entity, not per row."""
    return _wire(session, model, p, entity, rows, QueryOptions()) if rows else []


def _wire(
    session: Session, model: OrgModel, p: Principal, entity: Entity, rows: list[dict[str, Any]], opts: QueryOptions
) -> list[dict[str, Any]]:
    hidden = {e.logical_name: p.hidden_fields(e) for e in [entity, *(model.entity(x.target) for x in opts.expand)]}
    out = to_records(
        session,
        model,
        entity,
        rows,
        opts,
        hidden=hidden,
        expand_condition=lambda target, src: condition(p, model, target, src, "read"),
        hidden_names=hidden_names(p, model),
    )
    for record, rights in zip(out, record_access(session, p, entity, rows), strict=True):
        record[ACCESS] = rights
    return out


def record_access(session: Session, p: Principal, entity: Entity, rows: list[dict[str, Any]]) -> list[str]:
    """What the user may do with each row besides reading it, as the letters of `ACCESS_LETTERS`
    (PROTOCOL.md §1, `@Outpost.Access`): the same rules (`reach`) that decide every write,
    applied to the row's owner, business unit and shares, with one query for a page's shares."""
    if not rows:
        return []
    shares: dict[str, dict[str, set[str]]] = {}
    if any(r.sharees and not r.everything for r in access_reaches(p, entity)):
        ids = sorted({row[entity.primary_id] for row in rows})
        entities = tuple(entity.union_of) if entity.union_of else (entity.logical_name,)
        for i in range(0, len(ids), 500):
            found = session.execute(
                select(recordshare).where(
                    recordshare.c.organizationid == p.org_id,
                    recordshare.c.entity.in_(entities),
                    recordshare.c.recordid.in_(ids[i : i + 500]),
                    recordshare.c.principalid.in_([p.user_id, *p.team_ids]),
                )
            ).mappings()
            for share in found:
                rights = shares.setdefault(share["recordid"], {}).setdefault(share["principalid"], set())
                rights.update(right for right in SHARE_RIGHTS if share[right])
    return [access_letters(p, entity, row, shares.get(row[entity.primary_id], {})) for row in rows]


def access_reaches(p: Principal, entity: Entity) -> list[Any]:
    """The reach of each privilege `ACCESS_LETTERS` names, in its order."""
    return [reach(p, entity, privilege) for privilege in ACCESS_LETTERS]


def access_letters(
    p: Principal, entity: Entity, row: Mapping[str, Any], shares: Mapping[str, Any], reaches: list[Any] | None = None
) -> str:
    """One row's `@Outpost.Access` letters with its shares known (principal id → rights): the
    live fan-out loads a change's shares once for every device and passes each device's
    `access_reaches`, computed once."""
    reaches = reaches if reaches is not None else access_reaches(p, entity)
    return "".join(
        letter
        for letter, r in zip(ACCESS_LETTERS.values(), reaches, strict=True)
        if r.admits(row.get("ownerid"), row.get("owningbusinessunit"), shares)
    )


def hidden_names(p: Principal, model: OrgModel) -> set[str]:
    """The entities whose primary name (a lookup's label) the user may not read."""
    out = set()
    for entity_name in {e for e, _ in p.secured}:
        entity = model.entities.get(entity_name)
        if entity is not None and entity.primary_name in p.hidden_fields(entity):
            out.add(entity_name)
    return out


def readable_row(p: Principal, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with the values the user may not read set to None (a lookup's type too):
    what a command may use of a record, as a read would show it."""
    hidden = p.hidden_fields(entity)
    if not hidden:
        return row
    out = dict(row)
    for attribute in hidden:
        out[attribute] = None
        if f"{attribute}__type" in out:
            out[f"{attribute}__type"] = None
    return out


class UserCommandIO:
    """A command's reads and writes, as the signed-in user (see `webapp.crm.commands`)."""

    def __init__(self, session: Session, model: OrgModel, p: Principal, actor: Actor) -> None:
        self.session, self.model, self.principal, self.actor = session, model, p, actor
        self._metadata: dict[str, dict[str, Any]] = {}

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        """A record the user may read, with what they may not read of it withheld (None)."""
        found = self.model.entity(entity)
        return readable_row(
            self.principal, found, fetch_readable(self.session, self.model, self.principal, found, record_id)
        )

    def create(self, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Create as the user (create, append and append-to checked)."""
        return create(
            self.session, self.model, self.principal, self.actor, self.model.entity(entity), payload, by_command=True
        )

    def update(self, entity: str, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Update as the user (write, append and append-to checked)."""
        return update(
            self.session,
            self.model,
            self.principal,
            self.actor,
            self.model.entity(entity),
            record_id,
            payload,
            by_command=True,
        )

    def metadata(self, entity: str) -> dict[str, Any]:
        """The entity's metadata as published (what the command's declaration is read against)."""
        cached = self._metadata.get(entity)
        if cached is None:
            cached = self._metadata[entity] = self.model.entity(entity).to_dict()
        return cached


def run_command(
    session: Session, model: OrgModel, p: Principal, actor: Actor, name: str, args: Any
) -> dict[str, list[dict[str, Any]]]:
    """Run a business command as the user, in the caller's transaction (all or nothing).

    Returns `{"created": [{entity, record}…], "updated": […]}` with each record as the user
    sees it now (PROTOCOL.md §4).
    """
    from webapp.crm import commands

    commands_by_entity = {e.logical_name: e.offline_commands for e in model.entities.values()}
    outcome = commands.run(UserCommandIO(session, model, p, actor), name, args, commands_by_entity)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for entity, row in outcome.created + outcome.updated:
        latest[(entity, row[model.entity(entity).primary_id])] = row

    def wire(entity: str, row: dict[str, Any]) -> dict[str, Any]:
        key = (entity, row[model.entity(entity).primary_id])
        return {"entity": entity, "record": to_wire(session, model, p, model.entity(entity), latest[key])}

    return {
        "created": [wire(e, r) for e, r in outcome.created],
        "updated": [wire(e, r) for e, r in outcome.updated],
    }
