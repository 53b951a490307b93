"""The business commands (PROTOCOL.md §4): qualify and disqualify a lead, convert an activity
to a case, close an opportunity as won or lost.

Each command is one meaning with two engines: this module on the server and
`static/js/commands.js` on the device, with the same names, arguments and results. Here the
command only decides WHAT to write; it writes through a `CommandIO` the caller supplies (the
security layer binds it to the signed-in user), so every record it creates or changes passes
the same privilege checks as any other write, and the caller's transaction makes the whole
command all or nothing. New records take the ids the device minted (`new_ids`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.crm.errors import BadRequest, NotAllowed, ValidationFailed

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The lead-to-opportunity sales process: metadata the forms show as a stage bar.
SALES_PROCESS = {
    "id": "lead-to-opportunity",
    "name": "Lead to Opportunity Sales Process",
    "entity": "opportunity",
    "attribute": "stepname",
    "stages": ["1-Qualify", "2-Develop", "3-Propose", "4-Close"],
    "after_qualify": "2-Develop",
}
DISQUALIFY_REASONS = {4: "Lost", 5: "Cannot Contact", 6: "No Longer Interested", 7: "Canceled"}
COMMAND_NEW_ENTITIES = ("account", "contact", "opportunity", "incident")  # the keys of new_ids
COMMAND_ENTITY = {
    "qualify_lead": "lead",
    "disqualify_lead": "lead",
    "convert_activity_to_case": "appointment",
    "close_opportunity": "opportunity",
}


class CommandIO(Protocol):
    """How a command reads and writes: bound by the caller to a user and a transaction."""

    def get(self, entity: str, record_id: str) -> dict[str, Any]:
        """A readable record's columns (NotFound otherwise)."""

    def create(self, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Create a record from a Web API payload; returns its columns."""

    def update(self, entity: str, record_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Update a record from a Web API payload; returns its columns."""

    def entity_set(self, entity: str) -> str:
        """The entity-set name of an entity (for `@odata.bind`)."""


@dataclass
class Outcome:
    """What a command created and updated, in order."""

    created: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updated: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _bool(args: dict[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{key} must be true or false.", field=key, details={key: ["Not a valid boolean."]})
    return value


def _id(args: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise ValidationFailed(
            f"{key} must be a lower-case UUID.", field=key, details={key: ["Must be a lower-case UUID."]}
        )
    return value


def _new_id(args: dict[str, Any], name: str) -> str | None:
    ids = args.get("new_ids") or {}
    if not isinstance(ids, dict):
        raise ValidationFailed("new_ids must be an object.", field="new_ids", details={"new_ids": ["Not an object."]})
    value = ids.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise ValidationFailed(f"new_ids.{name} must be a lower-case UUID.", field="new_ids")
    return value


def _bind(io: CommandIO, entity: str, record_id: str) -> str:
    return f"/{io.entity_set(entity)}({record_id})"


def _check_args(args: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise ValidationFailed("The arguments must be a JSON object.")
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ValidationFailed(
            f"{unknown[0]}: not an argument of this command.",
            field=unknown[0],
            details={k: ["Unknown argument."] for k in unknown},
        )
    return args


def _require_open(row: dict[str, Any], what: str) -> None:
    if row.get("statecode") != 0:
        raise ValidationFailed(
            f"The {what} is not open.", field="statecode", details={"statecode": [f"The {what} is not open."]}
        )


def qualify_lead(io: CommandIO, args: Any) -> Outcome:
    """Qualify a lead: optionally create (or pick) an account, a contact and an opportunity."""
    args = _check_args(
        args,
        {
            "leadid",
            "create_account",
            "create_contact",
            "create_opportunity",
            "existing_account_id",
            "existing_contact_id",
            "new_ids",
        },
    )
    lead_id = _id(args, "leadid") or ""
    lead = io.get("lead", lead_id)
    _require_open(lead, "lead")
    out = Outcome()
    account_id = _id(args, "existing_account_id", required=False)
    contact_id = _id(args, "existing_contact_id", required=False)
    if account_id:
        io.get("account", account_id)
    elif _bool(args, "create_account"):
        name = lead.get("companyname") or lead.get("fullname") or lead.get("subject")
        payload = {"name": name, "telephone1": lead.get("telephone1"), "emailaddress1": lead.get("emailaddress1")}
        if lead.get("transactioncurrencyid"):
            payload["transactioncurrencyid@odata.bind"] = _bind(
                io, "transactioncurrency", lead["transactioncurrencyid"]
            )
        new = _new_id(args, "account")
        if new:
            payload["accountid"] = new
        row = io.create("account", payload)
        account_id = row["accountid"]
        out.created.append(("account", row))
    if contact_id:
        io.get("contact", contact_id)
    elif _bool(args, "create_contact"):
        payload = {
            "firstname": lead.get("firstname"),
            "lastname": lead.get("lastname") or lead.get("subject"),
            "jobtitle": lead.get("jobtitle"),
            "emailaddress1": lead.get("emailaddress1"),
            "telephone1": lead.get("telephone1"),
        }
        if account_id:
            payload["parentcustomerid_account@odata.bind"] = _bind(io, "account", account_id)
        new = _new_id(args, "contact")
        if new:
            payload["contactid"] = new
        row = io.create("contact", payload)
        contact_id = row["contactid"]
        out.created.append(("contact", row))
    opportunity_id = None
    if _bool(args, "create_opportunity"):
        payload = {
            "name": lead.get("subject"),
            "estimatedvalue": float(lead["estimatedamount"]) if lead.get("estimatedamount") is not None else None,
            "stepname": SALES_PROCESS["after_qualify"],
            "originatingleadid@odata.bind": _bind(io, "lead", lead_id),
        }
        if account_id:
            payload["customerid_account@odata.bind"] = _bind(io, "account", account_id)
        elif contact_id:
            payload["customerid_contact@odata.bind"] = _bind(io, "contact", contact_id)
        if lead.get("transactioncurrencyid"):
            payload["transactioncurrencyid@odata.bind"] = _bind(
                io, "transactioncurrency", lead["transactioncurrencyid"]
            )
        new = _new_id(args, "opportunity")
        if new:
            payload["opportunityid"] = new
        row = io.create("opportunity", payload)
        opportunity_id = row["opportunityid"]
        out.created.append(("opportunity", row))
    changes: dict[str, Any] = {"statecode": 1, "statuscode": 3}
    if account_id:
        changes["parentaccountid@odata.bind"] = _bind(io, "account", account_id)
    if contact_id:
        changes["parentcontactid@odata.bind"] = _bind(io, "contact", contact_id)
    if opportunity_id:
        changes["qualifyingopportunityid@odata.bind"] = _bind(io, "opportunity", opportunity_id)
    out.updated.append(("lead", io.update("lead", lead_id, changes)))
    return out


def disqualify_lead(io: CommandIO, args: Any) -> Outcome:
    """Disqualify a lead with a reason: Lost, Cannot Contact, No Longer Interested or Canceled."""
    args = _check_args(args, {"leadid", "statuscode"})
    lead_id = _id(args, "leadid") or ""
    status = args.get("statuscode")
    if isinstance(status, str):
        status = next((k for k, v in DISQUALIFY_REASONS.items() if v.lower() == status.lower()), status)
    if status not in DISQUALIFY_REASONS or isinstance(status, bool):
        reasons = ", ".join(f"{k} ({v})" for k, v in DISQUALIFY_REASONS.items())
        raise ValidationFailed(
            f"statuscode must be one of {reasons}.", field="statuscode", details={"statuscode": ["Not a reason."]}
        )
    lead = io.get("lead", lead_id)
    _require_open(lead, "lead")
    return Outcome(updated=[("lead", io.update("lead", lead_id, {"statecode": 2, "statuscode": status}))])


def convert_activity_to_case(io: CommandIO, args: Any) -> Outcome:
    """Turn an appointment into a case: title from the subject, customer from the regarding record."""
    args = _check_args(args, {"activityid", "complete_activity", "new_ids"})
    activity_id = _id(args, "activityid") or ""
    complete = _bool(args, "complete_activity")
    activity = io.get("appointment", activity_id)
    regarding, kind = activity.get("regardingobjectid"), activity.get("regardingobjectid__type")
    customer: tuple[str, str] | None = None
    if regarding and kind in ("account", "contact"):
        customer = (kind, regarding)
    elif regarding and kind == "opportunity":
        opp = io.get("opportunity", regarding)
        if opp.get("customerid"):
            customer = (opp["customerid__type"], opp["customerid"])
    elif regarding and kind == "incident":
        raise ValidationFailed("The appointment is already about a case.", field="regardingobjectid")
    if customer is None:
        raise ValidationFailed(
            "A case needs a customer: set the appointment's Regarding to an account, a contact or an opportunity.",
            field="regardingobjectid",
            details={"regardingobjectid": ["Needs an account, a contact or an opportunity with a customer."]},
        )
    payload: dict[str, Any] = {
        "title": activity.get("subject"),
        "description": activity.get("description"),
        f"customerid_{customer[0]}@odata.bind": _bind(io, customer[0], customer[1]),
        "caseorigincode": 4,
    }
    new = _new_id(args, "incident")
    if new:
        payload["incidentid"] = new
    case = io.create("incident", payload)
    changes: dict[str, Any] = {"regardingobjectid_incident@odata.bind": _bind(io, "incident", case["incidentid"])}
    if complete:
        changes.update({"statecode": 1, "statuscode": 2})
    out = Outcome(created=[("incident", case)])
    out.updated.append(("appointment", io.update("appointment", activity_id, changes)))
    return out


def close_opportunity(io: CommandIO, args: Any, today: Callable[[], dt.date] | None = None) -> Outcome:
    """Close an opportunity as won (actual value, close date) or lost (reason, optional competitor)."""
    args = _check_args(
        args, {"opportunityid", "status", "actualvalue", "actualclosedate", "statuscode", "competitorid"}
    )
    opp_id = _id(args, "opportunityid") or ""
    status = args.get("status")
    if status not in ("won", "lost"):
        raise ValidationFailed(
            "status must be 'won' or 'lost'.", field="status", details={"status": ["Must be won or lost."]}
        )
    opp = io.get("opportunity", opp_id)
    _require_open(opp, "opportunity")
    actual = args.get("actualvalue")
    if actual is None and status == "won" and opp.get("estimatedvalue") is not None:
        actual = float(opp["estimatedvalue"])
    close_date = args.get("actualclosedate") or (today or dt.date.today)().isoformat()
    changes: dict[str, Any] = {"actualclosedate": close_date}
    if actual is not None:
        changes["actualvalue"] = actual
    if status == "won":
        changes.update(
            {"statecode": 1, "statuscode": 3, "closeprobability": 100, "stepname": SALES_PROCESS["stages"][-1]}
        )
    else:
        reason = args.get("statuscode", 4)
        if reason not in (4, 5) or isinstance(reason, bool):
            raise ValidationFailed(
                "statuscode for a lost opportunity is 4 (Canceled) or 5 (Out-Sold).", field="statuscode"
            )
        changes.update({"statecode": 2, "statuscode": reason, "closeprobability": 0})
        competitor = _id(args, "competitorid", required=False)
        if competitor:
            changes["competitorid@odata.bind"] = _bind(io, "competitor", competitor)
    return Outcome(updated=[("opportunity", io.update("opportunity", opp_id, changes))])


COMMANDS: dict[str, Callable[[CommandIO, Any], Outcome]] = {
    "qualify_lead": qualify_lead,
    "disqualify_lead": disqualify_lead,
    "convert_activity_to_case": convert_activity_to_case,
    "close_opportunity": close_opportunity,
}


def run(io: CommandIO, name: str, args: Any, entity_commands: dict[str, tuple[str, ...]]) -> Outcome:
    """Run a command by name; refused where the entity's command set does not allow it."""
    if name not in COMMANDS:
        raise BadRequest(f"There is no command '{name}'; the commands are {', '.join(COMMANDS)}.")
    entity = COMMAND_ENTITY[name]
    if name not in entity_commands.get(entity, ()):
        raise NotAllowed(f"{name} is not available for {entity}.")
    return COMMANDS[name](io, args)


def subject_id(name: str, args: Any) -> str | None:
    """The id of the record a command is about (the lead, appointment or opportunity)."""
    key = {"lead": "leadid", "appointment": "activityid", "opportunity": "opportunityid"}[COMMAND_ENTITY[name]]
    value = args.get(key) if isinstance(args, dict) else None
    return value if isinstance(value, str) else None
