"""The admission gate (webapp/admission.py): requests wait for a slot, /healthz never does."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask

from tests.conftest import Org, sign_in
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
