"""`GET /api/openapi.json`: the OpenAPI 3.1 description, generated from the same metadata.

Signed out it describes the system entities; signed in, the caller's organisation's custom
entities too. Each entity gets a read schema (the wire record) and a write schema (with
`@odata.bind` lookups), so a client generator or a fuzzer sees exactly what is accepted.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from webapp.api.context import db_session, session_info
from webapp.crm.entities import SYSTEM_ENTITIES
from webapp.crm.metadata import Attribute, Entity
from webapp.services import services

bp = Blueprint("openapi", __name__)
ERROR = {"$ref": "#/components/schemas/Error"}
UUID = {"type": "string", "format": "uuid"}


def json_schema(attr: Attribute, writing: bool) -> dict[str, Any]:
    """The JSON schema of one attribute's value."""
    t = attr.type
    schema: dict[str, Any]
    if t in ("string", "memo"):
        schema = {"type": "string", "maxLength": attr.max_length}
    elif t == "integer":
        schema = {"type": "integer"}
    elif t in ("decimal", "money"):
        schema = {"type": "number"}
    elif t == "boolean":
        schema = {"type": "boolean"}
    elif t == "datetime":
        schema = {"type": "string", "format": "date-time"}
    elif t == "date":
        schema = {"type": "string", "format": "date"}
    elif t == "optionset":
        schema = {"type": "integer", "enum": sorted(attr.option_values())}
    else:
        schema = dict(UUID)
    for rule in attr.rules:  # the bounds a write is held to (webapp/crm/ruledata.py), column limits included
        if rule["check"] == "range":
            schema["minimum"], schema["maximum"] = rule["min"], rule["max"]
    if not (writing and attr.required):
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def entity_schemas(entity: Entity) -> dict[str, Any]:
    """Read and write schemas of an entity."""
    read: dict[str, Any] = {entity.primary_id: UUID, "versionnumber": {"type": "integer"}}
    write: dict[str, Any] = {entity.primary_id: UUID}
    required = []
    for a in entity.attributes:
        if a.logical_name == entity.primary_id:
            continue
        if a.type == "lookup":
            read[f"_{a.logical_name}_value"] = {"anyOf": [UUID, {"type": "null"}]}
            if not a.read_only:
                names = [a.logical_name] if not a.is_polymorphic else [f"{a.logical_name}_{t}" for t in a.targets]
                for n in names:
                    write[f"{n}@odata.bind"] = {
                        "anyOf": [{"type": "string", "pattern": r"^/\w+\([0-9a-f-]{36}\)$"}, {"type": "null"}]
                    }
            continue
        read[a.logical_name] = json_schema(a, writing=False)
        if not a.read_only:
            write[a.logical_name] = json_schema(a, writing=True)
            if a.required:
                required.append(a.logical_name)
    name = entity.logical_name
    return {
        name: {"type": "object", "properties": read},
        f"{name}_write": {"type": "object", "properties": write, "required": required, "additionalProperties": False},
        f"{name}_update": {"type": "object", "properties": write, "additionalProperties": False},
    }


def responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    """A responses object with the given success and error codes."""
    out = dict(ok)
    for code in errors:
        out[str(code)] = {"description": "Error", "content": {"application/json": {"schema": ERROR}}}
    return out


