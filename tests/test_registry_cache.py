"""The cached model of an organisation never outlives a transaction that rolled back.

The registry caches each organisation's model by its metadata revision. A model built inside
a transaction that added a custom entity (revision N+1) and then rolled back stayed cached;
when a later change committed revision N+1 for real, the cache answered with the phantom
entity — listed in the metadata, with no table behind it.
"""

from __future__ import annotations

import copy

from flask import Flask

from tests.conftest import Org
from webapp.crm.customizations import add_entity
from webapp.crm.orgs import save_settings
from webapp.services import services

VISIT = {
    "logical_name": "new_phantom",
    "display_name": "Phantom",
    "display_collection_name": "Phantoms",
    "entity_set": "new_phantoms",
    "primary_name": "new_name",
    "ownership": "user",
    "attributes": [{"logical_name": "new_name", "type": "string", "max_length": 100, "required": True}],
    "views": [{"name": "All Phantoms", "columns": ["new_name"], "orderby": "new_name asc"}],
    "form": [{"name": "Phantom", "fields": ["new_name"]}],
    "quick_find": ["new_name"],
}


def test_a_model_built_in_a_transaction_that_rolled_back_is_not_served_later(app: Flask, org: Org) -> None:
    svc = services(app)
    with svc.db.session(write=True) as s:
        model = svc.registry.model(s, org.org_id)
        settings = copy.deepcopy(model.settings)
        add_entity(s, svc.registry, model, copy.deepcopy(VISIT))
        assert "new_phantom" in svc.registry.model(s, org.org_id).entities  # seen inside its transaction
        s.rollback()
    with svc.db.session(write=True) as s:  # another process takes the same revision number, for real
        settings["conflict_detection"] = True
        save_settings(s, org.org_id, settings)
        s.commit()
    with svc.db.session() as s:
        assert "new_phantom" not in svc.registry.model(s, org.org_id).entities


def test_settings_read_inside_one_transaction_do_not_change_the_model_others_hold(app: Flask, org: Org) -> None:
    svc = services(app)
    with svc.db.session() as s:
        shared = svc.registry.model(s, org.org_id)
    before = copy.deepcopy(shared.settings)
    with svc.db.session(write=True) as s:
        from sqlalchemy import update

        from webapp.crm.tables import organization

        changed = copy.deepcopy(before)
        changed["conflict_detection"] = not before.get("conflict_detection")
        # a settings write that keeps the revision (as a raw or future path might)
        s.execute(update(organization).where(organization.c.organizationid == org.org_id).values(settings=changed))
        seen = svc.registry.model(s, org.org_id)
        assert seen.settings["conflict_detection"] == changed["conflict_detection"]
        assert shared.settings == before, "another thread's model changed under it"
        s.rollback()
