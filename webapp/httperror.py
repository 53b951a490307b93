"""`ApiError`: an error the HTTP layer raises itself (authentication, CSRF, origin, throttling).

It sits below `api/` and `sync/` because both raise it: the sync socket refuses a bad
handshake with it before the upgrade, and `api/errors.py` turns it into the one JSON error
shape for every path.
"""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP status, an error code and a message for people (plus headers, e.g. Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
