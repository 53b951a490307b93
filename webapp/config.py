"""Settings from the environment, with an embedded default that needs nothing installed.

`DATABASE_URL` picks the database (default: SQLite under `instance/`). The secret key is
generated once and kept beside the database, so a restarted server keeps its secrets.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask


def default_database_url(instance_path: str) -> str:
    """SQLite in the instance folder."""
    return f"sqlite:///{Path(instance_path) / 'outpost.db'}"


def secret_dir(database_url: str, instance_path: str) -> Path:
    """Where the secret key lives: beside the SQLite file, else in the instance folder."""
    if database_url.startswith("sqlite:///"):
        return Path(database_url[len("sqlite:///") :]).resolve().parent
    return Path(instance_path)


def load_secret(folder: Path) -> str:
    """The key stored in `folder/secret_key`, created once with owner-only permissions."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def configure(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Fill app.config from defaults, the environment, then `test_config`."""
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(
        DATABASE_URL=os.environ.get("DATABASE_URL") or default_database_url(app.instance_path),
        SCHEMA_SETUP="migrate",  # migrate | create_all (tests) | none
        FAST_PASSWORD_HASH=False,
        SESSION_COOKIE_NAME="outpost_session",
        SESSION_COOKIE_SECURE=os.environ.get("OUTPOST_SECURE_COOKIES", "") == "1",
        MAX_PAGE_SIZE=5000,
        # Requests and socket frames doing their work at once in a process (webapp/admission.py).
        ADMISSION_SLOTS=int(os.environ.get("OUTPOST_ADMISSION_SLOTS") or 8),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        JSON_SORT_KEYS=False,
        # Rate limits per user (webapp/ratelimit.py); OUTPOST_RATE_LIMITS=off lifts them (benchmarks).
        RATE_LIMITS=os.environ.get("OUTPOST_RATE_LIMITS", "on") != "off",
        RATE_FRAMES_PER_SECOND=100.0,
        RATE_FRAMES_BURST=500.0,
        RATE_OPS_PER_SECOND=5000.0,
        RATE_OPS_BURST=20000.0,
        RATE_HTTP_WRITES_PER_SECOND=50.0,
        RATE_HTTP_WRITES_BURST=1000.0,
        # Caps per user (issue 17): sync sockets open in one process, and devices registered
        # (active and seen in the last DEVICE_CAP_DAYS days; older ones stop counting).
        MAX_SOCKETS_PER_USER=int(os.environ.get("OUTPOST_MAX_SOCKETS_PER_USER") or 20),
        MAX_DEVICES_PER_USER=int(os.environ.get("OUTPOST_MAX_DEVICES_PER_USER") or 50),
        DEVICE_CAP_DAYS=30,
        # Records read over the Web API per user (a $top=5000 loop): each page costs its size.
        RATE_HTTP_READ_RECORDS_PER_SECOND=5000.0,
        RATE_HTTP_READ_RECORDS_BURST=100000.0,
        # Sign-in attempts, right or wrong (webapp/signin.py): an office behind one address signs
        # in its morning at once; a script signing in valid credentials in a loop does not.
        SIGNIN_HASHES_AT_ONCE=max(1, (os.cpu_count() or 2) // 2),
        RATE_SIGNINS_PER_ADDRESS_PER_SECOND=2.0,
        RATE_SIGNINS_PER_ADDRESS_BURST=100.0,
        RATE_SIGNINS_PER_USER_PER_SECOND=0.5,
        RATE_SIGNINS_PER_USER_BURST=30.0,
        # Who may read /metrics besides the loopback (webapp/metrics.py): `Authorization: Bearer <token>`.
        METRICS_TOKEN=os.environ.get("OUTPOST_METRICS_TOKEN") or None,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret(secret_dir(app.config["DATABASE_URL"], app.instance_path))
