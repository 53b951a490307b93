"""Valid sign-ins must not stall other users' writes (issue 17, item 5).

The password hash (slow on purpose) used to run inside the request's write transaction, holding
SQLite's write lock for its whole duration, and successful sign-ins were not limited: 8 threads
signing in with valid credentials pushed other users' writes to p90 7.5 s. Now the hash runs with
no transaction open, and every attempt, right or wrong, spends a token per address and per
account (429 with Retry-After). `outpost bench --only signin` measures the stall.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from tests.conftest import PASSWORD, Org
from webapp.ratelimit import signin_limits
from webapp.security.accounts import usersession
from webapp.services import services


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions(app: Flask) -> int:
    with services(app).db.session() as s:
        return int(s.execute(select(func.count()).select_from(usersession)).scalar_one())


def login(app: Flask, username: str = "bob", remote: str = "10.0.0.1", password: str = PASSWORD) -> Any:
    client = app.test_client()
    return client.post(
        "/api/auth/login",
        json={"org": "contoso", "username": username, "password": password},
        environ_base={"REMOTE_ADDR": remote},
    )


class OpenTransactions:
    """Counts the transactions open on the app's engines (read and write) at any moment."""

    def __init__(self, app: Flask) -> None:
        self.open = 0
        db = services(app).db
        for engine in {db.read_engine, db.write_engine}:
            event.listen(engine, "begin", self._begin)
            event.listen(engine, "commit", self._end)
            event.listen(engine, "rollback", self._end)

    def _begin(self, _conn: Any) -> None:
        self.open += 1

    def _end(self, _conn: Any) -> None:
        self.open = max(0, self.open - 1)


class WatchingHasher:
    """The app's hasher, noting how many transactions were open each time it checked a password."""

    def __init__(self, real: Any, watch: OpenTransactions) -> None:
        self.real, self.watch = real, watch
        self.seen: list[int] = []

    def verify(self, stored: str, password: str) -> Any:
        self.seen.append(self.watch.open)
        return self.real.verify(stored, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("way", ["api", "console", "wrong password", "unknown user"])
def test_the_password_is_checked_with_no_transaction_open(app: Flask, org: Org, way: str) -> None:
    watch = OpenTransactions(app)
    hasher = WatchingHasher(services(app).hasher, watch)
    services(app).hasher = hasher  # type: ignore[assignment]
    if way == "console":
        client = app.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/signin").get_data(as_text=True))
        assert token
        resp = client.post(
            "/admin/signin",
            data={"org": "contoso", "username": "alice", "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert resp.status_code == 302
    elif way == "api":
        assert login(app).status_code == 200
    elif way == "wrong password":
        assert login(app, password="wrong-password").status_code == 401
    else:
        assert login(app, username="nobody").status_code == 401
    assert hasher.seen == [0], f"transactions open while hashing: {hasher.seen}"  # today: [1], the write lock held


def test_the_password_given_to_recover_a_device_key_is_checked_with_no_transaction_open(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in

    alice = sign_in(app, "contoso", "alice")
    watch = OpenTransactions(app)
    hasher = WatchingHasher(services(app).hasher, watch)
    services(app).hasher = hasher  # type: ignore[assignment]
    resp = alice.post("/api/device-keys/5b1f7c3e-3f0a-4a55-9a43-1c1f1d1e1f10/recover", json={"password": PASSWORD})
    assert resp.status_code in (404, 409), resp.json  # no key stored for that device: the point is the hash
    assert hasher.seen == [0], f"transactions open while hashing: {hasher.seen}"


def test_valid_sign_ins_of_one_account_beyond_its_burst_are_told_to_wait(app: Flask, org: Org) -> None:
    app.config.update(RATE_SIGNINS_PER_USER_BURST=3.0, RATE_SIGNINS_PER_USER_PER_SECOND=0.1)
    clock = Clock()
    signin_limits(app).user.clock = clock
    before = sessions(app)
    statuses = [login(app, remote=f"10.0.0.{i}").status_code for i in range(5)]  # from several addresses
    assert statuses == [200, 200, 200, 429, 429]
    refused = login(app, remote="10.0.0.9")
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert "try again in" in refused.json["error"]["message"]
    assert int(refused.headers["Retry-After"]) == 10  # one token back at 0.1 per second
    assert sessions(app) == before + 3  # a refused sign-in starts no session
    assert login(app, username="alice", remote="10.0.0.9").status_code == 200  # another account is not held up
    clock.now += 10
    assert login(app, remote="10.0.0.9").status_code == 200


def test_sign_ins_from_one_address_beyond_its_burst_are_told_to_wait_whoever_they_are(app: Flask, org: Org) -> None:
    app.config.update(RATE_SIGNINS_PER_ADDRESS_BURST=4.0, RATE_SIGNINS_PER_ADDRESS_PER_SECOND=0.5)
    signin_limits(app).address.clock = Clock()
    answers = [login(app, username=u, remote="10.0.0.7").status_code for u in ("bob", "alice", "bob", "nobody")]
    assert answers == [200, 200, 200, 401]  # wrong ones spend tokens too
    refused = login(app, username="alice", remote="10.0.0.7")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert login(app, username="alice", remote="10.0.0.8").status_code == 200  # another address is not


def test_the_console_sign_in_is_limited_the_same_way(app: Flask, org: Org) -> None:
    app.config.update(RATE_SIGNINS_PER_USER_BURST=1.0, RATE_SIGNINS_PER_USER_PER_SECOND=0.05)
    signin_limits(app).user.clock = Clock()
    assert login(app, username="alice").status_code == 200
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/signin").get_data(as_text=True))
    assert token
    resp = client.post(
        "/admin/signin",
        data={"org": "contoso", "username": "alice", "password": PASSWORD, "csrf_token": token.group(1)},
    )
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "20"
    assert b"Too many sign-ins" in resp.data


def test_rate_limits_off_lifts_the_sign_in_limits_too(app: Flask, org: Org) -> None:
    app.config.update(RATE_LIMITS=False, RATE_SIGNINS_PER_USER_BURST=1.0, RATE_SIGNINS_PER_USER_PER_SECOND=0.001)
    assert [login(app).status_code for _ in range(3)] == [200, 200, 200]


def test_password_checks_run_at_most_the_configured_number_at_once(app: Flask, org: Org) -> None:
    """A crowd of sign-ins queues for the hash instead of taking every core."""
    import threading
    import time as clock

    app.config.update(SIGNIN_HASHES_AT_ONCE=1, RATE_LIMITS=False)
    real = services(app).hasher
    state = {"now": 0, "most": 0}
    guard = threading.Lock()

    class Slow:
        def verify(self, stored: str, password: str) -> Any:
            with guard:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            try:
                clock.sleep(0.05)  # a hash's duration, so the others arrive while it runs
                return real.verify(stored, password)
            finally:
                with guard:
                    state["now"] -= 1

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    services(app).hasher = Slow()  # type: ignore[assignment]
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(login(app).status_code)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers == [200] * 6
    assert state["most"] == 1  # without the gate, hashing outside any lock ran all 6 at once
