"""Rate limits on operations: token buckets per user, shared by the socket and the HTTP API.

A device replaying a day of offline work sends a few thousand operations in batches, far
below the limits; a client that floods the server (a loop gone wrong, a hostile script) is
told to wait (`rate_limited` frame / HTTP 429 with Retry-After) and nothing it sent in the
refused call is applied. Buckets live in the process: with several workers each enforces its
own share, which is what bounds that process's work. Sign-in attempts, right or wrong, have
buckets per address and per account here (webapp/signin.py); failed ones are also counted in
the database (webapp/security/accounts.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask


@dataclass
class Bucket:
    """`tokens` now, refilled at `rate` per second up to `burst`."""

    tokens: float
    stamp: float


class Limiter:
    """Token buckets by key: `take(key, cost)` answers None (go on) or the seconds to wait."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[tuple[str, ...], Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, ...], cost: float = 1.0) -> float | None:
        """Spend `cost` tokens of `key`'s bucket, or say how long until they would be there."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if cost <= bucket.tokens:
                bucket.tokens -= cost
                return None
            if len(self._buckets) > 100_000:  # forget idle keys (a full bucket is the default anyway)
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < self.burst}
            return (cost - bucket.tokens) / self.rate

    def charge(self, key: tuple[str, ...], cost: float) -> None:
        """Spend `cost` tokens now, into debt if need be: for work whose cost is known only
        after it is done (records a query returned). `ready` then refuses until the debt is paid."""
        with self._lock:
            bucket = self._refilled(key)
            bucket.tokens = max(-self.burst, bucket.tokens - cost)

    def ready(self, key: tuple[str, ...]) -> float | None:
        """None when `key`'s bucket is not in debt, else the seconds until it is not."""
        with self._lock:
            bucket = self._refilled(key)
            return None if bucket.tokens >= 0 else -bucket.tokens / self.rate

    def _refilled(self, key: tuple[str, ...]) -> Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket


@dataclass
class Limits:
    """The app's limiters: frames per connection's user, operations per user, HTTP writes and
    records read per user."""

    frames: Limiter
    operations: Limiter
    http_writes: Limiter
    http_reads: Limiter  # records, not requests: a page costs its size


def limits(app: Flask) -> Limits:
    """The app's limiters, made from its configuration on first use."""
    found = app.extensions.get("outpost_limits")
    if found is None:
        c = app.config
        found = app.extensions.setdefault(
            "outpost_limits",
            Limits(
                frames=Limiter(c["RATE_FRAMES_PER_SECOND"], c["RATE_FRAMES_BURST"]),
                operations=Limiter(c["RATE_OPS_PER_SECOND"], c["RATE_OPS_BURST"]),
                http_writes=Limiter(c["RATE_HTTP_WRITES_PER_SECOND"], c["RATE_HTTP_WRITES_BURST"]),
                http_reads=Limiter(c["RATE_HTTP_READ_RECORDS_PER_SECOND"], c["RATE_HTTP_READ_RECORDS_BURST"]),
            ),
        )
    return found  # type: ignore[no-any-return]


@dataclass
class SigninLimits:
    """Sign-in attempts per address and per (organisation, username): kept apart from `Limits`,
    so a sign-in does not fix the other limiters' settings before a caller changes them."""

    address: Limiter
    user: Limiter


def signin_limits(app: Flask) -> SigninLimits:
    """The app's sign-in limiters, made from its configuration on first use."""
    found = app.extensions.get("outpost_signin_limits")
    if found is None:
        c = app.config
        found = app.extensions.setdefault(
            "outpost_signin_limits",
            SigninLimits(
                address=Limiter(c["RATE_SIGNINS_PER_ADDRESS_PER_SECOND"], c["RATE_SIGNINS_PER_ADDRESS_BURST"]),
                user=Limiter(c["RATE_SIGNINS_PER_USER_PER_SECOND"], c["RATE_SIGNINS_PER_USER_BURST"]),
            ),
        )
    return found  # type: ignore[no-any-return]
