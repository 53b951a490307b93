"""The HTTP API: sign-in, data (Web API), commands, metadata, OpenAPI. Every answer is JSON."""

from __future__ import annotations

from flask import Blueprint, Flask

from webapp.api import auth, commands, context, data, devicekeys, errors, metadata, openapi, syncpush


def register_api(app: Flask) -> None:
    """Mount the API blueprints under /api and install the JSON error handlers."""
    api = Blueprint("api", __name__, url_prefix="/api")
    api.before_request(context.check_csrf)
    for module in (auth, data, commands, metadata, openapi, syncpush, devicekeys):
        api.register_blueprint(module.bp)
    app.register_blueprint(api)
    errors.register(app)
    app.teardown_appcontext(context.close_db_session)
