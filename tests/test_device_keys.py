"""The server-held copy of a device store's data key, and the app PIN setting (DESIGN.md §6)."""

from __future__ import annotations

import base64
import os
import re
import uuid

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from tests.conftest import PASSWORD, Api, Org, sign_in
from webapp.services import services
from webapp.sync.devices import register, revoke
from webapp.sync.tables import devicekey

KEY = base64.b64encode(os.urandom(32)).decode()


def new_device() -> str:
    return str(uuid.uuid4())


def put(api: Api, device_id: str, body: object) -> object:
    return api.client.put(f"/api/device-keys/{device_id}", json=body, headers={"X-CSRF-Token": api.csrf})


def recover(api: Api, device_id: str, password: str = PASSWORD) -> object:
    return api.post(f"/api/device-keys/{device_id}/recover", {"password": password})


def test_a_device_key_kept_on_the_server_comes_back_to_its_user_with_the_password(
    app: Flask, org: Org, alice: Api
) -> None:
    device_id = new_device()
    resp = put(alice, device_id, {"key": KEY})
    assert resp.status_code == 201, resp.json
    assert put(alice, device_id, {"key": KEY}).status_code == 200  # a new PIN, the same key: replaced
    got = recover(alice, device_id)
    assert got.status_code == 200, got.json
    assert got.json == {"device_id": device_id, "key": KEY}
    assert got.headers["Cache-Control"] == "no-store"


def test_a_wrong_password_gets_no_key_and_counts_towards_the_sign_in_throttle(app: Flask, org: Org, alice: Api) -> None:
    device_id = new_device()
    put(alice, device_id, {"key": KEY})
    resp = recover(alice, device_id, "not-the-password")
    assert resp.status_code == 403
    assert resp.json["error"]["code"] == "invalid_credentials"
    assert "key" not in resp.json
    for _ in range(10):
        recover(alice, device_id, "not-the-password")
    throttled = recover(alice, device_id)
    assert throttled.status_code == 429
    assert "key" not in throttled.json


def test_another_user_can_neither_read_nor_replace_nor_delete_a_device_key(
    app: Flask, org: Org, alice: Api, carol: Api
) -> None:
    device_id = new_device()
    put(alice, device_id, {"key": KEY})
    bob = sign_in(app, "contoso", "bob")
    assert recover(bob, device_id).status_code == 403
    assert put(bob, device_id, {"key": base64.b64encode(os.urandom(32)).decode()}).status_code == 403
    assert carol.delete(f"/api/device-keys/{device_id}").status_code == 204  # deletes nothing of alice's
    assert recover(alice, device_id).json["key"] == KEY


def test_a_deleted_key_is_gone(app: Flask, org: Org, alice: Api) -> None:
    device_id = new_device()
    put(alice, device_id, {"key": KEY})
    assert alice.delete(f"/api/device-keys/{device_id}").status_code == 204
    resp = recover(alice, device_id)
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"


def test_revoking_a_device_deletes_its_key_and_refuses_a_new_one(app: Flask, org: Org, alice: Api) -> None:
    device_id = new_device()
    svc = services(app)
    with svc.db.session(write=True) as s:
        register(s, org.org_id, org.alice, device_id, "1.0.0")
        s.commit()
    put(alice, device_id, {"key": KEY})
    with svc.db.session(write=True) as s:
        revoke(s, device_id)
        s.commit()
    with svc.db.session() as s:
        assert s.execute(select(devicekey).where(devicekey.c.deviceid == device_id)).first() is None
    assert recover(alice, device_id).json["error"]["code"] == "revoked"
    assert put(alice, device_id, {"key": KEY}).status_code == 403


@pytest.mark.parametrize(
    ("device_id", "body"),
    [
        ("not-a-uuid", {"key": KEY}),
        ("A0000000-0000-4000-8000-000000000000", {"key": KEY}),
        (None, {}),
        (None, {"key": "short"}),
        (None, {"key": base64.b64encode(b"x" * 16).decode()}),
        (None, {"key": 12}),
        (None, ["key"]),
    ],
)
def test_a_malformed_key_or_device_id_is_a_400_and_stores_nothing(
    app: Flask, org: Org, alice: Api, device_id: str | None, body: object
) -> None:
    target = device_id or new_device()
    assert put(alice, target, body).status_code == 400
    with services(app).db.session() as s:
        assert s.execute(select(devicekey)).first() is None


def test_every_device_key_call_needs_a_session_and_the_csrf_header(app: Flask, org: Org, alice: Api) -> None:
    device_id = new_device()
    anonymous = app.test_client()
    assert anonymous.post(f"/api/device-keys/{device_id}/recover", json={"password": PASSWORD}).status_code in (
        401,
        403,
    )
    assert alice.client.put(f"/api/device-keys/{device_id}", json={"key": KEY}).status_code == 403
    assert alice.client.post(f"/api/device-keys/{device_id}/recover", json={"password": PASSWORD}).status_code == 403
    assert alice.client.delete(f"/api/device-keys/{device_id}").status_code == 403
    with services(app).db.session() as s:
        assert s.execute(select(devicekey)).first() is None


def test_the_openapi_document_describes_the_device_key_routes(app: Flask, org: Org) -> None:
    paths = app.test_client().get("/api/openapi.json").json["paths"]
    assert set(paths["/api/device-keys/{device_id}"]) == {"put", "delete"}
    assert "post" in paths["/api/device-keys/{device_id}/recover"]


def test_the_pin_setting_is_off_by_default_and_rides_with_the_identity(app: Flask, org: Org, alice: Api) -> None:
    assert alice.get("/api/auth/me").json["org"]["pin_required"] is False
    before = alice.get("/api/metadata").json["version"]
    runner = CliRunner()
    from webapp.cli import main

    env = {"DATABASE_URL": app.config["DATABASE_URL"]}
    result = runner.invoke(main, ["set-offline", "--org", "contoso", "--pin", "on"], env=env)
    assert result.exit_code == 0, result.output
    assert "app PIN required" in result.output
    assert alice.get("/api/auth/me").json["org"]["pin_required"] is True
    fresh = app.test_client().post("/api/auth/login", json={"org": "contoso", "username": "bob", "password": PASSWORD})
    assert fresh.json["org"]["pin_required"] is True
    # Not part of the customizations: turning the PIN on offers devices no offline update.
    assert alice.get("/api/metadata").json["version"] == before


def test_the_admin_console_turns_the_pin_on_and_off(app: Flask, org: Org, alice: Api) -> None:
    from tests.test_admin import audit_actions, form, profile_form

    data = profile_form(alice)
    assert "pin_required" not in data
    assert re.search(
        r'<input type="checkbox" id="f-pin_required" name="pin_required">', alice.get("/admin/offline/").data.decode()
    )
    resp = form(alice, "/admin/offline/", {**data, "pin_required": "on"})
    assert resp.status_code == 302
    assert alice.get("/api/auth/me").json["org"]["pin_required"] is True
    assert profile_form(alice)["pin_required"] == "on"
    assert audit_actions(app, org.org_id) == ["offline.save"]
    form(alice, "/admin/offline/", {k: v for k, v in profile_form(alice).items() if k != "pin_required"})
    assert alice.get("/api/auth/me").json["org"]["pin_required"] is False
