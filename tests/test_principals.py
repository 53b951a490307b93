"""One security principal per user per process (webapp/security/principals.py): shared by that
user's sockets and requests, loaded again when their security epoch moves, forgotten when the
transaction that loaded it rolls back; and `GET /api/auth/me` (asked before every reconnect)
loads none."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Flask

from tests.conftest import Org, sign_in
from webapp.crm import epoch
from webapp.security.principals import principals
from webapp.security.roles import ADMIN_ROLE, assign_user_role, role_id
from webapp.services import services
from webapp.sync.channel import Channel


def connect(app: Flask, username: str, org: Org) -> Channel:
    """A sync channel of a signed-in user, after hello and a pull (as the socket handler drives it)."""
    api = sign_in(app, org.name, username)
    token = api.client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    user = org.bob if username == "bob" else org.alice
    channel = Channel(app, token, org.org_id, user, services=services(app))
    with app.app_context():
        welcome = channel.receive(json.dumps({"type": "hello", "device_id": str(uuid.uuid4()), "app_version": "t"}))
        assert welcome[0]["type"] == "welcome", welcome
        frames = channel.receive(json.dumps({"type": "pull", "cursor": 0}))
        assert frames[0]["type"] == "changes", frames
    return channel


def principal_of(app: Flask, org: Org, user: str) -> Any:
    svc = services(app)
    with svc.db.session() as s:
        return principals(app).get(s, svc.registry.model(s, org.org_id), user)


def test_a_users_sockets_share_one_principal_loaded_once(app: Flask, org: Org) -> None:
    cache = principals(app)
    first, second = connect(app, "bob", org), connect(app, "bob", org)
    assert cache.loads == 1
    svc = services(app)
    with svc.db.session() as s:
        assert first._context(s)[1] is second._context(s)[1]
    connect(app, "alice", org)
    assert cache.loads == 2 and len(cache) == 2


def test_who_am_i_loads_no_principal(app: Flask, org: Org) -> None:
    api = sign_in(app, org.name, "bob")
    me = api.get("/api/auth/me")
    assert me.status_code == 200 and me.json["user"]["username"] == "bob"
    assert principals(app).loads == 0


def test_a_security_change_loads_the_principal_again(app: Flask, org: Org) -> None:
    before = principal_of(app, org, org.bob)
    assert principal_of(app, org, org.bob) is before and not before.is_admin
    svc = services(app)
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        assign_user_role(s, model, org.bob, role_id(s, model, ADMIN_ROLE))  # moves bob's epoch
        s.commit()
    after = principal_of(app, org, org.bob)
    assert after is not before and after.is_admin


def test_a_principal_loaded_in_a_transaction_that_rolled_back_is_forgotten(app: Flask, org: Org) -> None:
    """The rolled-back epoch is reused by the next change that commits: the principal loaded
    under it must not stand for that change."""
    svc = services(app)
    with svc.db.session(write=True) as s:
        epoch.bump(s, org.org_id, [org.bob])
        stale = principals(app).get(s, svc.registry.model(s, org.org_id), org.bob)
        s.rollback()
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        assign_user_role(s, model, org.bob, role_id(s, model, ADMIN_ROLE))  # the same epoch number, committed
        s.commit()
    now = principal_of(app, org, org.bob)
    assert now is not stale and now.is_admin
