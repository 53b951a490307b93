"""The business commands declared as data (PROTOCOL.md §4), published in the metadata document
as `commands`: which record each is about, what its arguments must be, what must hold before it
runs, which records it finds, creates and changes, and every refusal with its words.

webapp/crm/commandrules.py interprets this for the server and webapp/static/js/commandrules.js
for the phone, which gets it in GET /api/metadata; neither names an entity, a field or a
message. tests/cases/rules/commands.json is the table of cases both must pass.

The language, kept small on purpose (commandrules.py says exactly how each part is read):

- `args`: in the order they are checked, each argument's `name` and `type`: `id` (a lower-case
  UUID), `boolean`, `choice` (one of `values`), `status` (a statuscode of the subject entity's
  state `state`: the allowed values and their labels come from the entity's metadata; `labels`
  accepts a label for its value; `default` when absent), `value` (any, checked by the write
  itself), `new_ids` (the ids the device minted, one per created entity); an argument with a
  `when` is checked only when its condition holds.
- `require`: what the subject record must hold (`field` equal to `is`).
- `find`: follow a lookup of the subject to the record a new one needs (`accept` those
  entities as they are, go `through` others by one of their lookups, `refuse` some).
- `records`: records to take (`existing`, an argument naming one) or create (`when`), each
  attribute set from an expression; `update`: the subject's changes, in parts with a `when`.
- Expressions: `{"value": v}`, `{"arg": name}`, `{"field": name}` (of the subject; a lookup
  gives the record it points to), `{"ref": name}` (a record in play: `subject` or one made),
  `{"first": [...]}` (the first that is set and not empty), `{"today": true}`; `skip_null`
  leaves an attribute out when its value is null (a lookup with no record always is).
"""

from __future__ import annotations

from typing import Any

# The lead-to-opportunity sales process: metadata the forms show as a stage bar.
SALES_PROCESS: dict[str, Any] = {
    "id": "lead-to-opportunity",
    "name": "Lead to Opportunity Sales Process",
    "entity": "opportunity",
    "attribute": "stepname",
    "stages": ["1-Qualify", "2-Develop", "3-Propose", "4-Close"],
    "after_qualify": "2-Develop",
}

ID = {"type": "id"}
FLAG = {"type": "boolean"}
OPEN = 0  # the statecode every command's subject starts from


def _field(name: str) -> dict[str, Any]:
    return {"field": name}


def _set(value: Any) -> dict[str, Any]:
    return {"value": value}


