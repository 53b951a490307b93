"""Creating and upgrading the database schema.

The fixed tables change only through alembic migrations (`webapp/migrations`), so an
existing database is upgraded in place, never dropped. Custom entities' tables are data:
`add-entity` creates them at run time from their stored definitions.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import webapp.crm.clientscripts
import webapp.crm.tables
import webapp.security
import webapp.sync
from webapp.db import Database, metadata

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    """An alembic configuration pointing at our migrations and this database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["engine"] = db.write_engine
    return cfg


def upgrade(db: Database) -> None:
    """Bring the schema to the newest migration (creating it on an empty database)."""
    command.upgrade(alembic_config(db), "head")


def create_all(db: Database) -> None:
    """Create the fixed tables directly and stamp them as the newest migration.

    Fast (tests use it); a test checks the result equals what migrating builds, so a later
    `upgrade` on such a database has nothing to do.
    """
    assert webapp.crm.tables.SYSTEM_TABLES
    assert webapp.crm.clientscripts.clientscript is not None
    metadata.create_all(db.write_engine)
    command.stamp(alembic_config(db), "head")
