"""Engines and sessions.

Two engines point at the same database: a read engine and a write engine. On SQLite the
write engine opens its transactions with BEGIN IMMEDIATE, so concurrent writers queue on
the busy timeout instead of failing with a stale snapshot; on PostgreSQL both are the same.
`ci_lower` is the one case-folding function of PROTOCOL.md §2 (Python's str.lower in SQLite,
lower() in PostgreSQL) so the server's SQL and the device's JavaScript agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, MetaData, String, create_engine, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.functions import FunctionElement

# Every fixed table (system tables and system entity tables) lives here; alembic reads it.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_N_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class ci_lower(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it is
    """Unicode lower-casing, the same in SQLite, PostgreSQL and the browser."""

    type = String()
    inherit_cache = True


@compiles(ci_lower)
def _ci_lower_default(element: ci_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(ci_lower, "sqlite")
def _ci_lower_sqlite(element: ci_lower, compiler: Any, **kw: Any) -> str:
    return f"outpost_lower({compiler.process(element.clauses, **kw)})"


def _py_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _setup_sqlite(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        dbapi_conn.create_function("outpost_lower", 1, _py_lower, deterministic=True)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass
class Database:
    """The app's database: its URL, a read engine and a write engine."""

    url: str
    read_engine: Engine
    write_engine: Engine

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.read_engine.dialect.name == "sqlite"

    def session(self, write: bool = False) -> Session:
        """A new session; `write=True` for a transaction that will write."""
        return Session(self.write_engine if write else self.read_engine, expire_on_commit=False)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()


def connect(url: str) -> Database:
    """Open the database at `url` (sqlite:///… or postgresql+psycopg://…)."""
    if url.startswith("sqlite"):
        kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
            raise ValueError("Outpost needs a file-backed SQLite database (WAL); give a path")
        read = create_engine(url, **kw)
        write = create_engine(url, **kw)
        _setup_sqlite(read, immediate=False)
        _setup_sqlite(write, immediate=True)
        return Database(url, read, write)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return Database(url, engine, engine)


def connect_unpooled(url: str) -> Engine:
    """A plain engine without a pool (for one-off admin work such as creating a schema)."""
    return create_engine(url, poolclass=NullPool)
