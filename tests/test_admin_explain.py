"""The dry run and "why (not) on this device?" (webapp/sync/explain.py), on SQLite and
PostgreSQL: the dry run's counts equal what a device's download then delivers, page by page."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Org
from tests.security_fixtures import add_account, add_share
from webapp.crm.records import Actor, Owner, insert_record
from webapp.security.scope import load_principal
from webapp.services import services
from webapp.sync.download import download_page
from webapp.sync.explain import dry_run, why
from webapp.sync.profile import downloadable, set_offline


def downloaded(app: Flask, org: Org, user_id: str) -> dict[str, int]:
    """Per entity, how many records a device of `user_id` receives, paging as a device does."""
    svc = services(app)
    out = {}
    with svc.db.session() as s:
        model = svc.registry.model(s, org.org_id)
        p = load_principal(s, model, user_id)
        for entity in downloadable(model):
            after, n, total = None, 0, None
            while True:
                page = download_page(s, model, p, entity.logical_name, after, 3)
                total = page["total"] if total is None else total
                n += len(page["records"])
                after = page["next"]
                if after is None:
                    break
            assert n == total, entity.logical_name
            out[entity.logical_name] = n
    return out


def seed(app: Flask, org: Org) -> dict[str, str]:
    """Accounts of alice (Sales East) and bob (root), a contact of bob's, a share, and a mixed profile."""
    svc = services(app)
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        alice = Owner(org.alice, "systemuser", org.east_bu)
        bob = Owner(org.bob, "systemuser", org.root_bu)
        ids = {f"a{i}": add_account(s, model, f"Alice {i}", alice) for i in range(4)}
        ids |= {f"b{i}": add_account(s, model, f"Bob {i}", bob) for i in range(3)}
        contact = insert_record(
            s,
            model,
            Actor(model.org_id, None, None),
            model.entity("contact"),
            {"lastname": "Linked", "parentcustomerid": ids["b0"], "parentcustomerid__type": "account"},
            None,
            bob,
        )
        ids["contact"] = str(contact["contactid"])
        add_share(s, model, "account", ids["a0"], org.bob, "systemuser", ["read"])
        set_offline(s, model, entity="account", filter_spec="mine")
        model = svc.registry.model(s, org.org_id)
        set_offline(s, model, entity="contact", filter_spec="related")
        model = svc.registry.model(s, org.org_id)
        set_offline(s, model, entity="lead", entity_enabled=False)
        s.commit()
    return ids


def test_the_dry_run_counts_exactly_what_a_device_downloads(app: Flask, org: Org) -> None:
    seed(app, org)
    svc = services(app)
    for user in (org.alice, org.bob):
        with svc.db.session() as s:
            model = svc.registry.model(s, org.org_id)
            result = dry_run(s, model, user)
        assert result.counts() == downloaded(app, org, user)
        assert "lead" not in result.counts()
        for e in result.entities:
            assert (e.bytes > 0) == (e.count > 0), e
        assert result.total_records == sum(result.counts().values())
    with svc.db.session() as s:
        model = svc.registry.model(s, org.org_id)
        alice, bob = dry_run(s, model, org.alice), dry_run(s, model, org.bob)
    assert alice.counts()["account"] == 4  # owned by me
    assert bob.counts()["account"] == 3  # his own; the shared one is not his
    assert bob.counts()["contact"] == 1  # related to one of his accounts
    assert next(e for e in bob.entities if e.entity == "account").filter == "Owned by me"


def test_why_names_the_rule_that_includes_or_excludes_a_record(app: Flask, org: Org) -> None:
    ids = seed(app, org)
    svc = services(app)
    with svc.db.session() as s:
        model = svc.registry.model(s, org.org_id)
        mine = why(s, model, org.bob, "account", ids["b1"])
        shared = why(s, model, org.bob, "account", ids["a0"])
        hidden = why(s, model, org.bob, "account", ids["a1"])
        related = why(s, model, org.bob, "contact", ids["contact"])
    assert mine.on_device and "is on this user's device" in mine.summary
    assert any(r.rule == "owner" and r.passes and "(this user)" in r.text for r in mine.reasons)
    assert any(r.rule == "filter" and r.passes and "Owned by me" in r.text for r in mine.reasons)
    assert any(r.rule == "role" and "Salesperson" in r.text and "business unit" in r.text for r in mine.reasons)
    # Shared with bob: readable, but the profile's "owned by me" filter leaves it out.
    assert not shared.on_device
    assert "the offline profile leaves it out" in shared.summary
    assert any(r.rule == "share" and r.passes for r in shared.reasons)
    assert any(r.rule == "filter" and not r.passes for r in shared.reasons)
    # Alice's account in another business unit, not shared: bob may not read it.
    assert not hidden.on_device and "may not read it" in hidden.summary
    assert any(r.rule == "business unit" and not r.passes and "Sales East" in r.text for r in hidden.reasons)
    assert related.on_device
    assert any(r.rule == "filter" and "Related rows only" in r.text and r.passes for r in related.reasons)


def test_the_dry_run_and_why_pages_show_the_counts_and_the_rules(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in

    ids = seed(app, org)
    alice = sign_in(app, "contoso", "alice")
    page = alice.get(f"/admin/offline/dry-run?user={org.bob}").data.decode()
    assert '<tr data-entity="account"><th scope="row">Accounts</th><td>Owned by me</td><td class="num">3</td>' in page
    assert alice.get("/admin/offline/dry-run?user=nobody").status_code == 422
    page = alice.get(f"/admin/offline/why?user={org.bob}&entity=account&record={ids['a0']}").data.decode()
    assert "Not on the device" in page and "the offline profile leaves it out" in page
    missing = alice.get(f"/admin/offline/why?user={org.bob}&entity=account&record={org.bob}")
    assert missing.status_code == 422 and "There is no account with id" in missing.data.decode()
    assert alice.get("/admin/offline/why?user=&entity=&record=x").status_code == 422


def test_a_dry_run_from_the_profile_form_counts_the_unsaved_settings_and_saves_nothing(app: Flask, org: Org) -> None:
    from tests.conftest import sign_in
    from tests.test_admin import form, profile_form

    seed(app, org)
    alice = sign_in(app, "contoso", "alice")
    before = alice.get("/api/metadata").json["version"]
    data = {**profile_form(alice), "account.filter": "all", "dry_run_user": org.bob, "action": "dryrun"}
    resp = form(alice, "/admin/offline/", data)
    assert resp.status_code == 200
    html = resp.data.decode()
    # bob reads all 3 of his accounts, the one shared with him, none of alice's others: 4 with "all".
    assert '<tr data-entity="account"><th scope="row">Accounts</th><td>All records</td><td class="num">4</td>' in html
    assert "with these settings (not saved)" in html
    assert alice.get("/api/metadata").json["version"] == before
    assert form(alice, "/admin/offline/", {**data, "dry_run_user": ""}).status_code == 422
    # Published, the same settings give the dry run page (and the device) the same count.
    assert form(alice, "/admin/offline/", {**data, "action": "save"}).status_code == 302
    page = alice.get(f"/admin/offline/dry-run?user={org.bob}").data.decode()
    assert '<td>All records</td><td class="num">4</td>' in page
    assert downloaded(app, org, org.bob)["account"] == 4
