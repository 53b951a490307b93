"""The console's people and structure pages, one module per concept: `users`, `teams`,
`units` (business units and positions), `roles` (the privilege grid), `fieldprofiles` (field
security); `forms` holds the fields and lookups they share.

Structure records are ordinary entity records written by the system actor, so they are
change-logged and reach devices like any other record. All the pages hang on one blueprint,
so their endpoints stay `admin.people.<page>` whichever module serves them.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("people", __name__)

# Each module adds its pages to `bp` as it is imported; they import `bp` from here.
from webapp.admin.people import fieldprofiles, roles, teams, units, users  # noqa: E402

__all__ = ["bp", "fieldprofiles", "roles", "teams", "units", "users"]
