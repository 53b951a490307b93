"""JSON errors everywhere: `{"error": {"code", "message", "field"?, "details"?}}`."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from webapp.crm import errors as crm
from webapp.crm.odata import ODataError
from webapp.httperror import ApiError

STATUS = {
    crm.BadRequest: 400,
    crm.NotFound: 404,
    crm.Forbidden: 403,
    crm.DuplicateId: 409,
    crm.ValidationFailed: 422,
    crm.NotAllowed: 405,
}


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    """The one shape of every error answer."""
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return jsonify({"error": body}), status


def register(app: Flask) -> None:
    """Install handlers so that no error leaves as HTML."""

    @app.errorhandler(crm.CrmError)
    def _crm(exc: crm.CrmError) -> tuple[Response, int]:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        return jsonify({"error": exc.to_dict()}), status

    @app.errorhandler(ODataError)
    def _odata(exc: ODataError) -> tuple[Response, int]:
        # A query the parser accepted but the entity does not fit (a field checked only when used).
        return error_response(400, "bad_request", exc.message, field=exc.field)

    @app.errorhandler(ApiError)
    def _api(exc: ApiError) -> tuple[Response, int]:
        resp, status = error_response(exc.status, exc.code, exc.message)
        resp.headers.update(exc.headers)
        return resp, status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unexpected error")
        return error_response(500, "internal_error", "Something went wrong on the server; nothing was changed.")
