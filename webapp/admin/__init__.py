"""The administrator's console: server-rendered pages under /admin (DESIGN.md §3).

One module per concept: `auth` (sign-in), `profile` (the mobile offline profile), `explain`
(dry run and "why is this record (not) on this device?"), `people/` (users, teams, business
units and positions, roles, field security profiles), `entities` (custom entities), `devices`,
`errors` (the sync error log), `audit`, `scripts` (client scripts, and the same-origin URL
the phone loads them from). Only users with the System Administrator role get past the guard.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from werkzeug.exceptions import NotFound, UnprocessableEntity

from webapp.admin import audit, auth, context, devices, entities, errors, explain, people, profile, scripts
from webapp.crm.errors import CrmError


def register_admin(app: Flask) -> None:
    """Mount the console under /admin and the client-script URLs under /scripts."""
    bp = Blueprint("admin", __name__, url_prefix="/admin")
    bp.before_request(context.guard)
    bp.context_processor(context.template_globals)
    bp.teardown_request(context.close_db)

    @bp.get("/")
    def dashboard() -> Any:
        """The console's home: what there is to manage, with a few figures."""
        return audit.dashboard()

    for module in (auth, profile, explain, people, entities, devices, errors, audit, scripts):
        bp.register_blueprint(module.bp)

    @bp.errorhandler(CrmError)
    def _crm(exc: CrmError) -> Any:
        err = NotFound(exc.message) if exc.code == "not_found" else UnprocessableEntity(exc.message)
        return context.error_page(err)

    for code in (403, 404, 405):
        bp.register_error_handler(code, context.error_page)
    app.register_blueprint(bp)
    scripts.register_public(app)
