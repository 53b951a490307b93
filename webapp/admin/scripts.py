"""Client scripts: an administrator uploads a JavaScript file per entity form and event
(on load, on save); the phone loads it from `/scripts/<org>/<entity>/<event>.js?v=<hash>`,
a same-origin URL (no inline script, so the Content-Security-Policy stays strict) whose
content hash lets the service worker keep it for offline use."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy import select

from webapp.admin.context import commit, current, db, done, form_value, page
from webapp.crm.clientscripts import EVENTS, list_scripts, load_script, remove_script, save_script, script_url
from webapp.crm.errors import CrmError
from webapp.crm.tables import organization
from webapp.security.caller import NotSignedIn, resolve
from webapp.services import services

bp = Blueprint("scripts", __name__, url_prefix="/scripts")
EVENT_LABELS = {"onload": "On load", "onsave": "On save"}
IMMUTABLE = "private, max-age=31536000, immutable"


def _entities() -> list[Any]:
    m = current().model
    return sorted((e for e in m.entities.values() if not e.union_of), key=lambda e: e.display_name)


@bp.route("/", methods=["GET", "POST"])
def index() -> Any:
    """The scripts attached to forms, and the upload form."""
    m = current().model
    errors: dict[str, str] = {}
    values = {"entity": "", "event": "onload"}
    if request.method == "POST":
        values = {"entity": form_value("entity", 64), "event": form_value("event", 16)}
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            errors["file"] = "Choose a JavaScript file to upload."
        elif not upload.filename.lower().endswith((".js", ".mjs")):
            errors["file"] = "The file must be a JavaScript file (.js)."
        else:
            try:
                digest = save_script(
                    db(), m, values["entity"], values["event"], upload.filename, upload.read(), current().info.user_id
                )
            except CrmError as exc:
                errors[exc.field or "file"] = exc.message
            else:
                commit(
                    "script.upload",
                    f"{EVENT_LABELS.get(values['event'])} script of {values['entity']}",
                    {"filename": upload.filename, "hash": digest},
                )
                return done("admin.scripts.index", "Script saved: devices get it at their next update.")
    scripts = [
        {**s, "url": script_url(m.name, s["entity"], s["event"], s["hash"])} for s in list_scripts(db(), m.org_id)
    ]
    return page(
        "scripts.html",
        422 if errors else 200,
        scripts=scripts,
        entities=_entities(),
        events=EVENT_LABELS,
        errors=errors,
        values=values,
    )


@bp.post("/remove")
def remove() -> Any:
    """Detach a script from a form event."""
    entity, event = form_value("entity", 64), form_value("event", 16)
    remove_script(db(), current().model, entity, event)
    commit("script.remove", f"{EVENT_LABELS.get(event, event)} script of {entity}")
    return done("admin.scripts.index", "Script removed.")


def register_public(app: Flask) -> None:
    """Serve the scripts to the phone app (any signed-in user of the organisation)."""

    @app.get("/scripts/<org>/<entity>/<event>.js")
    def client_script(org: str, entity: str, event: str) -> Response:
        """A form script as JavaScript; cached for good when the URL names its current hash."""
        if event not in EVENTS:
            return Response("// no such event\n", 404, content_type="text/javascript; charset=utf-8")
        svc = services(current_app)
        with svc.db.session() as dbs:
            try:  # webapp.security.caller, as for every page and the API
                info = resolve(
                    dbs, svc.registry, request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
                ).session_info
            except NotSignedIn:
                return Response("// sign in first\n", 401, content_type="text/javascript; charset=utf-8")
            org_name = dbs.execute(
                select(organization.c.name).where(organization.c.organizationid == info.org_id)
            ).scalar()
            if org_name != org:
                return Response("// not found\n", 404, content_type="text/javascript; charset=utf-8")
            try:
                script = load_script(dbs, info.org_id, entity, event)
            except CrmError:
                return Response("// not found\n", 404, content_type="text/javascript; charset=utf-8")
        resp = Response(script["source"], content_type="text/javascript; charset=utf-8")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = IMMUTABLE if request.args.get("v") == script["hash"] else "no-cache"
        resp.headers["ETag"] = f'"{script["hash"]}"'
        return resp
