"""The administrator's console over HTTP, on SQLite and PostgreSQL: who gets in, CSRF, the
offline profile, people and roles, custom entities, devices, sync errors, audit, scripts."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import insert, select

from tests.conftest import PASSWORD, Api, Org, sign_in
from webapp.crm.changes import utcnow
from webapp.security.audit import adminaudit
from webapp.security.tables import roleprivilege
from webapp.services import services
from webapp.sync.devices import register
from webapp.sync.tables import device, syncerror


def form(api: Api, path: str, data: dict[str, Any], **kw: Any) -> Any:
    """POST a server-rendered form with the session's CSRF token, as the page would."""
    return api.client.post(path, data={"csrf_token": api.csrf, **data}, **kw)


def audit_actions(app: Flask, org_id: str) -> list[str]:
    with services(app).db.session() as s:
        return list(
            s.execute(
                select(adminaudit.c.action).where(adminaudit.c.organizationid == org_id).order_by(adminaudit.c.id)
            ).scalars()
        )


def admin_get_paths(app: Flask, org: Org) -> list[str]:
    """Every GET page under /admin, with real ids where the rule needs one."""
    ids = {"user_id": org.bob, "team_id": None, "record_id": org.east_bu, "role_id": None, "profile_id": None}
    paths = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or "GET" not in (rule.methods or ()) or rule.endpoint.endswith("signin"):
            continue
        if rule.arguments - {"user_id", "record_id"} or rule.rule.startswith("/admin/positions/<"):
            continue  # teams, roles, positions, profiles and devices by id are covered by their own tests
        paths.append(rule.build({k: ids[k] for k in rule.arguments})[1])
    return sorted(set(paths))


def assert_keyboard_and_csp_friendly(path: str, html: str) -> None:
    """Every control has a label (by `for` or by wrapping), none is taken out of the tab order,
    and there is no inline script, style or event handler (the Content-Security-Policy)."""
    for match in re.finditer(r"<(input|select|textarea)\b[^>]*>", html):
        tag = match.group(0)
        if 'type="hidden"' in tag:
            continue
        found = re.search(r'\bid="([^"]+)"', tag)
        labelled = bool(found) and f'for="{found.group(1)}"' in html
        wrapped = html[: match.start()].rstrip().endswith('<label class="checkbox">')
        assert labelled or wrapped, f"{path}: a control without a label: {tag}"
    assert not re.search(r'tabindex="[1-9]', html), path
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), path


def test_no_session_redirects_to_sign_in_and_a_non_admin_gets_403_on_every_page(app: Flask, org: Org) -> None:
    paths = admin_get_paths(app, org)
    assert len(paths) >= 20
    anonymous = app.test_client()
    bob = sign_in(app, "contoso", "bob")
    for path in paths:
        resp = anonymous.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"].startswith("/admin/signin?next=")
        denied = bob.get(path)
        assert denied.status_code == 403, path
        assert b"System Administrator role" in denied.data
    assert form(bob, "/admin/offline/", {"enabled": "on", "interval": "5"}).status_code == 403
    assert form(bob, f"/admin/users/{org.alice}/status", {"action": "disable"}).status_code == 403
    alice = sign_in(app, "contoso", "alice")
    for path in paths:
        page = alice.get(path)
        assert page.status_code == 200, path
        # Every form that changes something carries the session's CSRF token (the sign-out form at least).
        html = page.data.decode()
        posts = re.findall(r'<form method="post".*?</form>', html, re.S)
        assert posts, path
        for post in posts:
            assert f'name="csrf_token" value="{alice.csrf}"' in post, path
        assert_keyboard_and_csp_friendly(path, html)
    assert audit_actions(app, org.org_id) == []


