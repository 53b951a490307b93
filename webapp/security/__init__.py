"""Who may do what: accounts and sessions now; roles, scopes and sharing (DESIGN.md §4)."""

from webapp.security import accounts as accounts  # registers its tables on the shared metadata
