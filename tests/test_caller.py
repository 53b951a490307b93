"""One caller for one credential: the Web API, the console and the socket handshake agree.

Each transport is asked in a request carrying the same session cookie — the API's `caller()`,
the console's `guard()`, the socket's `check_handshake` (and the phone's form scripts) — and
must resolve the same user (the API and the console the same principal too; the handshake
loads none), or refuse, each in its own words, the same bad sessions: expired, revoked, a
user disabled (with the session still live), a user moved to another business unit.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask, g
from sqlalchemy import update
from werkzeug.exceptions import HTTPException

from tests.conftest import Api, Org, sign_in
from webapp.admin.context import guard
from webapp.api.context import caller
from webapp.crm.changes import utcnow
from webapp.httperror import ApiError
from webapp.security.accounts import hash_token, usersession
from webapp.security.roles import ADMIN_ROLE, assign_user_role, role_id
from webapp.services import services
from webapp.sync.socket import check_handshake

SIGNED_OUT = ("api", 401, "unauthenticated", "Sign in first.")
INACTIVE = ("api", 401, "unauthenticated", "This account is no longer active; sign in again.")
HANDSHAKE_REFUSED = ("socket", 403, "unauthenticated", "Sign in before opening the sync channel.")


def token_of(api: Api) -> str:
    """The session token in a signed-in test client's cookie."""
    cookie = api.client.get_cookie("outpost_session")
    assert cookie is not None
    return cookie.value


def who(info: Any, business_unit_id: Any, username: str) -> tuple[Any, ...]:
    return (info.org_id, info.user_id, info.token_hash, business_unit_id, username)


def through_api(app: Flask, token: str) -> Any:
    with app.test_request_context("/api/auth/me", headers={"Cookie": f"outpost_session={token}"}):
        try:
            c = caller()
        except ApiError as exc:
            return ("api", exc.status, exc.code, exc.message)
        return who(c.session_info, c.actor.business_unit_id, c.username), c.principal


def through_console(app: Flask, token: str) -> Any:
    with app.test_request_context("/admin/", headers={"Cookie": f"outpost_session={token}"}):
        try:
            answer = guard()
        except HTTPException as exc:
            return ("console", exc.code)
        if answer is not None:
            return ("console", answer.status_code, answer.location)
        return who(g.admin.info, g.admin.principal.business_unit_id, g.admin.username), g.admin.principal


def through_socket(app: Flask, token: str) -> Any:
    headers = {"Cookie": f"outpost_session={token}", "Origin": "http://localhost"}
    with app.test_request_context("/api/sync", headers=headers):
        try:
            check_handshake(services(app))
        except ApiError as exc:
            return ("socket", exc.status, exc.code, exc.message)
        found = g.sync_caller  # the handshake loads no principal (a reconnect storm asks it often)
        assert g.sync_session[1] == found.session_info
        return who(found.session_info, found.actor.business_unit_id, found.username), None


def all_three(app: Flask, token: str) -> list[Any]:
    return [through_api(app, token), through_console(app, token), through_socket(app, token)]


def form_script_status(app: Flask, token: str) -> int:
    """The phone's form scripts (any signed-in user): 401 when refused, 404 for no such script."""
    client = app.test_client()
    client.set_cookie("outpost_session", token)
    return client.get("/scripts/contoso/account/onload.js").status_code


def test_the_api_the_console_and_the_socket_resolve_the_same_caller(app: Flask, org: Org, alice: Api) -> None:
    (api, principal), (console, console_principal), (socket, _) = all_three(app, token_of(alice))
    assert api == (org.org_id, org.alice, api[2], org.east_bu, "alice")
    assert api == console == socket
    assert principal == console_principal and principal.is_admin and principal.business_unit_id == org.east_bu
    assert form_script_status(app, token_of(alice)) == 404  # signed in; there is no such script


def test_a_non_administrator_is_the_same_caller_everywhere_and_the_console_alone_refuses_him(
    app: Flask, org: Org
) -> None:
    (api, _), console, (socket, _) = all_three(app, token_of(sign_in(app, "contoso", "bob")))
    assert api[:2] == (org.org_id, org.bob) and api == socket
    assert console == ("console", 403)  # resolved, then refused by the console's own rule


def expire(app: Flask, token: str) -> None:
    with services(app).db.session(write=True) as s:
        past = utcnow() - dt.timedelta(seconds=1)
        s.execute(update(usersession).where(usersession.c.tokenhash == hash_token(token)).values(expireson=past))
        s.commit()


def revoke(app: Flask, token: str) -> None:
    with services(app).db.session(write=True) as s:
        s.execute(update(usersession).where(usersession.c.tokenhash == hash_token(token)).values(revokedon=utcnow()))
        s.commit()


def disable_leaving_the_session(app: Flask, org: Org) -> None:
    """The user row disabled behind the console's back (its sign-out not run): only the
    account check can refuse the still-live session."""
    with services(app).db.session(write=True) as s:
        users = services(app).registry.model(s, org.org_id).tables["systemuser"]
        s.execute(update(users).where(users.c.systemuserid == org.bob).values(isdisabled=True))
        s.commit()


def move_in_the_console(app: Flask, org: Org, admin: Api) -> None:
    """bob moved from the root unit to Sales East by an administrator (signs him out everywhere)."""
    salesperson = re.search(r'/admin/roles/([0-9a-f-]{36})">Salesperson<', admin.get("/admin/roles").data.decode())
    assert salesperson is not None
    edit = {"csrf_token": admin.csrf, "lastname": "Baker", "businessunitid": org.east_bu}
    moved = admin.client.post(f"/admin/users/{org.bob}", data={**edit, "roles": [salesperson.group(1)]})
    assert moved.status_code == 302


SIGNIN_AGAIN = ("console", 302, "/admin/signin?next=/admin/")
SIGNIN = ("console", 302, "/admin/signin")


@pytest.mark.parametrize(
    ("spoil", "console"),
    [
        ("expired", SIGNIN_AGAIN),
        ("revoked", SIGNIN_AGAIN),
        ("disabled", SIGNIN),
        ("moved", SIGNIN_AGAIN),
    ],
)
def test_the_three_refuse_the_same_bad_sessions_each_in_its_own_words(
    app: Flask, org: Org, alice: Api, spoil: str, console: tuple[Any, ...]
) -> None:
    bob = token_of(sign_in(app, "contoso", "bob"))
    with services(app).db.session(write=True) as s:  # bob made an administrator: the console would let him in
        model = services(app).registry.model(s, org.org_id)
        assign_user_role(s, model, org.bob, role_id(s, model, ADMIN_ROLE))
        s.commit()
    assert through_console(app, bob)[0][:2] == (org.org_id, org.bob)
    if spoil == "expired":
        expire(app, bob)
    elif spoil == "revoked":
        revoke(app, bob)
    elif spoil == "disabled":
        disable_leaving_the_session(app, org)
    else:
        move_in_the_console(app, org, alice)
    api = INACTIVE if spoil == "disabled" else SIGNED_OUT
    assert all_three(app, bob) == [api, console, HANDSHAKE_REFUSED]
    assert form_script_status(app, bob) == 401
    assert through_api(app, token_of(alice))[0][:2] == (org.org_id, org.alice)  # nobody else was touched


def test_an_unknown_or_missing_token_is_refused_by_all_three(app: Flask, org: Org) -> None:
    assert all_three(app, "forged") == [SIGNED_OUT, SIGNIN_AGAIN, HANDSHAKE_REFUSED]
    assert all_three(app, "") == [SIGNED_OUT, SIGNIN_AGAIN, HANDSHAKE_REFUSED]