def test_the_sign_in_page_starts_a_session_and_goes_back_to_the_page_asked_for(app: Flask, org: Org) -> None:
    client = app.test_client()
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/signin").get_data(as_text=True))
    assert form, "the sign-in form carries its token (tests/test_login_csrf.py)"
    token = {"csrf_token": form.group(1)}
    wrong = client.post("/admin/signin", data={"org": "contoso", "username": "alice", "password": "nope-nope", **token})
    assert wrong.status_code == 401
    assert b"wrong" in wrong.data
    missing = client.post("/admin/signin", data={"org": "contoso", "username": "", **token})
    assert missing.status_code == 422
    assert b"Fill in: Username, Password." in missing.data
    ok = client.post(
        "/admin/signin",
        data={"org": "contoso", "username": "alice", "password": PASSWORD, "next": "/admin/devices/", **token},
    )
    assert ok.status_code == 302
    assert ok.headers["Location"] == "/admin/devices/"
    assert client.get("/admin/devices/").status_code == 200
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/signin").get_data(as_text=True))
    assert form
    outside = client.post(
        "/admin/signin",
        data={
            "org": "contoso",
            "username": "alice",
            "password": PASSWORD,
            "next": "//evil.example/",
            "csrf_token": form.group(1),
        },
    )
    assert outside.headers["Location"] == "/admin/"


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(app: Flask, org: Org, alice: Api) -> None:
    before = alice.get("/api/metadata").json["version"]
    resp = alice.client.post("/admin/offline/", data={"interval": "5"})
    assert resp.status_code == 403
    assert b"security token" in resp.data
    resp = alice.client.post("/admin/offline/", data={"interval": "5", "csrf_token": "forged"})
    assert resp.status_code == 403
    assert alice.get("/api/metadata").json["version"] == before


def profile_form(alice: Api) -> dict[str, str]:
    """The profile form as the page fills it in now (checked boxes, selects, numbers)."""
    html = alice.get("/admin/offline/").data.decode()
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or name.group(1) == "csrf_token":
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                data[name.group(1)] = "on"
        else:
            value = re.search(r'value="([^"]*)"', tag)
            data[name.group(1)] = value.group(1) if value else ""
    for name, body in re.findall(r'<select id="[^"]+" name="([^"]+)">(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected', body)
        data[name] = chosen.group(1) if chosen else ("all" if name.endswith(".filter") else "")
    return data


def test_saving_the_offline_profile_publishes_a_new_metadata_version_and_is_audited(
    app: Flask, org: Org, alice: Api
) -> None:
    before = alice.get("/api/metadata").json
    assert before["offline_profile"]["entities"]["competitor"]["enabled"] is True
    data = profile_form(alice)
    assert data["competitor.enabled"] == "on" and data["interval"] == "15"
    del data["competitor.enabled"]
    data.update({"contact.filter": "modified", "contact.days": "30", "interval": "5", "conflict_detection": "on"})
    resp = form(alice, "/admin/offline/", data)
    assert resp.status_code == 302
    assert "notice=Offline+profile+saved" in resp.headers["Location"]
    after = alice.get("/api/metadata").json
    assert after["version"] != before["version"]
    assert after["offline_profile"]["entities"]["competitor"]["enabled"] is False
    assert after["offline_profile"]["entities"]["contact"] == {"enabled": True, "filter": "modified", "days": 30}
    assert after["sync_interval_minutes"] == 5
    assert after["conflict_detection"] is True
    assert audit_actions(app, org.org_id) == ["offline.save"]
    # Nothing changed: no new version, no audit entry.
    assert "Nothing+changed" in form(alice, "/admin/offline/", profile_form(alice)).headers["Location"]
    assert alice.get("/api/metadata").json["version"] == after["version"]
    assert audit_actions(app, org.org_id) == ["offline.save"]


BAD_PROFILES = [
    ({"interval": "0"}, "The sync interval must be a whole number of minutes from 1 to 1440."),
    ({"interval": "ten"}, "The sync interval must be a whole number of minutes from 1 to 1440."),
    ({"account.filter": "modified", "account.days": ""}, "Accounts: modified needs a number of days from 1 to 3650."),
    ({"account.filter": "modified", "account.days": "9999"}, "Accounts: modified needs a number of days"),
    ({"account.filter": "everything"}, "Accounts: filter must be one of all, mine, myteams, mybu, modified, related."),
]


def test_a_bad_profile_is_refused_with_a_message_and_nothing_changes(app: Flask, org: Org, alice: Api) -> None:
    before = alice.get("/api/metadata").json["version"]
    good = profile_form(alice)
    for changes, message in BAD_PROFILES:
        resp = form(alice, "/admin/offline/", {**good, **changes})
        assert resp.status_code == 422, changes
        assert message in resp.data.decode()
        assert 'role="alert"' in resp.data.decode()
    assert alice.get("/api/metadata").json["version"] == before
    assert audit_actions(app, org.org_id) == []


