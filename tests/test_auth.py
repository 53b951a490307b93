"""Sign-in, sessions on the server, throttling, CSRF and organisation isolation."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import PASSWORD, Api, Org, sign_in


def login(app: Flask, org: str, username: str, password: str) -> tuple[int, dict]:
    resp = app.test_client().post("/api/auth/login", json={"org": org, "username": username, "password": password})
    return resp.status_code, resp.json


def test_sign_in_returns_user_org_and_csrf_token_and_sets_a_safe_cookie(app: Flask, org: Org) -> None:
    client = app.test_client()
    resp = client.post("/api/auth/login", json={"org": "contoso", "username": "alice", "password": PASSWORD})
    assert resp.status_code == 200
    assert resp.json["user"]["id"] == org.alice
    assert resp.json["org"]["name"] == "contoso"
    assert len(resp.json["csrf_token"]) > 20
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("outpost_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json["user"]["username"] == "alice"
    assert me.json["csrf_token"] == resp.json["csrf_token"]


def test_usernames_and_organisation_names_are_case_insensitive(app: Flask, org: Org) -> None:
    assert login(app, "Contoso", "ALICE", PASSWORD)[0] == 200


@pytest.mark.parametrize(
    ("orgname", "username", "password"),
    [("contoso", "alice", "wrong-password"), ("contoso", "nobody", PASSWORD), ("nowhere", "alice", PASSWORD)],
)
def test_wrong_credentials_get_one_message_that_reveals_nothing(
    app: Flask, org: Org, orgname: str, username: str, password: str
) -> None:
    status, body = login(app, orgname, username, password)
    assert status == 401
    assert body["error"] == {
        "code": "invalid_credentials",
        "message": "The organisation, username or password is wrong.",
    }


@pytest.mark.parametrize(
    "body", [{}, {"org": "contoso", "username": "alice"}, {"org": 1, "username": "a", "password": "b"}]
)
def test_a_malformed_sign_in_is_a_400(app: Flask, org: Org, body: dict) -> None:
    assert app.test_client().post("/api/auth/login", json=body).status_code == 400


def test_a_user_of_one_organisation_cannot_sign_in_to_another(app: Flask, org: Org) -> None:
    assert login(app, "fabrikam", "alice", PASSWORD)[0] == 401


def test_repeated_failures_are_throttled_even_for_the_right_password(app: Flask, org: Org) -> None:
    for _ in range(5):
        assert login(app, "contoso", "alice", "wrong-password")[0] == 401
    status, body = login(app, "contoso", "alice", PASSWORD)
    assert status == 429
    assert body["error"]["code"] == "throttled"
    assert login(app, "contoso", "bob", PASSWORD)[0] == 200


def test_a_success_resets_the_failure_count(app: Flask, org: Org) -> None:
    for _ in range(4):
        login(app, "contoso", "alice", "wrong-password")
    assert login(app, "contoso", "alice", PASSWORD)[0] == 200
    for _ in range(4):
        login(app, "contoso", "alice", "wrong-password")
    assert login(app, "contoso", "alice", PASSWORD)[0] == 200


def test_without_a_session_the_api_answers_401(app: Flask, org: Org) -> None:
    client = app.test_client()
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/data/accounts").status_code == 401
    assert client.get("/api/metadata").status_code == 401
    assert client.post("/api/data/accounts", json={"name": "x"}).status_code == 401


def test_sign_out_ends_the_session_on_the_server(app: Flask, alice: Api) -> None:
    token = alice.client.get_cookie("outpost_session").value
    assert alice.post("/api/auth/logout").status_code == 200
    replay = app.test_client()
    replay.set_cookie("outpost_session", token)
    assert replay.get("/api/auth/me").status_code == 401


def test_sign_out_needs_the_csrf_token(alice: Api) -> None:
    assert alice.client.post("/api/auth/logout").status_code == 403
    assert alice.get("/api/auth/me").status_code == 200


@pytest.mark.parametrize("header", [None, "", "wrong-token"])
@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_every_state_changing_call_without_the_right_csrf_token_is_refused_and_changes_nothing(
    alice: Api, header: str | None, method: str
) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Before"}).json
    headers = {} if header is None else {"X-CSRF-Token": header}
    path = "/api/data/accounts" if method == "post" else f"/api/data/accounts({acc['accountid']})"
    kwargs = {"json": {"name": "After"}} if method != "delete" else {}
    resp = getattr(alice.client, method)(path, headers=headers, **kwargs)
    assert resp.status_code == 403
    assert resp.json["error"]["code"] == "csrf_failed"
    assert [r["name"] for r in alice.get("/api/data/accounts").json["value"]] == ["Before"]


def test_another_sessions_csrf_token_is_refused(app: Flask, alice: Api, org: Org) -> None:
    bob = sign_in(app, "contoso", "bob")
    resp = alice.client.post("/api/data/accounts", json={"name": "x"}, headers={"X-CSRF-Token": bob.csrf})
    assert resp.status_code == 403


def test_organisations_are_isolated(alice: Api, carol: Api) -> None:
    acc = alice.post("/api/data/accounts", json={"name": "Contoso Secret"}).json
    rid = acc["accountid"]
    assert carol.get("/api/data/accounts").json["value"] == []
    assert carol.get(f"/api/data/accounts({rid})").status_code == 404
    assert carol.patch(f"/api/data/accounts({rid})", json={"name": "Hacked"}).status_code == 404
    assert carol.delete(f"/api/data/accounts({rid})").status_code == 404
    bind = carol.post(
        "/api/data/contacts", json={"lastname": "X", "parentcustomerid_account@odata.bind": f"/accounts({rid})"}
    )
    assert bind.status_code == 422
    assert carol.get(f"/api/data/accounts?$filter=accountid eq {rid}").json["value"] == []
    assert alice.get(f"/api/data/accounts({rid})").json["name"] == "Contoso Secret"
    # The same id can exist in another organisation without revealing the first one.
    same = carol.post("/api/data/accounts", json={"accountid": rid, "name": "Fabrikam's own"})
    assert same.status_code == 201
    assert alice.get(f"/api/data/accounts({rid})").json["name"] == "Contoso Secret"


def test_users_of_another_organisation_are_not_listed(alice: Api, carol: Api) -> None:
    names = {u["username"] for u in carol.get("/api/data/systemusers").json["value"]}
    assert names == {"carol"}
