"""Records on the wire (PROTOCOL.md §1): typed JSON values, lookups and formatted values.

Lookup names, owner names and currency symbols are loaded in one query per target entity
for a whole page of rows, never one query per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.crm import ruledata
from webapp.crm.metadata import Attribute, Entity
from webapp.crm.registry import OrgModel

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"
SYSTEM_LOOKUPS = (
    ("ownerid", None),  # type from ownerid__type
    ("owningbusinessunit", "businessunit"),
    ("createdby", "systemuser"),
    ("modifiedby", "systemuser"),
)


def wire_value(attr_type: str, value: Any) -> Any:
    """A column value as its JSON form."""
    if value is None:
        return None
    if attr_type == "datetime":
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if attr_type == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if attr_type in ("decimal", "money"):
        number = float(value) if isinstance(value, Decimal) else value
        return int(number) if float(number).is_integer() and abs(number) < 2**53 else number
    if attr_type == "boolean":
        return bool(value)
    return value


def _places(attr: Attribute) -> ruledata.Rule | None:
    """A money attribute's `places` rule: the places and rounding its amounts are shown with."""
    return next((r for r in attr.rules if r["check"] == "places"), None)


def _lookup_target(attr: Attribute, row: dict[str, Any]) -> str | None:
    if attr.is_polymorphic:
        return row.get(f"{attr.logical_name}__type")
    return attr.targets[0] if attr.targets else None


def load_names(session: Session, model: OrgModel, wanted: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """Primary names of the given records, one query per target entity."""
    names: dict[tuple[str, str], str] = {}
    for target, ids in wanted.items():
        if not ids or target not in model.entities:
            continue
        entity = model.entities[target]
        src = model.selectable(entity)
        ids_list = sorted(ids)
        for i in range(0, len(ids_list), 500):
            chunk = ids_list[i : i + 500]
            rows = session.execute(
                select(src.c[entity.primary_id], src.c[entity.primary_name]).where(
                    src.c.organizationid == model.org_id, src.c[entity.primary_id].in_(chunk)
                )
            )
            for rid, name in rows:
                names[(target, rid)] = name
    return names


def serialize(
    session: Session,
    model: OrgModel,
    entity: Entity,
    rows: Sequence[dict[str, Any]],
    select_columns: Iterable[str] | None = None,
    hidden: Iterable[str] = (),
    hidden_names: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Rows as wire records; `select_columns` limits the attributes, `hidden` withholds some,
    `hidden_names` names the entities whose primary name the reader may not see: a lookup to
    one of them carries its id and no formatted value (field security on lookup labels)."""
    selected = set(select_columns) if select_columns is not None else None
    hide = set(hidden)
    attrs = [
        a
        for a in entity.attributes
        if a.logical_name != entity.primary_id
        and a.logical_name not in hide
        and (selected is None or a.logical_name in selected)
    ]
    wanted: dict[str, set[str]] = defaultdict(set)
    currency_ids: set[str] = set()
    for row in rows:
        for a in attrs:
            if a.type == "lookup" and row.get(a.logical_name):
                target = _lookup_target(a, row)
                if target:
                    wanted[target].add(row[a.logical_name])
        for col, target in SYSTEM_LOOKUPS:
            if row.get(col):
                wanted[target or row.get("ownerid__type") or "systemuser"].add(row[col])
        if row.get("transactioncurrencyid"):
            currency_ids.add(row["transactioncurrencyid"])
    no_names = set(hidden_names)
    names = load_names(session, model, {t: ids for t, ids in wanted.items() if t not in no_names})
    symbols = _currency_symbols(session, model, currency_ids)
    base_symbol = model.settings.get("base_currency_symbol", "$")
    out = []
    for row in rows:
        rec: dict[str, Any] = {entity.primary_id: row[entity.primary_id]}
        symbol = symbols.get(row.get("transactioncurrencyid") or "", base_symbol)
        for a in attrs:
            name = a.logical_name
            value = row.get(name)
            if a.type == "lookup":
                target = _lookup_target(a, row) if value else None
                key = f"_{name}_value"
                rec[key] = value
                rec[f"{key}{LOGICAL}"] = target
                if value:
                    rec[f"{key}{FORMATTED}"] = names.get((target or "", value))
                continue
            rec[name] = wire_value(a.type, value)
            if value is None:
                continue
            if a.type == "optionset":
                label = a.label_for(value)
                if label is not None:
                    rec[f"{name}{FORMATTED}"] = label
            elif a.type == "money":
                rec[f"{name}{FORMATTED}"] = ruledata.format_money(value, symbol, _places(a))
            elif a.type == "boolean":
                rec[f"{name}{FORMATTED}"] = "Yes" if value else "No"
        for col, target in SYSTEM_LOOKUPS:
            key = f"_{col}_value"
            value = row.get(col)
            rec[key] = value
            if value:
                tgt = target or row.get("ownerid__type") or "systemuser"
                rec[f"{key}{LOGICAL}"] = tgt
                rec[f"{key}{FORMATTED}"] = names.get((tgt, value))
        rec["createdon"] = wire_value("datetime", row.get("createdon"))
        rec["modifiedon"] = wire_value("datetime", row.get("modifiedon"))
        rec["versionnumber"] = row.get("versionnumber")
        out.append(rec)
    return out


def _currency_symbols(session: Session, model: OrgModel, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    t = model.tables["transactioncurrency"]
    rows = session.execute(
        select(t.c.transactioncurrencyid, t.c.currencysymbol).where(
            t.c.organizationid == model.org_id, t.c.transactioncurrencyid.in_(sorted(ids))
        )
    )
    return {rid: sym for rid, sym in rows}