def test_users_are_created_edited_disabled_and_their_passwords_reset(app: Flask, org: Org, alice: Api) -> None:
    roles = alice.get("/admin/roles").data.decode()
    salesperson = re.search(r'/admin/roles/([0-9a-f-]{36})">Salesperson<', roles)
    assert salesperson
    bad = form(alice, "/admin/users/new", {"username": "d a", "password": "short", "lastname": ""})
    assert bad.status_code == 422
    text = bad.data.decode()
    for message in (
        "A username has 2-100 letters",
        "The password must have at least 8 characters.",
        "Last name is required.",
        "Choose a business unit.",
    ):
        assert message in text
    new = {
        "username": "dave",
        "password": "dave-password-1",
        "firstname": "Dave",
        "lastname": "Dunn",
        "internalemailaddress": "dave@example.com",
        "businessunitid": org.east_bu,
        "parentsystemuserid": org.bob,
        "roles": [salesperson.group(1)],
    }
    assert form(alice, "/admin/users/new", new).status_code == 302
    taken = form(alice, "/admin/users/new", {**new, "username": "DAVE"})
    assert taken.status_code == 422 and b"is taken" in taken.data
    dave = sign_in(app, "contoso", "dave", "dave-password-1")
    me = dave.get("/api/auth/me").json["user"]
    assert me["business_unit_id"] == org.east_bu and me["fullname"] == "Dave Dunn"
    assert dave.get("/api/data/accounts").status_code == 200  # the Salesperson role works
    assert dave.get("/admin/").status_code == 403
    page = alice.get(f"/admin/users/{me['id']}")
    assert b"dave@example.com" in page.data
    edit = {k: v for k, v in new.items() if k not in ("username", "password")}
    edit.update({"lastname": "Dunne", "businessunitid": org.root_bu})
    assert form(alice, f"/admin/users/{me['id']}", edit).status_code == 302
    assert dave.get("/api/auth/me").status_code == 401  # a move to another unit ends the user's sessions
    dave = sign_in(app, "contoso", "dave", "dave-password-1")
    assert dave.get("/api/auth/me").json["user"]["business_unit_id"] == org.root_bu
    mismatch = form(alice, f"/admin/users/{me['id']}/password", {"password": "new-password-1", "confirm": "other"})
    assert mismatch.status_code == 422 and b"not the same" in mismatch.data
    reset = form(
        alice, f"/admin/users/{me['id']}/password", {"password": "new-password-1", "confirm": "new-password-1"}
    )
    assert reset.status_code == 302
    assert dave.get("/api/auth/me").status_code == 401  # a reset ends the user's sessions
    dave = sign_in(app, "contoso", "dave", "new-password-1")
    assert form(alice, f"/admin/users/{me['id']}/status", {"action": "disable"}).status_code == 302
    assert dave.get("/api/auth/me").status_code == 401
    assert (
        app.test_client()
        .post("/api/auth/login", json={"org": "contoso", "username": "dave", "password": "new-password-1"})
        .status_code
        == 401
    )
    assert form(alice, f"/admin/users/{me['id']}/status", {"action": "enable"}).status_code == 302
    sign_in(app, "contoso", "dave", "new-password-1")
    # An administrator cannot lock themselves out.
    assert (
        "cannot+disable+yourself"
        in form(alice, f"/admin/users/{org.alice}/status", {"action": "disable"}).headers["Location"]
    )
    self_edit = form(alice, f"/admin/users/{org.alice}", {"lastname": "Able", "businessunitid": org.east_bu})
    assert self_edit.status_code == 422 and b"cannot take the System Administrator role" in self_edit.data
    assert audit_actions(app, org.org_id) == [
        "user.create",
        "user.update",
        "user.password_reset",
        "user.disable",
        "user.enable",
    ]


