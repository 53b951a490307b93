"""The mobile offline profile: the organisation switch, per entity on/off and download filter,
the sync interval, conflict detection and the app PIN. Saving changes the metadata version, so every
device offers "Offline Updates Available" at its next connection."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from flask import Blueprint, request

from webapp.admin.context import choices, commit, current, db, done, page
from webapp.admin.explain import human_size
from webapp.crm.errors import ValidationFailed
from webapp.crm.metadata import Entity
from webapp.crm.orgs import save_settings
from webapp.crm.registry import OrgModel
from webapp.sync.explain import DryRun, dry_run, filter_label
from webapp.sync.profile import FILTERS, entity_settings, validate_entity_settings

bp = Blueprint("profile", __name__, url_prefix="/offline")
FILTER_CHOICES = [(f, filter_label({"filter": f, "days": "N"})) for f in FILTERS]


def offline_entities(model: OrgModel) -> list[Entity]:
    """The entities that can be taken offline (they have read among their offline commands)."""
    return sorted(
        (e for e in model.entities.values() if "read" in e.offline_commands and not e.union_of),
        key=lambda e: e.display_collection_name,
    )


def _current_values(model: OrgModel) -> dict[str, Any]:
    offline = model.settings.get("offline", {})
    return {
        "enabled": bool(offline.get("enabled", False)),
        "interval": str(offline.get("sync_interval_minutes", 15)),
        "conflict_detection": bool(model.settings.get("conflict_detection", False)),
        "pin_required": bool(offline.get("pin_required", False)),
        "entities": {
            e.logical_name: {**entity_settings(model, e), "days": entity_settings(model, e).get("days") or ""}
            for e in offline_entities(model)
        },
    }


def _render(
    model: OrgModel,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    result: DryRun | None = None,
) -> Any:
    return page(
        "profile.html",
        status,
        entities=offline_entities(model),
        values=values,
        errors=errors,
        filters=FILTER_CHOICES,
        users=choices("systemuser", "fullname"),
        result=result,
        human_size=human_size,
    )


@bp.get("/")
def show() -> Any:
    """The profile form, filled in with the current settings."""
    model = current().model
    return _render(model, _current_values(model), {})


@bp.post("/")
def save() -> Any:
    """Check every field, then save the whole profile at once (one new metadata version)."""
    model = current().model
    form = request.form
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "enabled": form.get("enabled") == "on",
        "interval": (form.get("interval") or "").strip(),
        "conflict_detection": form.get("conflict_detection") == "on",
        "pin_required": form.get("pin_required") == "on",
        "entities": {},
    }
    interval = values["interval"]
    if not interval.isdigit() or not 1 <= int(interval) <= 1440:
        errors["interval"] = "The sync interval must be a whole number of minutes from 1 to 1440."
    clean: dict[str, dict[str, Any]] = {}
    for e in offline_entities(model):
        name = e.logical_name
        raw = {
            "enabled": form.get(f"{name}.enabled") == "on",
            "filter": form.get(f"{name}.filter") or "all",
            "days": (form.get(f"{name}.days") or "").strip(),
        }
        values["entities"][name] = raw
        typed_days = str(raw["days"])
        days: Any = int(typed_days) if typed_days.isdigit() else (typed_days or None)
        try:
            clean[name] = validate_entity_settings({**raw, "days": days})
        except ValidationFailed as exc:
            field = "days" if exc.field == "days" else "filter"
            errors[f"{name}.{field}"] = f"{e.display_collection_name}: {exc.message}"
    dry_user = (form.get("dry_run_user") or "").strip()
    values["dry_run_user"] = dry_user
    trying = form.get("action") == "dryrun"
    if trying and dry_user not in {u for u, _ in choices("systemuser", "fullname")}:
        errors["dry_run_user"] = "Choose the user whose device to count."
    if errors:
        return _render(model, values, errors, 422)
    settings = copy.deepcopy(model.settings)
    offline = settings.setdefault("offline", {})
    before = copy.deepcopy(offline)
    offline["enabled"] = values["enabled"]
    offline["sync_interval_minutes"] = int(interval)
    offline["pin_required"] = values["pin_required"]
    entities = offline.setdefault("entities", {})
    changed = {n: s for n, s in clean.items() if entities.get(n) != s}
    entities.update(clean)
    settings["conflict_detection"] = values["conflict_detection"]
    if trying:
        # Before publishing: count with these settings in memory; nothing is saved.
        result = dry_run(db(), replace(model, settings=settings), dry_user)
        return _render(model, values, {}, 200, result)
    dirty = (
        changed
        or before.get("enabled") != offline["enabled"]
        or before.get("sync_interval_minutes") != offline["sync_interval_minutes"]
        or bool(before.get("pin_required", False)) != offline["pin_required"]
        or bool(model.settings.get("conflict_detection", False)) != values["conflict_detection"]
    )
    if not dirty:
        return done("admin.profile.show", "Nothing changed.")
    save_settings(db(), model.org_id, settings)
    commit(
        "offline.save",
        "Mobile offline profile",
        {
            "enabled": offline["enabled"],
            "sync_interval_minutes": offline["sync_interval_minutes"],
            "conflict_detection": values["conflict_detection"],
            "pin_required": offline["pin_required"],
            "entities": changed,
        },
    )
    return done("admin.profile.show", "Offline profile saved: devices will offer the update at their next sync.")
