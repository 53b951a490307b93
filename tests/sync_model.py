"""The sync model's reference server (tests/test_sync_model.py), and the names the model uses.

`Reference` is what the server should hold, written from DESIGN.md §4-§5 and PROTOCOL.md §4-§5
with plain dicts and loops, sharing no code with webapp/: who may read and write what (the
three users of the model), client wins or field-level server wins, update after delete,
delete cascades that clear lookups, the four entities' commands, and the idempotency ledger.
It predicts every write, so the test can check the change log write by write.

The phones are not modelled here: each is the device's real store in Chromium
(tests/model_phone.py), so no copy of the device's rebase rules is kept in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENTITIES = ("account", "contact", "lead", "opportunity")
PRIMARY = {"account": "accountid", "contact": "contactid", "lead": "leadid", "opportunity": "opportunityid"}
SETS = {"accounts": "account", "contacts": "contact", "leads": "lead", "opportunities": "opportunity"}
SET_OF = {v: k for k, v in SETS.items()}
# The fields the model writes and compares (lookups as an id, or (entity, id) where polymorphic).
FIELDS = {
    "account": ("name", "telephone1"),
    "contact": ("lastname", "parentcustomerid"),
    "lead": (
        "subject",
        "lastname",
        "statecode",
        "statuscode",
        "parentaccountid",
        "parentcontactid",
        "qualifyingopportunityid",
    ),
    "opportunity": ("name", "statecode", "statuscode", "customerid", "originatingleadid"),
}
TRACKED = {e: (*f, "ownerid") for e, f in FIELDS.items()}  # compared with the change log's changed fields
POLYMORPHIC = {("contact", "parentcustomerid"), ("opportunity", "customerid")}
# Every lookup among the four entities, as the server's delete cascade walks them: (entity, attr) -> targets.
LOOKUPS = {
    ("contact", "parentcustomerid"): ("account", "contact"),
    ("lead", "parentaccountid"): ("account",),
    ("lead", "parentcontactid"): ("contact",),
    ("lead", "qualifyingopportunityid"): ("opportunity",),
    ("opportunity", "customerid"): ("account", "contact"),
    ("opportunity", "originatingleadid"): ("lead",),
}
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def bind_attribute(entity: str, key: str) -> tuple[str, str | None]:
    """(attribute, target entity named in the key) of an `x@odata.bind` key."""
    name = key[: -len("@odata.bind")]
    if (entity, name) in LOOKUPS:
        return name, None
    attr, _, target = name.rpartition("_")
    return attr, target


def attribute_of(entity: str, key: str) -> str:
    """The attribute a key of an operation's changes writes."""
    return bind_attribute(entity, key)[0] if key.endswith("@odata.bind") else key


def parse_bind(value: Any) -> tuple[str, str] | None:
    """(entity, id) of "/accounts(<id>)", or None for a cleared lookup."""
    if value is None:
        return None
    entity_set, _, rest = value.strip("/").partition("(")
    return SETS[entity_set], rest.rstrip(")")


def bind(entity: str, record_id: str) -> str:
    """The `@odata.bind` value naming a record."""
    return f"/{SET_OF[entity]}({record_id})"


# ---------------------------------------------------------------------------------------------
# The reference server


@dataclass(frozen=True)
class User:
    """A user of the model: id, business unit, and whether they administer everything."""

    id: str
    business_unit: str
    admin: bool


@dataclass
class Rec:
    """A record as the server should hold it."""

    entity: str
    id: str
    fields: dict[str, Any]
    owner: str
    business_unit: str
    version: int | None = None  # the server's versionnumber, once the write is matched to the log
    history: list[list[Any]] = field(default_factory=list)  # [version, fields written] per create/update


@dataclass
class Write:
    """A change-log entry the reference expects: which record, which operation, which fields."""

    entity: str
    id: str
    operation: str
    fields: frozenset[str]
    rec: Rec
    entry: list[Any] | None  # the history entry to stamp with its version


