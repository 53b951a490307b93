"""Signing in, for the app's API and the console alike: limited, and never hashing under a lock.

A password check is slow on purpose (argon2id). Done inside the request's write transaction —
SQLite's BEGIN IMMEDIATE, taken at the request's first statement — it held the database's write
lock for the whole hash, so a crowd of valid sign-ins stalled every other user's writes
(issue 17: 8 threads signing in pushed writes to p90 7.5 s). Here the credentials are read in a
read transaction that ends before the hash, the hash runs with no transaction open, and the
writes after it (the failure count, the session) take a short transaction of their own.

At most SIGNIN_HASHES_AT_ONCE password checks run at a time in a process (default: half the
cores, at least one): argon2id takes a core and 64 MiB for a second or so, so eight at once left
nothing for anyone else; the rest queue (up to 10 s, then 429).

Every attempt — right or wrong — spends a token per address and per (organisation, username)
(webapp/ratelimit.py); without one the answer is 429 with Retry-After, before any database
work or hashing. Failed sign-ins are also counted in the database (webapp/security/accounts.py:
five per account or thirty per address in 15 minutes), across processes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from flask import Flask

from webapp.admission import admission
from webapp.ratelimit import signin_limits
from webapp.security.accounts import (
    THROTTLE_WINDOW,
    SessionInfo,
    clear_failures,
    find_credentials,
    is_throttled,
    password_matches,
    record_failure,
    start_session,
)
from webapp.services import services


class SignInRefused(Exception):
    """A sign-in refused: `status` 401 (wrong) or 429 (limited), `retry_after` seconds for 429."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's token (shown once) and the session."""

    token: str
    info: SessionInfo


WRONG = "The organisation, username or password is wrong."
HASH_QUEUE_SECONDS = 10.0


def _hash_gate(app: Flask) -> threading.BoundedSemaphore:
    gate = app.extensions.get("outpost_hash_gate")
    if gate is None:
        gate = app.extensions.setdefault(
            "outpost_hash_gate", threading.BoundedSemaphore(int(app.config["SIGNIN_HASHES_AT_ONCE"]))
        )
    return gate  # type: ignore[no-any-return]


def sign_in(app: Flask, orgname: str, username: str, password: str, remote: str) -> SignedIn:
    """Check the credentials and start a session, or raise SignInRefused."""
    if app.config["RATE_LIMITS"]:
        buckets = signin_limits(app)
        wait = buckets.address.take((remote,))
        if wait is None:
            wait = buckets.user.take((orgname.lower(), username.lower()))
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise SignInRefused(
                429, "rate_limited", f"Too many sign-ins in a short time; try again in {seconds} s.", seconds
            )
    svc = services(app)
    with svc.db.session() as read:  # a read transaction: it never holds the write lock
        throttled = is_throttled(read, orgname, username, remote)
        found = None if throttled else find_credentials(read, orgname, username)
    if throttled:
        window = int(THROTTLE_WINDOW.total_seconds())
        raise SignInRefused(429, "throttled", "Too many failed sign-ins; wait a few minutes and try again.", window)
    # Slow on purpose, and no transaction is open. At most HASHES_AT_ONCE at a time in a process,
    # so a crowd of sign-ins queues here instead of taking every core from the other requests.
    # The request's admission place is given back meanwhile (webapp/admission.py): the hash
    # gate bounds this work itself, and other users' requests go on.
    gate = _hash_gate(app)
    with admission(app).aside():
        if not gate.acquire(timeout=HASH_QUEUE_SECONDS):
            raise SignInRefused(429, "rate_limited", "Too many sign-ins at once; try again in a few seconds.", 5)
        try:
            right = password_matches(svc.hasher, found, password)
        finally:
            gate.release()
    with svc.db.session(write=True) as write:
        if not right or found is None:
            record_failure(write, orgname, username, remote)
            write.commit()
            raise SignInRefused(401, "invalid_credentials", WRONG)
        clear_failures(write, orgname, username)
        token, info = start_session(write, found.org_id, found.user_id)
        write.commit()
    return SignedIn(token, info)
