"""Who may do what (DESIGN.md §4): accounts and sessions, roles and depths, scopes, sharing,
hierarchy and field security — one implementation used by every path."""

from webapp.security import accounts as accounts  # registers its tables on the shared metadata
from webapp.security import audit as audit
from webapp.security import tables as tables