def test_a_role_s_privilege_grid_is_saved_and_enforced(app: Flask, org: Org, alice: Api) -> None:
    assert form(alice, "/admin/roles/new", {"name": "Salesperson"}).status_code == 422
    created = form(alice, "/admin/roles/new", {"name": "Auditor"})
    role_id = created.headers["Location"].split("/admin/roles/")[1].split("?")[0]
    grid = alice.get(f"/admin/roles/{role_id}").data.decode()
    assert 'name="account.read"' in grid and 'name="transactioncurrency.read"' in grid
    bad = form(alice, f"/admin/roles/{role_id}", {"name": "Auditor", "transactioncurrency.read": "user"})
    assert bad.status_code == 422
    assert b"owned by the organisation" in bad.data
    resp = form(
        alice, f"/admin/roles/{role_id}", {"name": "Auditors", "account.read": "organization", "contact.read": "user"}
    )
    assert resp.status_code == 302
    with services(app).db.session() as s:
        rows = set(
            s.execute(
                select(roleprivilege.c.entity, roleprivilege.c.privilege, roleprivilege.c.depth).where(
                    roleprivilege.c.roleid == role_id
                )
            ).all()
        )
    assert rows == {("account", "read", 4), ("contact", "read", 1)}
    # The System Administrator role cannot be changed from the grid.
    roles = alice.get("/admin/roles").data.decode()
    admin_role = re.search(r'/admin/roles/([0-9a-f-]{36})">System Administrator<', roles)
    assert admin_role
    assert form(alice, f"/admin/roles/{admin_role.group(1)}", {"name": "x"}).status_code == 422


def test_teams_business_units_positions_and_field_security_profiles(app: Flask, org: Org, alice: Api) -> None:
    # A business unit cannot go under its own child.
    child = form(alice, "/admin/business-units/new", {"name": "East North", "parentbusinessunitid": org.east_bu})
    child_id = child.headers["Location"].split("/admin/business-units/")[1].split("?")[0]
    loop = form(alice, f"/admin/business-units/{org.east_bu}", {"name": "Sales East", "parentbusinessunitid": child_id})
    assert loop.status_code == 422 and b"under itself" in loop.data
    assert form(alice, "/admin/positions/new", {"name": "Rep"}).status_code == 302
    team = form(
        alice,
        "/admin/teams/new",
        {"name": "Tiger Team", "businessunitid": org.root_bu, "members": [org.bob], "description": "Hunters"},
    )
    assert team.status_code == 302
    team_id = team.headers["Location"].split("/admin/teams/")[1].split("?")[0]
    assert b"Tiger Team" in alice.get("/admin/teams").data
    assert form(alice, f"/admin/teams/{team_id}", {"name": "", "businessunitid": ""}).status_code == 422
    # Secure a field, then give bob read through a profile.
    assert form(alice, "/admin/field-security", {"attribute": "account.telephone1"}).status_code == 302
    bob = sign_in(app, "contoso", "bob")
    made = bob.post("/api/data/accounts", json={"name": "Secret Ltd"})
    assert made.status_code == 201 and "telephone1" not in made.json
    created = form(alice, "/admin/field-security/new", {"name": "Phones"})
    profile_id = created.headers["Location"].split("/admin/field-security/")[1].split("?")[0]
    resp = form(alice, f"/admin/field-security/{profile_id}", {"account.telephone1.read": "on", "users": [org.bob]})
    assert resp.status_code == 302
    again = bob.get(f"/api/data/accounts({made.json['accountid']})")
    assert "telephone1" in again.json
    assert audit_actions(app, org.org_id) == [
        "businessunit.create",
        "position.create",
        "team.create",
        "field.secure",
        "fieldprofile.create",
        "fieldprofile.update",
    ]


def test_a_custom_entity_added_from_the_browser_is_in_the_metadata_and_offline(
    app: Flask, org: Org, alice: Api
) -> None:
    data = {
        "logical_name": "new_visitreport",
        "display_name": "Visit Report",
        "display_collection_name": "Visit Reports",
        "primary_name": "new_name",
        "ownership": "user",
        "command.create": "on",
        "command.read": "on",
        "command.update": "on",
        "attr0.name": "new_name",
        "attr0.label": "Subject",
        "attr0.type": "string",
        "attr0.required": "on",
        "attr1.name": "new_accountid",
        "attr1.type": "lookup",
        "attr1.extra": "account",
        "attr2.name": "new_outcome",
        "attr2.type": "optionset",
        "attr2.extra": "1=Good; 2=Bad",
        "views": "Active Visits | new_name, new_outcome | new_name asc",
        "form": "Visit: new_name, new_accountid, new_outcome",
    }
    bad = form(alice, "/admin/entities/new", {**data, "form": "Visit: new_name, nope"})
    assert bad.status_code == 422
    assert b"unknown fields" in bad.data
    assert form(alice, "/admin/entities/new", {**data, "attr2.extra": "good"}).status_code == 422
    before = alice.get("/api/metadata").json["version"]
    assert form(alice, "/admin/entities/new", data).status_code == 302
    doc = alice.get("/api/metadata").json
    assert doc["version"] != before
    entity = next(e for e in doc["entities"] if e["logical_name"] == "new_visitreport")
    assert entity["offline_commands"] == ["create", "read", "update"]
    assert entity["views"][0]["name"] == "Active Visits"
    assert entity["form"]["sections"] == [{"name": "Visit", "fields": ["new_name", "new_accountid", "new_outcome"]}]
    assert doc["offline_profile"]["entities"]["new_visitreport"]["enabled"] is True
    made = alice.post("/api/data/new_visitreports", json={"new_name": "Kick-off", "new_outcome": 1})
    assert made.status_code == 201
    assert b"new_visitreport" in alice.get("/admin/entities/").data
    assert audit_actions(app, org.org_id) == ["entity.create"]