def entity_paths(entity: Entity) -> dict[str, Any]:
    """The paths of one entity set."""
    name = entity.logical_name
    ref = {"$ref": f"#/components/schemas/{name}"}
    record = {"content": {"application/json": {"schema": ref}}}
    query = [
        {"name": opt, "in": "query", "required": False, "schema": {"type": "string"}}
        for opt in ("$select", "$filter", "$orderby", "$top", "$expand", "$skiptoken")
    ]
    key = [{"name": "id", "in": "path", "required": True, "schema": UUID}]
    base = f"/api/data/{entity.entity_set}"
    paths: dict[str, Any] = {
        base: {
            "get": {
                "summary": f"List {entity.display_collection_name}",
                "parameters": query,
                "responses": responses(
                    {
                        "200": {
                            "description": "A page",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "value": {"type": "array", "items": ref},
                                            "@odata.nextLink": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        }
                    },
                    400,
                    401,
                ),
            }
        },
        base + "({id})": {
            "get": {
                "summary": f"Read a {entity.display_name}",
                "parameters": key + query[:1] + query[4:5],
                "responses": responses({"200": {"description": "The record", **record}}, 400, 401, 404),
            }
        },
    }
    writable = entity.api_writable and not entity.union_of
    if writable:
        body = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}_write"}}},
        }
        patch = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}_update"}}},
        }
        paths[base]["post"] = {
            "summary": f"Create a {entity.display_name}",
            "requestBody": body,
            "responses": responses({"201": {"description": "Created", **record}}, 400, 401, 403, 409, 422),
        }
        paths[base + "({id})"]["patch"] = {
            "summary": f"Update a {entity.display_name}",
            "parameters": key,
            "requestBody": patch,
            "responses": responses({"200": {"description": "Updated", **record}}, 400, 401, 403, 404, 422),
        }
    if writable or entity.union_of:
        paths[base + "({id})"]["delete"] = {
            "summary": f"Delete a {entity.display_name}",
            "parameters": key,
            "responses": responses({"204": {"description": "Deleted"}}, 400, 401, 403, 404, 405),
        }
    return paths


def device_key_paths() -> dict[str, Any]:
    """The server-held copy of a device store's data key (the app PIN's "Forgot PIN")."""
    device = [{"name": "device_id", "in": "path", "required": True, "schema": UUID}]

    def body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
        schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    key = {"type": "string", "description": "base64 of the 32-byte AES-256 data key", "contentEncoding": "base64"}
    return {
        "/api/device-keys/{device_id}": {
            "put": {
                "summary": "Keep the data key of one of the caller's devices (set when the app PIN is set)",
                "parameters": device,
                "requestBody": body({"key": key}, ["key"]),
                "responses": responses(
                    {"201": {"description": "Stored"}, "200": {"description": "Replaced"}}, 400, 401, 403
                ),
            },
            "delete": {
                "summary": "Forget the data key of one of the caller's devices (its store was deleted)",
                "parameters": device,
                "responses": responses({"204": {"description": "Forgotten (or there was none)"}}, 400, 401, 403),
            },
        },
        "/api/device-keys/{device_id}/recover": {
            "post": {
                "summary": "Forgot PIN: the data key back, for the device's own user giving the password again",
                "parameters": device,
                "requestBody": body({"password": {"type": "string"}}, ["password"]),
                "responses": responses(
                    {
                        "200": {
                            "description": "The key",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"device_id": UUID, "key": key},
                                        "required": ["device_id", "key"],
                                    }
                                }
                            },
                        }
                    },
                    400,
                    401,
                    403,
                    404,
                    429,
                ),
            }
        },
    }


def document(entities: list[Entity]) -> dict[str, Any]:
    """The whole OpenAPI document."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "details": {"type": "object"},
                    },
                    "required": ["code", "message"],
                }
            },
        },
        "Login": {
            "type": "object",
            "properties": {"org": {"type": "string"}, "username": {"type": "string"}, "password": {"type": "string"}},
            "required": ["org", "username", "password"],
        },
    }
    paths: dict[str, Any] = {
        "/api/auth/login": {
            "post": {
                "summary": "Sign in",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}},
                },
                "responses": responses({"200": {"description": "Signed in; sets the session cookie"}}, 400, 401, 429),
            }
        },
        "/api/auth/logout": {
            "post": {"summary": "Sign out", "responses": responses({"200": {"description": "Signed out"}}, 401, 403)}
        },
        "/api/auth/me": {
            "get": {"summary": "Who is signed in", "responses": responses({"200": {"description": "The user"}}, 401)}
        },
        "/api/metadata": {
            "get": {"summary": "The customizations", "responses": responses({"200": {"description": "Metadata"}}, 401)}
        },
        **device_key_paths(),
    }
    for e in entities:
        schemas.update(entity_schemas(e))
        paths.update(entity_paths(e))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Outpost Web API",
            "version": "1.0.0",
            "description": "Offline-first CRM: data, metadata, sign-in.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "outpost_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
        "security": [{"session": [], "csrf": []}],
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document for the caller's organisation (system entities when signed out)."""
    info = session_info()
    entities = list(SYSTEM_ENTITIES)
    if info is not None:
        entities = list(services(current_app).registry.model(db_session(), info.org_id).entities.values())
    return jsonify(document(entities))
