"""Errors of the CRM layer: each has a code, a message for people, and the field at fault.

The CRM layer knows no HTTP; `webapp.api.errors` maps each class to a status code, and the
sync layer maps the same classes to `reason` objects, so a refusal reads the same everywhere.
"""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """Base class: a request the CRM refuses, with nothing changed."""

    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON object of PROTOCOL.md §3."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details is not None:
            out["details"] = self.details
        return out


class BadRequest(CrmError):
    """Malformed request or query."""

    code = "bad_request"


class NotFound(CrmError):
    """No such record, or one the user may not read (indistinguishable on purpose)."""

    code = "not_found"


class Forbidden(CrmError):
    """The user may see the record but lacks the privilege for this action."""

    code = "forbidden"


class DuplicateId(CrmError):
    """A create carried an id that is already taken."""

    code = "duplicate_id"


class ValidationFailed(CrmError):
    """The payload breaks the metadata's rules; `details` has the per-field messages."""

    code = "validation_failed"


class NotAllowed(CrmError):
    """The entity does not support this operation at all (e.g. create on activitypointer)."""

    code = "not_allowed"