def _args(specs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Arguments as a list: they are checked in this order (the document's objects travel with
    sorted keys, so an order that matters is a list)."""
    return [{"name": name, **spec} for name, spec in specs.items()]


# Refusals common to every command; {key} and {name} are filled in.
MESSAGES: dict[str, dict[str, Any]] = {
    "unknown_command": {"message": "There is no command '{name}'; the commands are {names}."},
    "not_available": {"message": "{name} is not available for {entity}."},
    "not_an_object": {"message": "The arguments must be a JSON object."},
    "unknown_argument": {"message": "{key}: not an argument of this command.", "detail": "Unknown argument."},
    "id": {"message": "{key} must be a lower-case UUID.", "detail": "Must be a lower-case UUID."},
    "boolean": {"message": "{key} must be true or false.", "detail": "Not a valid boolean."},
    "new_ids": {"message": "new_ids must be an object.", "detail": "Not an object."},
    "new_id": {"message": "new_ids.{key} must be a lower-case UUID."},
}

COMMANDS: dict[str, dict[str, Any]] = {
    "qualify_lead": {
        "entity": "lead",
        "subject": "leadid",
        "args": _args(
            {
                "leadid": {**ID, "required": True},
                "create_account": FLAG,
                "create_contact": FLAG,
                "create_opportunity": FLAG,
                "existing_account_id": ID,
                "existing_contact_id": ID,
                "new_ids": {"type": "new_ids"},
            }
        ),
        "require": {"field": "statecode", "is": OPEN, "message": "The lead is not open."},
        "records": [
            {
                "as": "account",
                "entity": "account",
                "existing": "existing_account_id",
                "when": {"arg": "create_account"},
                "set": {
                    "name": {"first": [_field("companyname"), _field("fullname"), _field("subject")]},
                    "telephone1": _field("telephone1"),
                    "emailaddress1": _field("emailaddress1"),
                    "transactioncurrencyid": _field("transactioncurrencyid"),
                },
            },
            {
                "as": "contact",
                "entity": "contact",
                "existing": "existing_contact_id",
                "when": {"arg": "create_contact"},
                "set": {
                    "firstname": _field("firstname"),
                    "lastname": {"first": [_field("lastname"), _field("subject")]},
                    "jobtitle": _field("jobtitle"),
                    "emailaddress1": _field("emailaddress1"),
                    "telephone1": _field("telephone1"),
                    "parentcustomerid": {"ref": "account"},
                },
            },
            {
                "as": "opportunity",
                "entity": "opportunity",
                "when": {"arg": "create_opportunity"},
                "set": {
                    "name": _field("subject"),
                    "estimatedvalue": _field("estimatedamount"),
                    "stepname": _set(SALES_PROCESS["after_qualify"]),
                    "originatingleadid": {"ref": "subject"},
                    "customerid": {"first": [{"ref": "account"}, {"ref": "contact"}]},
                    "transactioncurrencyid": _field("transactioncurrencyid"),
                },
            },
        ],
        "update": [
            {
                "set": {
                    "statecode": _set(1),
                    "statuscode": _set(3),
                    "parentaccountid": {"ref": "account"},
                    "parentcontactid": {"ref": "contact"},
                    "qualifyingopportunityid": {"ref": "opportunity"},
                }
            }
        ],
    },
    "disqualify_lead": {
        "entity": "lead",
        "subject": "leadid",
        "args": _args(
            {
                "leadid": {**ID, "required": True},
                "statuscode": {
                    "type": "status",
                    "state": 2,
                    "labels": True,
                    "message": "statuscode must be one of {choices}.",
                    "choice": "{value} ({label})",
                    "join": ", ",
                    "detail": "Not a reason.",
                },
            }
        ),
        "require": {"field": "statecode", "is": OPEN, "message": "The lead is not open."},
        "update": [{"set": {"statecode": _set(2), "statuscode": {"arg": "statuscode"}}}],
    },
    "convert_activity_to_case": {
        "entity": "appointment",
        "subject": "activityid",
        "args": _args(
            {"activityid": {**ID, "required": True}, "complete_activity": FLAG, "new_ids": {"type": "new_ids"}}
        ),
        "find": {
            "as": "customer",
            "from": "regardingobjectid",
            "accept": ["account", "contact"],
            "through": {"opportunity": "customerid"},
            "refuse": {"incident": {"message": "The appointment is already about a case."}},
            "missing": {
                "message": "A case needs a customer: set the appointment's Regarding to an account, a contact"
                " or an opportunity.",
                "detail": "Needs an account, a contact or an opportunity with a customer.",
            },
        },
        "records": [
            {
                "as": "case",
                "entity": "incident",
                "set": {
                    "title": _field("subject"),
                    "description": _field("description"),
                    "customerid": {"ref": "customer"},
                    "caseorigincode": _set(4),
                },
            }
        ],
        "update": [
            {"set": {"regardingobjectid": {"ref": "case"}}},
            {"when": {"arg": "complete_activity"}, "set": {"statecode": _set(1), "statuscode": _set(2)}},
        ],
    },
    "close_opportunity": {
        "entity": "opportunity",
        "subject": "opportunityid",
        "args": _args(
            {
                "opportunityid": {**ID, "required": True},
                "status": {
                    "type": "choice",
                    "values": ["won", "lost"],
                    "message": "status must be 'won' or 'lost'.",
                    "detail": "Must be won or lost.",
                },
                "actualvalue": {"type": "value"},
                "actualclosedate": {"type": "value"},
                "statuscode": {
                    "type": "status",
                    "state": 2,
                    "default": 4,
                    "when": {"arg": "status", "is": "lost"},
                    "message": "statuscode for a lost opportunity is {choices}.",
                    "choice": "{value} ({label})",
                    "join": " or ",
                },
                "competitorid": ID,
            }
        ),
        "require": {"field": "statecode", "is": OPEN, "message": "The opportunity is not open."},
        "update": [
            {"set": {"actualclosedate": {"first": [{"arg": "actualclosedate"}, {"today": True}]}}},
            {
                "when": {"arg": "status", "is": "won"},
                "set": {
                    "actualvalue": {"first": [{"arg": "actualvalue"}, _field("estimatedvalue")], "skip_null": True},
                    "statecode": _set(1),
                    "statuscode": _set(3),
                    "closeprobability": _set(100),
                    "stepname": _set(SALES_PROCESS["stages"][-1]),
                },
            },
            {
                "when": {"arg": "status", "is": "lost"},
                "set": {
                    "actualvalue": {"arg": "actualvalue", "skip_null": True},
                    "statecode": _set(2),
                    "statuscode": {"arg": "statuscode"},
                    "closeprobability": _set(0),
                    "competitorid": {"arg": "competitorid"},
                },
            },
        ],
    },
}


def declaration() -> dict[str, Any]:
    """The commands as published in the metadata document (`commands`)."""
    return {"messages": MESSAGES, "commands": COMMANDS}
