"""Alembic environment: migrates the fixed tables; custom entity tables are left alone."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

import webapp.crm.tables
import webapp.security
import webapp.sync
from webapp.db import metadata

assert webapp.crm.tables.SYSTEM_TABLES
config = context.config


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Only our fixed tables: custom entities' tables (cx_*) are created from data."""
    return not (type_ == "table" and name is not None and name.startswith("cx_"))


def run() -> None:
    """Run migrations on the engine the app handed us (or one made from the URL)."""
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