def test_a_device_is_listed_with_its_errors_and_revoked(app: Flask, org: Org, alice: Api) -> None:
    device_id = str(uuid.uuid4())
    with services(app).db.session(write=True) as s:
        register(s, org.org_id, org.bob, device_id, "1.2.3")
        s.execute(
            insert(syncerror),
            {
                "organizationid": org.org_id,
                "deviceid": device_id,
                "systemuserid": org.bob,
                "seq": 4,
                "entity": "account",
                "recordid": str(uuid.uuid4()),
                "status": "rejected",
                "code": "forbidden",
                "message": "You may not change this account.",
                "sent": {"kind": "update", "changes": {"name": "Mine now"}},
                "kept": {"name": "Theirs"},
                "createdon": utcnow(),
            },
        )
        s.commit()
    listing = alice.get("/admin/devices/").data.decode()
    assert f"Device {device_id[:8]}" in listing and "1.2.3" in listing and "Bob Baker" in listing
    page = alice.get(f"/admin/devices/{device_id}").data.decode()
    assert "You may not change this account." in page and "Mine now" in page and "Theirs" in page
    assert alice.get(f"/admin/devices/{uuid.uuid4()}").status_code == 404
    assert form(alice, f"/admin/devices/{device_id}/revoke", {}).status_code == 302
    with services(app).db.session() as s:
        assert s.execute(select(device.c.status).where(device.c.deviceid == device_id)).scalar() == "revoked"
    assert "Revoked" in alice.get("/admin/devices/").data.decode()
    assert audit_actions(app, org.org_id) == ["device.revoke"]
    # The sync error log, filtered by user, entity and device.
    assert "Mine now" in alice.get(f"/admin/sync-errors/?user={org.bob}&entity=account").data.decode()
    assert "Mine now" in alice.get(f"/admin/sync-errors/?device={device_id[:8]}").data.decode()
    assert "Mine now" not in alice.get("/admin/sync-errors/?entity=contact").data.decode()
    assert "Mine now" not in alice.get(f"/admin/sync-errors/?user={org.alice}").data.decode()
    audit = alice.get("/admin/audit/?action=device").data.decode()
    assert "device.revoke" in audit and "Alice Able" in audit