class Rejected(Exception):
    """The reference refuses an operation (the server must reject it too)."""


@dataclass
class Reference:
    """The server of DESIGN.md §4-§5, as plain data."""

    users: dict[str, User]
    records: dict[str, Rec] = field(default_factory=dict)
    detection: bool = False
    ledger: dict[str, dict[int, tuple[str, str]]] = field(default_factory=dict)  # device -> seq -> (op_id, status)
    rejected_creates: dict[str, set[str]] = field(default_factory=dict)
    pending: list[Write] = field(default_factory=list)  # writes not yet matched with the change log

    # --- security: alice administers everything; a salesperson reads and links to accounts and
    # contacts of their business unit, and does everything else on their own records only.

    def may(self, user_id: str, privilege: str, rec: Rec) -> bool:
        """Whether the user holds `privilege` on the record."""
        user = self.users[user_id]
        if user.admin:
            return True
        if privilege in ("read", "appendto") and rec.entity in ("account", "contact"):
            return rec.business_unit == user.business_unit
        return rec.owner == user_id

    def visible(self, user_id: str, entity: str) -> dict[str, Rec]:
        """The records of an entity the user's device should hold (the profile downloads everything)."""
        return {
            rid: rec for rid, rec in self.records.items() if rec.entity == entity and self.may(user_id, "read", rec)
        }

    # --- writes -------------------------------------------------------------------------

    def _log(self, rec: Rec, operation: str, fields: set[str]) -> None:
        entry = [None, frozenset(fields)] if operation != "delete" else None
        if entry is not None:
            rec.history.append(entry)
        rec.version = None  # newer than any version a device holds, until matched
        self.pending.append(Write(rec.entity, rec.id, operation, frozenset(fields), rec, entry))

    def _create(self, user_id: str, entity: str, record_id: str, values: dict[str, Any]) -> Rec:
        fields = {f: values.get(f) for f in FIELDS[entity]}
        if entity in ("lead", "opportunity"):
            fields["statecode"], fields["statuscode"] = 0, 1
        user = self.users[user_id]
        rec = Rec(entity, record_id, fields, user_id, user.business_unit)
        self.records[record_id] = rec
        self._log(rec, "create", {f for f, v in fields.items() if v is not None})
        return rec

    def _update(self, rec: Rec, values: dict[str, Any]) -> None:
        changed = {f for f, v in values.items() if rec.fields.get(f, rec.owner if f == "ownerid" else None) != v}
        if not changed:
            return  # nothing changed: no new version
        for f in changed:
            if f == "ownerid":
                rec.owner = values[f]
                rec.business_unit = self.users[values[f]].business_unit
            else:
                rec.fields[f] = values[f]
        self._log(rec, "update", changed)

    def _delete(self, rec: Rec) -> None:
        del self.records[rec.id]
        self._log(rec, "delete", set())
        for other in sorted(self.records.values(), key=lambda r: r.id):
            for (entity, attr), _ in LOOKUPS.items():
                if entity != other.entity:
                    continue
                value = other.fields.get(attr)
                target = value if (entity, attr) in POLYMORPHIC else (LOOKUPS[(entity, attr)][0], value)
                if target == (rec.entity, rec.id):
                    self._update(other, {attr: None})

    # --- checks -------------------------------------------------------------------------

    def _readable(self, user_id: str, entity: str, record_id: str) -> Rec:
        rec = self.records.get(record_id)
        if rec is None or rec.entity != entity or not self.may(user_id, "read", rec):
            raise Rejected(f"no {entity} {record_id}")
        return rec

    def _require(self, user_id: str, privilege: str, rec: Rec) -> None:
        if not self.may(user_id, privilege, rec):
            raise Rejected(f"no {privilege} on {rec.entity} {rec.id}")

    def _values(self, user_id: str, entity: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A payload as field values, after checking each lookup target (readable, append-to)."""
        out = {}
        for key, value in changes.items():
            if not key.endswith("@odata.bind"):
                out[key] = value
                continue
            attr, _ = bind_attribute(entity, key)
            target = parse_bind(value)
            if target is not None:
                self._require(user_id, "appendto", self._readable(user_id, target[0], target[1]))
            if (entity, attr) in POLYMORPHIC:
                out[attr] = target
            else:
                out[attr] = target[1] if target else None
        return out

    def changed_since(self, rec: Rec, base: int) -> set[str]:
        """Fields the server changed on the record after version `base` (pending writes count)."""
        out: set[str] = set()
        for version, fields in rec.history:
            if version is None or version > base:
                out |= fields
        return out

    # --- replay -------------------------------------------------------------------------

    def push(self, device_id: str, user_id: str, ops: list[dict[str, Any]]) -> tuple[list[str], dict[int, set[str]]]:
        """The statuses a push should get, in order (re-sent ops get their first status), and for
        each re-sent op the ids the user may read when the server answers it."""
        ledger = self.ledger.setdefault(device_id, {})
        statuses = []
        readable: dict[int, set[str]] = {}
        for op in ops:
            first = ledger.get(op["seq"])
            if first is not None:
                assert first[0] == op["op_id"], "the model never reuses a seq"
                statuses.append(first[1])
                readable[op["seq"]] = {rid for rid, rec in self.records.items() if self.may(user_id, "read", rec)}
                continue
            assert op["seq"] == len(ledger) + 1, "the model never leaves a gap"
            status = self.apply(device_id, user_id, op)
            ledger[op["seq"]] = (op["op_id"], status)
            statuses.append(status)
        return statuses, readable

    def apply(self, device_id: str, user_id: str, op: dict[str, Any]) -> str:
        """One operation, all or nothing: applied, conflict or rejected."""
        rejected = self.rejected_creates.setdefault(device_id, set())
        texts = [v for v in [*op["changes"].values(), *(op.get("args") or {}).values()] if isinstance(v, str)]
        depends = (op["kind"] != "create" and op["id"] in rejected) or any(r in t for r in rejected for t in texts)
        saved = (
            {
                rid: (rec, dict(rec.fields), rec.owner, rec.business_unit, rec.version, len(rec.history))
                for rid, rec in self.records.items()
            },
            len(self.pending),
        )
        try:
            if depends:
                raise Rejected("depends on a rejected create")
            return self._apply(user_id, op)
        except Rejected:
            records, pending = saved
            self.records = {}
            for rid, (rec, fields, owner, bu, version, n) in records.items():
                rec.fields, rec.owner, rec.business_unit, rec.version = fields, owner, bu, version
                del rec.history[n:]
                self.records[rid] = rec
            del self.pending[pending:]
            if op["kind"] == "create":
                rejected.add(op["id"])
            return "rejected"

    def _apply(self, user_id: str, op: dict[str, Any]) -> str:
        entity, rid, kind = op["entity"], op["id"], op["kind"]
        if kind == "create":
            self._create(user_id, entity, rid, self._values(user_id, entity, op["changes"]))
            return "applied"
        if kind == "command":
            return self._command(user_id, op["command"], op["args"])
        rec = self.records.get(rid)
        if rec is None:
            if kind == "delete":
                return "applied"  # already gone: nothing to do
            raise Rejected("update after delete")
        base = op["base_version"]
        stale = base is not None and (rec.version is None or rec.version > base)
        if kind == "delete":
            if stale and self.detection:
                self._readable(user_id, entity, rid)
                return "conflict"
            self._readable(user_id, entity, rid)
            self._require(user_id, "delete", rec)
            self._delete(rec)
            return "applied"
        changes, lost = dict(op["changes"]), set()
        if stale and self.detection:
            server = self.changed_since(rec, base)
            lost = {k for k in changes if attribute_of(entity, k) in server}
            changes = {k: v for k, v in changes.items() if k not in lost}
        self._readable(user_id, entity, rid)
        if changes:
            self._require(user_id, "write", rec)
            if any(k.endswith("@odata.bind") for k in changes):
                self._require(user_id, "append", rec)
            self._update(rec, self._values(user_id, entity, changes))
        return "conflict" if lost else "applied"

    def _command(self, user_id: str, name: str, args: dict[str, Any]) -> str:
        if name == "qualify_lead":
            lead = self._readable(user_id, "lead", args["leadid"])
            if lead.fields["statecode"] != 0:
                raise Rejected("the lead is not open")
            new_ids = args.get("new_ids") or {}
            account = contact = opportunity = None
            if args["create_account"]:
                account = self._create(
                    user_id, "account", new_ids["account"], {"name": lead.fields["lastname"], "telephone1": None}
                )
            if args["create_contact"]:
                parent = ("account", account.id) if account else None
                contact = self._create(
                    user_id,
                    "contact",
                    new_ids["contact"],
                    {"lastname": lead.fields["lastname"], "parentcustomerid": parent},
                )
            if args["create_opportunity"]:
                customer = ("account", account.id) if account else ("contact", contact.id) if contact else None
                opportunity = self._create(
                    user_id,
                    "opportunity",
                    new_ids["opportunity"],
                    {"name": lead.fields["subject"], "customerid": customer, "originatingleadid": lead.id},
                )
            values: dict[str, Any] = {"statecode": 1, "statuscode": 3}
            for attr, rec in (
                ("parentaccountid", account),
                ("parentcontactid", contact),
                ("qualifyingopportunityid", opportunity),
            ):
                if rec is not None:
                    values[attr] = rec.id
            self._update(lead, values)
        elif name == "disqualify_lead":
            lead = self._readable(user_id, "lead", args["leadid"])
            if lead.fields["statecode"] != 0:
                raise Rejected("the lead is not open")
            self._require(user_id, "write", lead)
            self._update(lead, {"statecode": 2, "statuscode": args["statuscode"]})
        elif name == "close_opportunity":
            opp = self._readable(user_id, "opportunity", args["opportunityid"])
            if opp.fields["statecode"] != 0:
                raise Rejected("the opportunity is not open")
            self._require(user_id, "write", opp)
            won = args["status"] == "won"
            self._update(opp, {"statecode": 1 if won else 2, "statuscode": 3 if won else 4})
        else:
            raise AssertionError(name)
        return "applied"

    # --- what others do on the server -----------------------------------------------------

    def server_create(self, user_id: str, entity: str, record_id: str, values: dict[str, Any]) -> None:
        """A user's create through the Web API (no lookups)."""
        self._create(user_id, entity, record_id, values)

    def server_update(self, record_id: str, values: dict[str, Any]) -> None:
        """An administrator's edit through the Web API (no conflict rules: it is not a replay)."""
        self._update(self.records[record_id], values)

    def assign(self, record_id: str, owner: str) -> None:
        """An administrator gives the record to another user (its business unit follows)."""
        self._update(self.records[record_id], {"ownerid": owner})

    # --- matching the change log --------------------------------------------------------

    def match(self, entries: list[dict[str, Any]]) -> None:
        """Check the change log's new entries against the expected writes; learn their versions."""
        want: dict[str, list[Write]] = {}
        for w in self.pending:
            want.setdefault(w.id, []).append(w)
        got: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            got.setdefault(e["recordid"], []).append(e)
        summary_want = {rid: [(w.entity, w.operation, w.fields) for w in ws] for rid, ws in sorted(want.items())}
        summary_got = {
            rid: [
                (e["entity"], e["operation"], frozenset(e["changedfields"] or []) & set(TRACKED.get(e["entity"], ())))
                for e in es
            ]
            for rid, es in sorted(got.items())
        }
        assert summary_got == summary_want, f"change log {summary_got} != expected {summary_want}"
        for rid, ws in want.items():
            for w, e in zip(ws, got[rid], strict=True):
                if w.entry is not None:
                    w.entry[0] = e["changenum"]
                w.rec.version = e["changenum"]
        self.pending = []
