"""The admission gate (webapp/admission.py): requests wait for a slot, /healthz never does."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Org, sign_in
from webapp import signin
from webapp.admission import admission


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """Run `call` on a thread of its own; its result lands in the list."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


def test_a_request_waits_for_a_slot_while_healthz_answers_at_once(app: Flask, org: Org) -> None:
    api = sign_in(app, org.name, "bob")
    gate = admission(app)
    assert gate.slots == app.config["ADMISSION_SLOTS"]
    held = [gate.slot() for _ in range(gate.slots)]
    for slot in held:  # every slot taken, as by a storm of reconnecting phones
        slot.__enter__()
    try:
        me, answered = in_thread(lambda: api.get("/api/auth/me").status_code)
        health, healthy = in_thread(lambda: app.test_client().get("/healthz").status_code)
        health.join(30)
        assert healthy == [200]
        me.join(0.5)  # still waiting for its slot
        assert me.is_alive() and answered == []
    finally:
        for slot in held:
            slot.__exit__(None, None, None)
    me.join(30)
    assert answered == [200]


class HeldHashGate:
    """Every password check busy: a sign-in that reaches the hash gate waits there until `open`."""

    def __init__(self) -> None:
        self.waiting = 0
        self.opened = threading.Event()
        self.lock = threading.Lock()

    def acquire(self, timeout: float | None = None) -> bool:
        with self.lock:
            self.waiting += 1
        return self.opened.wait(timeout)

    def release(self) -> None:
        pass


def test_sign_ins_queued_for_a_password_check_hold_no_place(
    app: Flask, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crowd of sign-ins waiting for the hash gate must not fill the admission gate: another
    user's request still gets a place (issue 17's stall, through the back door)."""
    api = sign_in(app, org.name, "bob")
    gate = admission(app)
    hashes = HeldHashGate()
    monkeypatch.setattr(signin, "_hash_gate", lambda _app: hashes)
    body = {"org": org.name, "username": "alice", "password": "wrong"}
    crowd = [
        in_thread(lambda: app.test_client().post("/api/auth/login", json=body).status_code)
        for _ in range(gate.slots + 2)
    ]
    try:
        for _ in range(600):  # every sign-in is parked at the hash gate (or still waits for a place)
            if hashes.waiting >= gate.slots:
                break
            threading.Event().wait(0.05)
        assert hashes.waiting >= gate.slots
        me, answered = in_thread(lambda: api.get("/api/auth/me").status_code)
        me.join(10)
        assert answered == [200], "a sign-in queued for its hash kept an admission place"
    finally:
        hashes.opened.set()
    for thread, status in crowd:
        thread.join(30)
        assert status == [401]