def test_client_scripts_are_stored_served_same_origin_and_published(
    app: Flask, org: Org, alice: Api, carol: Api
) -> None:
    source = b"export default function (ctx) { ctx.getFormContext().ui.setFormNotification('hi', 'INFO', 'x'); }\n"
    before = alice.get("/api/metadata").json["version"]
    not_js = form(
        alice,
        "/admin/scripts/",
        {"entity": "account", "event": "onload", "file": (io.BytesIO(b"x"), "notes.txt")},
        content_type="multipart/form-data",
    )
    assert not_js.status_code == 422 and b"must be a JavaScript file" in not_js.data
    empty = form(
        alice,
        "/admin/scripts/",
        {"entity": "account", "event": "onload", "file": (io.BytesIO(b"  "), "a.js")},
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422 and b"empty" in empty.data
    resp = form(
        alice,
        "/admin/scripts/",
        {"entity": "account", "event": "onload", "file": (io.BytesIO(source), "account.js")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 302
    doc = alice.get("/api/metadata").json
    assert doc["version"] != before
    url = doc["client_scripts"]["account"]["onload"]
    assert url.startswith("/scripts/contoso/account/onload.js?v=")
    bob = sign_in(app, "contoso", "bob")
    served = bob.get(url)
    assert served.status_code == 200
    assert served.data == source
    assert served.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in served.headers["Cache-Control"]
    assert app.test_client().get(url).status_code == 401
    assert carol.get(url).status_code == 404  # another organisation's script
    assert bob.get("/scripts/contoso/account/onsave.js").status_code == 404
    assert form(alice, "/admin/scripts/remove", {"entity": "account", "event": "onload"}).status_code == 302
    assert alice.get("/api/metadata").json["client_scripts"] == {}
    assert bob.get(url).status_code == 404
    assert audit_actions(app, org.org_id) == ["script.upload", "script.remove"]


def test_roles_profiles_teams_and_positions_are_deleted_only_when_nothing_depends_on_them(
    app: Flask, org: Org, alice: Api
) -> None:
    def new_id(resp: Any, prefix: str) -> str:
        assert resp.status_code == 302, resp.data
        return str(resp.headers["Location"].split(prefix)[1].split("?")[0])

    role_id = new_id(form(alice, "/admin/roles/new", {"name": "Temp"}), "/admin/roles/")
    team_id = new_id(
        form(alice, "/admin/teams/new", {"name": "Temps", "businessunitid": org.root_bu, "roles": [role_id]}),
        "/admin/teams/",
    )
    held = form(alice, f"/admin/roles/{role_id}/delete", {})
    assert "held+by+0+user%28s%29+and+1+team%28s%29" in held.headers["Location"]
    # A team that owns a record stays.
    bob = sign_in(app, "contoso", "bob")
    account = bob.post("/api/data/accounts", json={"name": "Teamed"}).json["accountid"]
    assert (
        alice.post(
            f"/api/data/accounts({account})/assign", json={"ownerid@odata.bind": f"/teams({team_id})"}
        ).status_code
        == 200
    )
    assert "owns+1+record" in form(alice, f"/admin/teams/{team_id}/delete", {}).headers["Location"]
    assert alice.delete(f"/api/data/accounts({account})").status_code == 204
    assert form(alice, f"/admin/teams/{team_id}/delete", {}).status_code == 302
    assert alice.get(f"/admin/teams/{team_id}").status_code == 404
    assert form(alice, f"/admin/roles/{role_id}/delete", {}).status_code == 302
    assert alice.get(f"/admin/roles/{role_id}").status_code == 404
    # A deleted position leaves its holders without one.
    position = new_id(form(alice, "/admin/positions/new", {"name": "Scout"}), "/admin/positions/")
    user = {"lastname": "Baker", "businessunitid": org.root_bu, "positionid": position, "roles": []}
    roles = alice.get(f"/admin/users/{org.bob}").data.decode()
    user["roles"] = re.findall(r'name="roles" value="([0-9a-f-]{36})" checked', roles)
    assert form(alice, f"/admin/users/{org.bob}", user).status_code == 302
    assert form(alice, f"/admin/positions/{position}/delete", {}).status_code == 302
    assert f'value="{position}"' not in alice.get(f"/admin/users/{org.bob}").data.decode()
    profile = new_id(form(alice, "/admin/field-security/new", {"name": "Gone"}), "/admin/field-security/")
    assert form(alice, f"/admin/field-security/{profile}/delete", {}).status_code == 302
    assert alice.get(f"/admin/field-security/{profile}").status_code == 404
    assert audit_actions(app, org.org_id)[-7:] == [
        "team.delete",
        "role.delete",
        "position.create",
        "user.update",
        "position.delete",
        "fieldprofile.create",
        "fieldprofile.delete",
    ]


def test_a_disabled_business_unit_signs_its_people_out_and_keeps_them_out(app: Flask, org: Org, alice: Api) -> None:
    from webapp.crm.orgs import create_business_unit
    from webapp.security.setup import new_user

    svc = services(app)
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        field = create_business_unit(s, model, "Field")
        depot = create_business_unit(s, model, "Depot", field)
        new_user(s, model, svc.hasher, "dave", PASSWORD, "Dale", field, ["Salesperson"])
        new_user(s, model, svc.hasher, "erin", PASSWORD, "Eames", depot, ["Salesperson"])
        s.commit()
    dave, erin = sign_in(app, "contoso", "dave"), sign_in(app, "contoso", "erin")
    # Neither the root nor the administrator's own unit can be disabled.
    for unit in (org.root_bu, org.east_bu):
        refused = form(alice, f"/admin/business-units/{unit}/status", {"action": "disable"}, follow_redirects=True)
        assert b"cannot disable" in refused.data or b"cannot be disabled" in refused.data
    done = form(alice, f"/admin/business-units/{field}/status", {"action": "disable"}, follow_redirects=True)
    assert b"2 people signed out" in done.data
    assert b"Disabled" in alice.get("/admin/business-units").data
    for api in (dave, erin):  # the unit's people and those of the unit below it
        assert api.get("/api/auth/me").status_code == 401
    for username in ("dave", "erin"):
        resp = app.test_client().post(
            "/api/auth/login", json={"org": "contoso", "username": username, "password": PASSWORD}
        )
        assert resp.status_code == 401
    assert alice.get("/api/auth/me").status_code == 200  # nobody else was touched
    assert form(alice, f"/admin/business-units/{field}/status", {"action": "enable"}).status_code == 302
    assert sign_in(app, "contoso", "erin").get("/api/auth/me").status_code == 200
    assert audit_actions(app, org.org_id)[-2:] == ["businessunit.disable", "businessunit.enable"]


def test_moving_a_user_signs_them_out_and_a_disabled_unit_takes_nobody_in(app: Flask, org: Org, alice: Api) -> None:
    """Issue 17, item 7: a user moved into a disabled business unit kept a working session."""
    from webapp.crm.orgs import create_business_unit
    from webapp.security.setup import new_user

    svc = services(app)
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        closed = create_business_unit(s, model, "Closed")
        below = create_business_unit(s, model, "Below closed", closed)
        dave = new_user(s, model, svc.hasher, "dave", PASSWORD, "Dale", org.root_bu, ["Salesperson"])
        s.commit()
    assert form(alice, f"/admin/business-units/{closed}/status", {"action": "disable"}).status_code == 302
    salesperson = re.search(r'/admin/roles/([0-9a-f-]{36})">Salesperson<', alice.get("/admin/roles").data.decode())
    assert salesperson is not None
    edit = {"lastname": "Dale", "businessunitid": closed, "roles": [salesperson.group(1)]}
    api = sign_in(app, "contoso", "dave")
    socket = svc.hub.subscribe(org.org_id, dave, "dave's phone")
    for unit in (closed, below):  # a disabled unit, or one under it: refused, nothing changes
        refused = form(alice, f"/admin/users/{dave}", {**edit, "businessunitid": unit})
        assert refused.status_code == 422 and b"business unit is disabled" in refused.data
        assert api.get("/api/auth/me").json["user"]["business_unit_id"] == org.root_bu
        assert not socket.ended
    new = {"username": "erin", "password": "erin-password-1", **edit}
    assert form(alice, "/admin/users/new", new).status_code == 422
    # A move to an enabled unit: saved, and the user's sessions and sockets end at once.
    assert form(alice, f"/admin/users/{dave}", {**edit, "businessunitid": org.east_bu}).status_code == 302
    assert api.get("/api/auth/me").status_code == 401
    assert socket.ended and socket.event.is_set()
    again = sign_in(app, "contoso", "dave")
    assert again.get("/api/auth/me").json["user"]["business_unit_id"] == org.east_bu
    # Saving without a move signs nobody out.
    assert form(alice, f"/admin/users/{dave}", {**edit, "businessunitid": org.east_bu}).status_code == 302
    assert again.get("/api/auth/me").status_code == 200


def test_disabling_a_user_or_resetting_a_password_closes_their_open_sockets(app: Flask, org: Org, alice: Api) -> None:
    hub = services(app).hub
    bobs, alices = hub.subscribe(org.org_id, org.bob, "t1"), hub.subscribe(org.org_id, org.alice, "t2")
    assert form(alice, f"/admin/users/{org.bob}/status", {"action": "disable"}).status_code == 302
    assert bobs.ended and bobs.event.is_set()  # the socket loop sees it and closes with 1008
    assert not alices.ended
    again = hub.subscribe(org.org_id, org.bob, "t3")
    assert form(alice, f"/admin/users/{org.bob}/status", {"action": "enable"}).status_code == 302
    assert not again.ended
    reset = form(alice, f"/admin/users/{org.bob}/password", {"password": "N3w-password!", "confirm": "N3w-password!"})
    assert reset.status_code == 302
    assert again.ended
